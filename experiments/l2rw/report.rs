//! The report: table rows and metrics from the results, the plots, the paper's claims checked by
//! small named functions, and notes whose figures all come from the config.

use std::collections::BTreeMap;

use anyhow::{ensure, Result};

use super::config::{CifarConfig, L2rwConfig, Method, MnistConfig, NoiseSetting, Part};
use super::experiment::RunResult;
use crate::plot::{self, Labels, Series};
use crate::results::{per_seed, Row, SeedStats, Summary};
use crate::Experiment;

/// The paper, as cited in the summary.
pub const PAPER: &str =
    "Ren, Zeng, Yang & Urtasun (2018), Learning to Reweight Examples for Robust Deep \
                         Learning, ICML 2018, arXiv:1803.09050";

/// The paper's (quoted) cost of an L2RW step, in plain steps.
const PAPER_STEP_RATIO: (f64, &str) = (
    3.0,
    "Ren et al. 2018: about 3× the training time (as quoted in the task; section not confirmed here)",
);

/// Ren et al.'s Table 1, CIFAR-10 UniformFlip 40 %, WRN-28-10: test accuracy (%) of the
/// baseline and of L2RW, as quoted in the task (approximate; not confirmed against the paper).
const PAPER_CIFAR_UNIFORM40: (f64, f64) = (68.0, 87.0);

/// A summary being built from the runs.
struct Report<'a> {
    exp: &'a Experiment<L2rwConfig>,
    rs: &'a [RunResult],
    seeds: Vec<u64>,
    s: Summary,
    metrics: BTreeMap<String, SeedStats>,
}

impl Report<'_> {
    /// Per seed, `f` of the run of `part`, `setting` (any for `None`) and `method`.
    fn of(
        &self,
        part: &str,
        setting: Option<&str>,
        method: Method,
        f: impl Fn(&RunResult) -> f64,
    ) -> Vec<f64> {
        let pick = |r: &RunResult| {
            r.part == part && setting.is_none_or(|s| r.setting == s) && r.method == method
        };
        per_seed(&self.seeds, self.rs, pick, f)
    }

    fn has(&self, part: &str, m: Method) -> bool {
        self.rs.iter().any(|r| r.part == part && r.method == m)
    }

    fn metric(&mut self, key: String, v: Vec<f64>) {
        self.metrics.insert(key, SeedStats::new(v));
    }

    /// Rows of the time per step of `methods`, and L2RW's against plain's when both ran.
    fn step_time_rows(
        &mut self,
        (part, setting): (&str, Option<&str>),
        methods: &[Method],
        (what, ratio_name): (String, String),
    ) {
        let ms = |r: &RunResult| r.run.compared_step_ms();
        for &m in methods {
            let v = self.of(part, setting, m, ms);
            self.s
                .row(Row::new(format!("{what}, {m}"), "ms", v).decimals(0));
        }
        if self.has(part, Method::L2rw) && self.has(part, Method::Plain) {
            let l = self.of(part, setting, Method::L2rw, ms);
            let p = self.of(part, setting, Method::Plain, ms);
            let ratio: Vec<f64> = l.iter().zip(&p).map(|(a, b)| a / b).collect();
            let (v, src) = PAPER_STEP_RATIO;
            self.s
                .row(Row::new(ratio_name, "×", ratio).paper(v, src).decimals(2));
        }
    }
}

/// Writes `summary.json`/`summary.md` (and the plots) for `rs`.
pub(super) fn summarise(exp: &Experiment<L2rwConfig>, rs: &[RunResult]) -> Result<Summary> {
    let cfg = &exp.config;
    let mut r = Report {
        exp,
        rs,
        seeds: exp.common.seeds().to_vec(),
        s: Summary::new(
            exp,
            PAPER,
            "Test error (%) by method: MNIST 4-vs-9 imbalance (Fig. 3), CIFAR noisy labels (Table 1)",
        )?,
        metrics: BTreeMap::new(),
    };
    if cfg.parts.contains(&Part::Mnist) {
        mnist_rows(&mut r, &cfg.mnist)?;
        mnist_diagnostics(&mut r, &cfg.mnist);
        if let Some(note) = mnist_claim(&r.seeds, rs, &cfg.mnist.proportions) {
            r.s.note(note);
        }
        let note = mnist_note(&r, &cfg.mnist);
        r.s.note(note);
        r.s.note(
            "The paper's Fig. 3 is a plot; its values are not transcribed here, so the MNIST rows have no paper column. \
             Diagnostics per proportion (mean weight of 4s and of 9s relative to uniform, all-zero L2RW steps) are in \
             summary.json under metrics.",
        );
    }
    if cfg.parts.contains(&Part::Cifar) {
        for st in &cfg.cifar.settings {
            cifar_rows(&mut r, &cfg.cifar, st)?;
        }
        for st in &cfg.cifar.settings {
            if let Some(note) = cifar_claim(&r.seeds, rs, &st.noise) {
                r.s.note(note);
            }
        }
        r.s.note(cifar_note(&cfg.cifar));
    } else {
        r.s.note(cifar_not_run_note(&cfg.cifar));
    }
    if cfg.jobs > 1 {
        r.s.note(format!(
            "Runs were trained {} at a time on separate threads (`--jobs {}`): the numbers are those of \
             sequential runs (every run owns its seeded generators), but the times per step include \
             the contention between runs.",
            cfg.jobs, cfg.jobs
        ));
    }
    ensure!(!r.s.rows.is_empty(), "no result rows");
    let mut s = r.s;
    s.metrics = r.metrics;
    exp.results.write_summary(&s)?;
    Ok(s)
}

/// Test error per proportion and method, its plot, and the times per step.
fn mnist_rows(r: &mut Report, m: &MnistConfig) -> Result<()> {
    let mut series = Vec::new();
    for &method in &m.methods {
        let (mut pts, mut errs) = (Vec::new(), Vec::new());
        for &p in &m.proportions {
            let set = format!("p={p}");
            let v = r.of("mnist", Some(&set), method, |x| x.run.test_error_pct());
            let st = SeedStats::new(v.clone());
            pts.push((p, st.mean));
            errs.push(st.std);
            r.metrics
                .insert(format!("mnist/{set}/{method}/test_error_pct"), st);
            let name = format!("MNIST 4-vs-9, {:.1}% 9s: {method}", 100.0 * p);
            r.s.row(Row::new(name, "% test error", v).decimals(2));
        }
        series.push(Series::new(method.as_str(), pts).with_errors(errs));
    }
    let title = format!(
        "MNIST 4-vs-9, LeNet, {} steps: test error vs proportion of 9s (mean ± std, {} seeds)",
        m.opt.steps,
        r.seeds.len()
    );
    plot::line_chart(
        &r.exp.results.path("mnist_imbalance.svg"),
        &Labels::new(
            title,
            "proportion of the majority class (9) in training",
            "test error (%)",
        ),
        &series,
    )?;
    r.s.plot("mnist_imbalance.svg");
    let what = format!("MNIST LeNet, batch {}: time per step", m.opt.batch_size);
    let ratio = "MNIST: L2RW step time / plain step time".to_string();
    r.step_time_rows(("mnist", None), &m.methods, (what, ratio));
    Ok(())
}

/// L2RW's weights of 4s and 9s and its all-zero steps per proportion (metrics only).
fn mnist_diagnostics(r: &mut Report, m: &MnistConfig) {
    if !(r.has("mnist", Method::L2rw) && r.has("mnist", Method::Plain)) {
        return;
    }
    for &p in &m.proportions {
        let set = format!("p={p}");
        let of = |f: fn(&RunResult) -> Option<f64>| {
            r.of("mnist", Some(&set), Method::L2rw, |x| {
                f(x).unwrap_or(f64::NAN)
            })
        };
        let (wf, wo) = (of(|x| x.run.weight_flagged), of(|x| x.run.weight_other));
        let z = of(|x| x.run.all_zero_steps);
        r.metric(format!("mnist/{set}/l2rw/weight_of_4s_rel"), wf);
        r.metric(format!("mnist/{set}/l2rw/weight_of_9s_rel"), wo);
        r.metric(format!("mnist/{set}/l2rw/all_zero_steps"), z);
    }
}

/// The MNIST setting, and where it differs from the paper's.
fn mnist_note(r: &Report, m: &MnistConfig) -> String {
    let paper_cfg = L2rwConfig::paper();
    let paper = &paper_cfg.mnist;
    let mut diffs = Vec::new();
    if m.opt.steps != paper.opt.steps || m.opt.lr != paper.opt.lr {
        let plain_ms = r
            .of("mnist", None, Method::Plain, |x| x.run.compared_step_ms())
            .first()
            .copied()
            .unwrap_or(f64::NAN);
        diffs.push(format!(
            "{} steps at lr {} instead of the paper's {} at {} (CPU time: a LeNet step of batch {} takes ~{plain_ms:.0} ms plain here)",
            m.opt.steps, m.opt.lr, paper.opt.steps, paper.opt.lr, m.opt.batch_size,
        ));
    }
    if m.proportions != paper.proportions {
        diffs.push(format!(
            "proportions {:?} instead of {:?}",
            m.proportions, paper.proportions
        ));
    }
    if r.seeds.len() != paper_cfg.seeds.len() {
        diffs.push(format!(
            "{} seeds instead of {}",
            r.seeds.len(),
            paper_cfg.seeds.len()
        ));
    }
    if m.n_train != paper.n_train {
        diffs.push(format!(
            "{} training images instead of {}",
            m.n_train, paper.n_train
        ));
    }
    format!(
        "MNIST setting: {} training images of 4 (minority, label 0) and 9 (majority, label 1), {} clean meta images \
         ({} per class, from MNIST's training 4s/9s outside the training set), Ren et al.'s LeNet, SGD momentum {}, \
         batch {}; test on the MNIST test set's 4s and 9s ({} images). Methods: plain = mean CE; proportional = CE weighted by \
         N/(2·n_class), normalised to sum 1 over each batch; resample = class-balanced sampler; l2rw = one virtual step of size lr, w = max(−∂L_meta/∂ε, 0) \
         normalised to sum 1 (all-zero rule: {:?}). Each seed: the same data and initial weights for every method.{}",
        m.n_train,
        2 * m.meta_per_class,
        m.meta_per_class,
        m.opt.momentum,
        m.opt.batch_size,
        r.rs.iter().find(|x| x.part == "mnist").map_or(0, |x| x.run.n_test),
        r.exp.config.all_zero,
        if diffs.is_empty() {
            String::new()
        } else {
            format!(" Differs from the paper: {}.", diffs.join("; "))
        }
    )
}

/// One noise setting: its curves plot, accuracy rows, L2RW's weight diagnostics and times.
fn cifar_rows(r: &mut Report, c: &CifarConfig, st: &NoiseSetting) -> Result<()> {
    let set = Some(st.noise.as_str());
    let curves: Vec<Series> = c
        .methods
        .iter()
        .map(|&method| {
            let runs =
                r.rs.iter()
                    .filter(|x| x.part == "cifar" && x.setting == st.noise && x.method == method);
            Series::mean_of(method.as_str(), runs.map(|x| &x.run.test_acc_curve))
        })
        .collect();
    if curves.iter().any(|s| !s.points.is_empty()) {
        let f = format!(
            "cifar_test_accuracy_{}.svg",
            st.noise.replace([':', '=', '.'], "_")
        );
        let title = format!(
            "{} {}, {}: test accuracy (mean ± std over {} seeds)",
            c.dataset,
            st.noise,
            c.net,
            r.seeds.len()
        );
        plot::line_chart(
            &r.exp.results.path(&f),
            &Labels::new(title, "epoch", "test accuracy (%)"),
            &curves,
        )?;
        r.s.plot(f);
    }
    for &method in &c.methods {
        let v = r.of("cifar", set, method, |x| x.run.test_accuracy());
        r.metric(
            format!("cifar/{}/{method}/test_accuracy_pct", st.noise),
            v.clone(),
        );
        let name = format!("{} {}, {}: {method}", c.dataset, st.noise, c.net);
        let row = Row::new(name, "% test accuracy", v);
        r.s.row(row.higher_is_better().decimals(2));
    }
    if r.has("cifar", Method::L2rw) {
        let of = |f: fn(&RunResult) -> Option<f64>| {
            r.of("cifar", set, Method::L2rw, |x| f(x).unwrap_or(f64::NAN))
        };
        let (wf, wo) = (of(|x| x.run.weight_flagged), of(|x| x.run.weight_other));
        let ess = of(|x| x.run.weight_ess);
        let n = &st.noise;
        r.metric(format!("cifar/{n}/l2rw/weight_of_corrupted_rel"), wf);
        r.metric(format!("cifar/{n}/l2rw/weight_of_clean_rel"), wo);
        r.metric(format!("cifar/{n}/l2rw/weight_ess_fraction"), ess);
    }
    let what = format!(
        "{} {}, batch {}: time per step",
        c.dataset, c.net, c.opt.batch_size
    );
    let ratio = format!("{} {}: L2RW step time / plain step time", c.dataset, c.net);
    r.step_time_rows(("cifar", set), &c.methods, (what, ratio));
    Ok(())
}

/// The CIFAR setting, from the config.
fn cifar_note(c: &CifarConfig) -> String {
    let o = &c.opt;
    let (base, l2rw) = PAPER_CIFAR_UNIFORM40;
    let warmup = if o.warmup_steps > 0 {
        format!(
            "Deviation: L2RW's first {} steps are plain SGD steps (warm-up), its weighting starts after them \
             (the paper weights from the first step). ",
            o.warmup_steps
        )
    } else {
        String::new()
    };
    format!(
        "CIFAR setting: {} on {} ({} training images incl. the meta set, augmentation {}), {} steps, batch {}, meta batch {:?}, \
         lr {} (×{} at {:?}), momentum {}, weight decay {}; the clean meta set is drawn class-balanced before the noise is \
         applied to the rest. {warmup}Ren et al. (2018) Table 1 (WRN-28-10, CIFAR-10 UniformFlip 40%) is quoted in the task as \
         about {base}% accuracy for the baseline and {l2rw}% for L2RW: not confirmed against the paper here, so no paper column. \
         The final model is reported (nothing selected on the test set). L2RW's time per step is over its weighted steps.",
        c.net, c.dataset, c.train_limit.map_or("all".to_string(), |n| n.to_string()), c.augment, o.steps,
        o.batch_size, o.meta_batch, o.lr, o.gamma, o.milestones, o.momentum, o.weight_decay,
    )
}

/// Why no CIFAR rows: the part was not asked for.
fn cifar_not_run_note(c: &CifarConfig) -> String {
    format!(
        "CIFAR noisy labels (Table 1) were not run in this invocation (`--parts` did not include cifar): CPU time. \
         The configured CIFAR part trains {} for {} steps of batch {} per method and seed (L2RW's steps cost several \
         plain steps each); no CIFAR numbers are reported. Run `--parts cifar --cifar-dir DIR` (or the paper preset \
         on a GPU).",
        c.net, c.opt.steps, c.opt.batch_size
    )
}

/// The paper's MNIST claim at the most imbalanced proportion, checked on our numbers: L2RW's
/// error far below plain SGD's (less than half of it) and no worse than resampling (within one
/// point). `None` when a method is missing.
fn mnist_claim(seeds: &[u64], rs: &[RunResult], proportions: &[f64]) -> Option<String> {
    let p = proportions.iter().copied().fold(f64::NAN, f64::max);
    let set = format!("p={p}");
    let mean = |m: Method| {
        let pick = |r: &RunResult| r.part == "mnist" && r.setting == set && r.method == m;
        rs.iter()
            .any(pick)
            .then(|| SeedStats::new(per_seed(seeds, rs, pick, |r| r.run.test_error_pct())).mean)
    };
    let (l, plain, res) = (
        mean(Method::L2rw)?,
        mean(Method::Plain)?,
        mean(Method::Resample)?,
    );
    let shown = l < plain / 2.0 && l <= res + 1.0;
    Some(format!(
        "Claim (Ren et al. Fig. 3) at {:.1}% 9s: L2RW {l:.2}% test error vs plain {plain:.2}% and resampling \
         {res:.2}% (means over seeds): {}",
        100.0 * p,
        if shown {
            "shown (L2RW below half of plain's error and within 1 point of resampling or better)"
        } else {
            "NOT shown at this budget (needs L2RW < plain/2 and L2RW <= resampling + 1 point)"
        }
    ))
}

/// The paper's CIFAR claim for one noise setting: L2RW's accuracy above plain CE's, paired by seed.
fn cifar_claim(seeds: &[u64], rs: &[RunResult], noise: &str) -> Option<String> {
    let acc = |m: Method| {
        let pick = |r: &RunResult| r.part == "cifar" && r.setting == noise && r.method == m;
        rs.iter()
            .any(pick)
            .then(|| per_seed(seeds, rs, pick, |r| r.run.test_accuracy()))
    };
    let (l, p) = (acc(Method::L2rw)?, acc(Method::Plain)?);
    let d: Vec<f64> = l.iter().zip(&p).map(|(a, b)| a - b).collect();
    let st = SeedStats::new(d.clone());
    let wins = d.iter().filter(|&&x| x > 0.0).count();
    Some(format!(
        "Claim (Ren et al. Table 1) on {noise}: L2RW − plain = {:+.2} ± {:.2} accuracy points ({wins} of {} seeds \
         positive): {}",
        st.mean,
        st.std,
        d.len(),
        if wins == d.len() { "shown" } else { "NOT shown on every seed" }
    ))
}
