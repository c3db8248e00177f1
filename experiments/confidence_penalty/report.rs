//! Final-run statistics per method: test error, NLL, ECE, mean predictive entropy over seeds,
//! Welch's t-tests against the baseline, and the wide per-method table (`methods.md`).

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::method::{Hyper, Method};
use crate::stats::{self, WelchTest};

/// Test metrics of one final run (one method, one seed).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SeedMetrics {
    /// Seed.
    pub seed: u64,
    /// Test error (fraction).
    pub error: f64,
    /// Test NLL (nats).
    pub nll: f64,
    /// 15-bin ECE (fraction).
    pub ece: f64,
    /// Mean entropy of the predictive distributions (nats).
    pub entropy: f64,
}

/// All seeds of one method with its tests against the baselines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodResult {
    /// The method.
    pub method: Method,
    /// The hyper-parameters chosen on the validation split.
    pub hyper: Hyper,
    /// Per-seed test metrics.
    pub seeds: Vec<SeedMetrics>,
    /// Welch's test of the test errors against the first method of the list (the baseline).
    pub vs_baseline: Option<WelchTest>,
    /// Welch's test of the test errors against `dropout` (the paper's reference row), if run.
    pub vs_dropout: Option<WelchTest>,
}

impl MethodResult {
    /// Per-seed values of a metric.
    pub fn values(&self, f: impl Fn(&SeedMetrics) -> f64) -> Vec<f64> {
        self.seeds.iter().map(f).collect()
    }

    /// Mean ± std of the test error in percent.
    pub fn error_pct(&self) -> (f64, f64) {
        stats::mean_std(&self.values(|s| 100.0 * s.error))
    }
}

/// Welch's test of `a`'s test errors against `b`'s (`None` with fewer than two seeds each).
pub fn welch(a: &MethodResult, b: &MethodResult) -> Option<WelchTest> {
    stats::welch_t_test(&a.values(|s| s.error), &b.values(|s| s.error)).ok()
}

/// Paired t-test of `a`'s test errors against `b`'s over the seeds both ran (methods of one
/// seed share the initialisation and data order); `None` with fewer than two shared seeds.
pub fn paired(a: &MethodResult, b: &MethodResult) -> Option<stats::PairedTest> {
    let (mut xa, mut xb) = (Vec::new(), Vec::new());
    for sa in &a.seeds {
        if let Some(sb) = b.seeds.iter().find(|sb| sb.seed == sa.seed) {
            xa.push(sa.error);
            xb.push(sb.error);
        }
    }
    stats::paired_t_test(&xa, &xb).ok()
}

/// Fill in the tests against the baseline (`results[0]`) and `dropout`.
pub fn add_tests(results: &mut [MethodResult]) {
    let Some(base) = results.first().cloned() else {
        return;
    };
    let dropout: Option<MethodResult> = results
        .iter()
        .find(|r| r.method.to_string() == "dropout")
        .cloned();
    for r in results.iter_mut().skip(1) {
        r.vs_baseline = welch(r, &base);
        if let Some(d) = &dropout {
            if d.method != r.method {
                r.vs_dropout = welch(r, d);
            }
        }
    }
}

fn fmt_p(t: &Option<WelchTest>) -> String {
    match t {
        Some(t) if t.p_value < 0.001 => format!("{:+.2} (p<0.001)", t.t),
        Some(t) => format!("{:+.2} (p={:.3})", t.t, t.p_value),
        None => "—".into(),
    }
}

/// The per-method table: chosen values, test error, NLL, ECE, entropy (mean ± std), and the
/// Welch t statistic with its p-value against the baseline and against dropout.
pub fn methods_markdown(task: &str, results: &[MethodResult]) -> String {
    let mut s = String::new();
    let base = results
        .first()
        .map(|r| r.method.to_string())
        .unwrap_or_default();
    let n = results.first().map_or(0, |r| r.seeds.len());
    let _ = writeln!(
        s,
        "### {task}: test metrics, mean ± std over {n} seeds\n\n\
         | method | chosen on validation | error % | NLL | ECE % | mean entropy (nats) | t vs `{base}` | t vs `dropout` |\n\
         |---|---|---:|---:|---:|---:|---:|---:|"
    );
    for r in results {
        let ms = |f: &dyn Fn(&SeedMetrics) -> f64, scale: f64, d: usize| {
            let (m, sd) = stats::mean_std(&r.values(|x| scale * f(x)));
            format!("{m:.d$} ± {sd:.d$}")
        };
        let _ = writeln!(
            s,
            "| `{}` | {} | {} | {} | {} | {} | {} | {} |",
            r.method,
            r.hyper,
            ms(&|x| x.error, 100.0, 2),
            ms(&|x| x.nll, 1.0, 4),
            ms(&|x| x.ece, 100.0, 2),
            ms(&|x| x.entropy, 1.0, 4),
            fmt_p(&r.vs_baseline),
            fmt_p(&r.vs_dropout),
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(name: &str, errs: &[f64]) -> MethodResult {
        MethodResult {
            method: name.parse().unwrap(),
            hyper: Hyper::default(),
            seeds: errs
                .iter()
                .enumerate()
                .map(|(i, &e)| SeedMetrics {
                    seed: i as u64,
                    error: e,
                    nll: 0.1,
                    ece: 0.01,
                    entropy: 0.05,
                })
                .collect(),
            vs_baseline: None,
            vs_dropout: None,
        }
    }

    #[test]
    fn tests_against_baseline_and_dropout() {
        let mut r = vec![
            res("none", &[0.020, 0.021, 0.019]),
            res("dropout", &[0.015, 0.016, 0.014]),
            res("cp", &[0.0150, 0.0155, 0.0145]),
        ];
        add_tests(&mut r);
        assert!(r[0].vs_baseline.is_none());
        let t = r[1].vs_baseline.unwrap();
        assert!(t.t < 0.0 && t.p_value < 0.01, "{t:?}");
        assert!(r[1].vs_dropout.is_none());
        let d = r[2].vs_dropout.unwrap();
        assert!(d.p_value > 0.5, "{d:?}");
        let md = methods_markdown("mnist", &r);
        assert!(
            md.contains("| `cp` |") && md.contains("2.00 ± 0.10"),
            "{md}"
        );
    }
}
