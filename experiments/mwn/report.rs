//! The report: accuracy rows beside the paper's (quoted) numbers, MWN − CE paired by seed, the
//! learned weighting function's shape (slope, mean weights, plots), times per step, the claims
//! as small named checks, and notes whose figures all come from the config.

use std::collections::BTreeMap;

use anyhow::{ensure, Result};

use super::config::{Method, MwnConfig, MwnSettings, Normalise, Part};
use super::experiment::{sanitize, RunResult};
use crate::plot::{self, Labels, Series};
use crate::results::{per_seed, Row, SeedStats, Summary};
use crate::Experiment;

/// The paper, as cited in the summary.
pub const PAPER: &str = "Shu, Xie, Yi, Zhao, Zhou, Xu & Meng (2019), Meta-Weight-Net: Learning \
                         an Explicit Mapping For Sample Weighting, NeurIPS 2019, arXiv:1902.07379";

/// Paper numbers (test accuracy %) as quoted in the task: `(part, dataset, setting, method,
/// value, source)`. Not confirmed against the paper's PDF here; the sources say so.
const PAPER_ROWS: &[(Part, &str, &str, Method, f64, &str)] = &[
    (
        Part::LongTail,
        "cifar10",
        "IF=200",
        Method::Ce,
        65.68,
        "Table 1, CIFAR-10-LT, ResNet-32",
    ),
    (
        Part::LongTail,
        "cifar10",
        "IF=100",
        Method::Ce,
        70.36,
        "Table 1, CIFAR-10-LT, ResNet-32",
    ),
    (
        Part::LongTail,
        "cifar10",
        "IF=50",
        Method::Ce,
        74.81,
        "Table 1, CIFAR-10-LT, ResNet-32",
    ),
    (
        Part::LongTail,
        "cifar10",
        "IF=200",
        Method::Mwn,
        68.91,
        "Table 1, CIFAR-10-LT, ResNet-32",
    ),
    (
        Part::LongTail,
        "cifar10",
        "IF=100",
        Method::Mwn,
        75.21,
        "Table 1, CIFAR-10-LT, ResNet-32",
    ),
    (
        Part::LongTail,
        "cifar10",
        "IF=50",
        Method::Mwn,
        80.06,
        "Table 1, CIFAR-10-LT, ResNet-32",
    ),
    (
        Part::LongTail,
        "cifar100",
        "IF=20",
        Method::Mwn,
        54.37,
        "Table 1, CIFAR-100-LT, ResNet-32",
    ),
    (
        Part::Noise,
        "cifar10",
        "uniform_any:0.4",
        Method::Ce,
        68.07,
        "Table 2, CIFAR-10 uniform 40 %, WRN-28-10",
    ),
    (
        Part::Noise,
        "cifar10",
        "uniform_any:0.4",
        Method::Mwn,
        89.27,
        "Table 2, CIFAR-10 uniform 40 %, WRN-28-10",
    ),
    (
        Part::Noise,
        "cifar10",
        "pair:0.4",
        Method::Ce,
        70.77,
        "Table 3, CIFAR-10 flip 40 %, ResNet-32",
    ),
    (
        Part::Noise,
        "cifar10",
        "pair:0.4",
        Method::Mwn,
        87.54,
        "Table 3, CIFAR-10 flip 40 %, ResNet-32",
    ),
];

/// A summary being built from the runs.
struct Report<'a> {
    exp: &'a Experiment<MwnConfig>,
    rs: &'a [RunResult],
    seeds: Vec<u64>,
    s: Summary,
    metrics: BTreeMap<String, SeedStats>,
    claims: Vec<String>,
}

/// One setting of the report: its part, dataset, setting name, network and title.
struct Here {
    part: Part,
    ds: String,
    set: String,
    net: String,
    title: String,
}

impl Here {
    fn matches(&self, r: &RunResult) -> bool {
        r.part == self.part && r.dataset == self.ds && r.setting == self.set
    }

    /// `part/dataset/setting`, the prefix of its metrics and plot names.
    fn key(&self) -> String {
        format!("{}/{}/{}", self.part.as_str(), self.ds, self.set)
    }
}

impl Report<'_> {
    /// Per seed, `f` of the run of `method` in `h`.
    fn of<V: Into<Option<f64>>>(
        &self,
        h: &Here,
        method: Method,
        f: impl Fn(&RunResult) -> V,
    ) -> Vec<f64> {
        per_seed(
            &self.seeds,
            self.rs,
            |r| h.matches(r) && r.method == method,
            f,
        )
    }
}

fn net_of(cfg: &MwnConfig, part: Part, dataset: &str, setting: &str) -> String {
    match part {
        Part::Noise => cfg
            .noise
            .settings
            .iter()
            .find(|s| s.dataset == dataset && s.noise == setting)
            .map(|s| s.net.to_string()),
        Part::LongTail => cfg
            .long_tail
            .settings
            .iter()
            .find(|s| s.dataset == dataset && format!("IF={}", s.imbalance_factor) == setting)
            .map(|s| s.net.to_string()),
    }
    .unwrap_or_default()
}

/// The settings of `rs` in first-seen order.
fn settings(cfg: &MwnConfig, rs: &[RunResult]) -> Vec<Here> {
    let mut out: Vec<Here> = Vec::new();
    for r in rs {
        if out.iter().any(|h| h.matches(r)) {
            continue;
        }
        let (ds, set) = (&r.dataset, &r.setting);
        out.push(Here {
            part: r.part,
            ds: ds.clone(),
            set: set.clone(),
            net: net_of(cfg, r.part, ds, set),
            title: match r.part {
                Part::Noise => format!("{ds} {set}"),
                Part::LongTail => format!("{ds}-LT {set}"),
            },
        });
    }
    out
}

/// Writes `summary.json`/`summary.md` (and the weighting-function plots) for `rs`.
pub(super) fn summarise(exp: &Experiment<MwnConfig>, rs: &[RunResult]) -> Result<Summary> {
    let cfg = &exp.config;
    let mut r = Report {
        exp,
        rs,
        seeds: exp.common.seeds().to_vec(),
        s: Summary::new(
            exp,
            PAPER,
            "Test accuracy (%) by method: noisy labels (Tables 2–3) and long-tailed CIFAR (Table 1)",
        )?,
        metrics: BTreeMap::new(),
        claims: Vec::new(),
    };
    for h in settings(cfg, rs) {
        let methods = match h.part {
            Part::Noise => &cfg.noise.methods,
            Part::LongTail => &cfg.long_tail.methods,
        };
        accuracy_rows(&mut r, &h, methods);
        mwn_vs_ce(&mut r, &h);
        if rs.iter().any(|x| h.matches(x) && x.method == Method::Mwn) {
            vnet_rows(&mut r, &h);
            vnet_plots(&mut r, &h)?;
        }
        for &m in methods {
            let v = r.of(&h, m, |x| Some(x.run.step_ms));
            if v.iter().all(|x| x.is_nan()) {
                continue;
            }
            let name = format!("{}: time per step, {m}", h.title);
            r.s.row(Row::new(name, "ms", v).decimals(0));
        }
    }
    ensure!(!r.s.rows.is_empty(), "no result rows");
    let mut s = r.s;
    for c in r.claims {
        s.note(c);
    }
    s.note(mwn_note(&cfg.mwn));
    for note in part_notes(cfg, rs)? {
        s.note(note);
    }
    s.note(format!(
        "Baselines: ce = mean cross-entropy; focal = focal loss, γ = {}; class_balanced = CE with Cui et al.'s weights, \
         β = {}; l2rw = the zoo's Learning to Reweight on the same split and seed. Each seed: the same data, meta set and \
         initial weights for every method. Paper numbers use the paper's networks and full schedules; where ours differ \
         (network, steps) the rows are not like for like. Nothing is selected on the test set: the final model is reported.",
        cfg.focal_gamma, cfg.cb_beta
    ));
    s.metrics = r.metrics;
    exp.results.write_summary(&s)?;
    Ok(s)
}

/// Each method's test accuracy in `h`, beside the paper's number where one is quoted.
fn accuracy_rows(r: &mut Report, h: &Here, methods: &[Method]) {
    for &m in methods {
        let v = r.of(h, m, |x| Some(x.run.test_accuracy()));
        if v.iter().all(|x| x.is_nan()) {
            continue;
        }
        r.metrics.insert(
            format!("{}/{m}/test_accuracy_pct", h.key()),
            SeedStats::new(v.clone()),
        );
        let mut row = Row::new(format!("{}, {}: {m}", h.title, h.net), "% test accuracy", v)
            .higher_is_better()
            .decimals(2);
        if let Some(&(_, _, _, _, val, src)) = PAPER_ROWS
            .iter()
            .find(|p| p.0 == h.part && p.1 == h.ds && p.2 == h.set && p.3 == m)
        {
            row = row.paper(
                val,
                format!("{src} (as quoted in the task; not confirmed against the paper here)"),
            );
        }
        r.s.row(row);
    }
}

/// The paper's main claim in `h`: MWN beats CE, paired by seed.
fn mwn_vs_ce(r: &mut Report, h: &Here) {
    let acc = |x: &RunResult| Some(x.run.test_accuracy());
    let (ce, mwn) = (r.of(h, Method::Ce, acc), r.of(h, Method::Mwn, acc));
    if ce.iter().chain(&mwn).any(|x| x.is_nan()) {
        return;
    }
    let d: Vec<f64> = mwn.iter().zip(&ce).map(|(a, b)| a - b).collect();
    let st = SeedStats::new(d.clone());
    r.claims.push(format!(
        "{}: MWN − CE = {:+.2} ± {:.2} points ({} of {} seeds positive): {}",
        h.title,
        st.mean,
        st.std,
        d.iter().filter(|&&x| x > 0.0).count(),
        d.len(),
        if d.iter().all(|&x| x > 0.0) {
            "MWN beats CE on every seed"
        } else if st.mean > 0.0 {
            "MWN beats CE on average, not on every seed"
        } else {
            "MWN does NOT beat CE here"
        }
    ));
    let name = format!("{}, {}: MWN − CE (paired by seed)", h.title, h.net);
    r.s.row(Row::new(name, "points", d).higher_is_better().decimals(2));
}

/// The learned w(ℓ)'s slope and mean weights of flagged and other rows, with the shape claim:
/// under noise w(ℓ) falls and corrupted examples get less weight; under imbalance it rises and
/// the tail gets more (the rows' arrows mark the direction the paper predicts).
fn vnet_rows(r: &mut Report, h: &Here) {
    let slope = r.of(h, Method::Mwn, |x| x.vnet_slope);
    let vf = r.of(h, Method::Mwn, |x| x.vnet_flagged);
    let vo = r.of(h, Method::Mwn, |x| x.vnet_other);
    let noise = h.part == Part::Noise;
    let (fl, ot) = if noise {
        ("corrupted", "clean")
    } else {
        ("tail-class", "head-class")
    };
    let dir = |row: Row, up: bool| if up { row.higher_is_better() } else { row };
    let t = &h.title;
    let rows = [
        (
            format!(
                "{t}: MWN slope dV/dℓ of the learned w(ℓ), least squares over the plotted range"
            ),
            "weight per nat",
            slope.clone(),
            !noise,
        ),
        (
            format!("{t}: MWN mean V(ℓ), {fl} examples"),
            "weight",
            vf.clone(),
            !noise,
        ),
        (
            format!("{t}: MWN mean V(ℓ), {ot} examples"),
            "weight",
            vo.clone(),
            noise,
        ),
    ];
    for (name, unit, v, up) in rows {
        r.s.row(dir(Row::new(name, unit, v).decimals(4), up));
    }
    let st = SeedStats::new(slope.clone());
    r.claims.push(slope_claim(t, &slope, &st, noise));
    let k = h.key();
    r.metrics.insert(format!("{k}/mwn/vnet_slope"), st);
    r.metrics
        .insert(format!("{k}/mwn/vnet_mean_{fl}"), SeedStats::new(vf));
    r.metrics
        .insert(format!("{k}/mwn/vnet_mean_{ot}"), SeedStats::new(vo));
}

/// The paper's shape of w(ℓ): falling under noise, rising under imbalance, on every seed.
fn slope_claim(title: &str, slope: &[f64], st: &SeedStats, want_falling: bool) -> String {
    let ok = slope
        .iter()
        .all(|&x| if want_falling { x < 0.0 } else { x > 0.0 });
    format!(
        "{title}: learned w(ℓ) {} with the loss (least-squares slope over the plotted range {:+.4} ± {:.4} per nat; paper: {}): {}",
        if st.mean < 0.0 { "falls" } else { "rises" },
        st.mean,
        st.std,
        if want_falling { "falling under noise" } else { "rising under imbalance" },
        if ok { "the paper's shape, on every seed" } else { "NOT the paper's shape on every seed" }
    )
}

/// The learned functions (one line per seed) and the weight histogram of `h`.
fn vnet_plots(r: &mut Report, h: &Here) -> Result<()> {
    let series: Vec<Series> =
        r.rs.iter()
            .filter(|x| h.matches(x) && x.method == Method::Mwn)
            .filter_map(|x| {
                x.weight_fn
                    .clone()
                    .map(|f| Series::new(format!("seed {}", x.run.seed), f))
            })
            .collect();
    if !series.is_empty() {
        let file = format!("weight_fn_{}.svg", sanitize(&h.key()));
        plot::line_chart(
            &r.exp.results.path(&file),
            &Labels::new(
                format!(
                    "MWN: learned weighting function at the end, {}, {}",
                    h.title, h.net
                ),
                "training loss ℓ",
                "weight V(ℓ)",
            ),
            &series,
        )?;
        r.s.plot(file);
    }
    let hist = format!("weights_hist_{}.svg", sanitize(&h.key()));
    if r.exp.results.path(&hist).is_file() {
        r.s.plot(hist);
    }
    Ok(())
}

/// MWN's step as configured.
fn mwn_note(m: &MwnSettings) -> String {
    format!(
        "MWN step: {}: a virtual SGD step of the classifier with size equal to the current \
         learning rate on the weighted loss with weights V_φ(ℓ_i) of the detached losses, the mean CE of a clean meta batch \
         at the virtual parameters, and one {:?} step on φ from the exact second-order meta-gradient (the core's \
         classifier_meta_gradient); then the real step on (1/n) Σ w_i ℓ_i with w from the updated VNet. Normalisation: {}. \
         VNet 1-{}-1, ReLU, sigmoid, PyTorch default init.",
        if m.meta_every == 1 {
            "every iteration, as the authors' code".to_string()
        } else {
            format!("every {} iterations (a deviation: the authors' code meta-steps every iteration; the real steps between use the current VNet)", m.meta_every)
        },
        m.optim,
        match m.normalise {
            Normalise::Sum => "w = n·v/Σv, i.e. the loss Σ v_i ℓ_i / Σ v_j, as the authors' train_WRN-28-10_Meta_PGC.py (unnormalised if Σv = 0)",
            Normalise::Mean => "none, the loss (1/n) Σ v_i ℓ_i, as the authors' MW-Net.py",
        },
        m.hidden,
    )
}

/// Each part that has results: its schedule and data, from the config.
fn part_notes(cfg: &MwnConfig, rs: &[RunResult]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for (name, p) in [
        ("noise", serde_json::to_value(&cfg.noise)?),
        ("long_tail", serde_json::to_value(&cfg.long_tail)?),
    ] {
        let Some(first) = rs.iter().find(|r| r.part.as_str() == name) else {
            continue;
        };
        let o = &p["opt"];
        let warmup = o["warmup_steps"].as_u64().unwrap_or(0);
        let warmup = if warmup > 0 {
            format!(
                " Deviation: the first {warmup} steps of every weighted method (focal, class_balanced, l2rw, \
                 mwn) are plain mean-CE steps (a warm-up, as in deferred re-weighting); the weighting, and MWN's \
                 meta steps, start after them. Their times per step are over the whole run."
            )
        } else {
            String::new()
        };
        out.push(format!(
            "{name} part: {} steps, batch {}, meta batch {}, SGD lr {} (×{} at {}), momentum {}, weight decay {}, \
             augmentation {}, training subset {}, test images {}.{warmup} {}",
            o["steps"], o["batch_size"], o["meta_batch"], o["lr"], o["gamma"], o["milestones"], o["momentum"],
            o["weight_decay"], p["augment"], p["train_limit"], first.run.n_test,
            if name == "noise" {
                "The clean meta set is drawn class-balanced from the (subset of the) training set before the noise is \
                 applied to the rest; uniform_any noise replaces a label with a uniformly drawn class (possibly the \
                 true one), MWN's convention; 'corrupted' = the label differs from the truth."
            } else {
                "The clean balanced meta set is drawn from the training set first; the rest is subsampled to the \
                 long-tailed profile; the test set is balanced. 'Tail' = the classes with fewer examples than the \
                 median class."
            }
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::experiment::least_squares_slope;

    #[test]
    fn least_squares_slope_of_lines_and_a_peak() {
        let line: Vec<(f64, f64)> = (0..5).map(|i| (i as f64, 2.0 - 0.5 * i as f64)).collect();
        assert!((least_squares_slope(&line) + 0.5).abs() < 1e-12);
        // Rises on [0, 1], falls on [1, 4]: negative overall.
        let peak = [(0.0, 0.2), (1.0, 0.3), (2.0, 0.1), (3.0, 0.05), (4.0, 0.0)];
        assert!(least_squares_slope(&peak) < 0.0);
        assert_eq!(least_squares_slope(&[(1.0, 3.0)]), 0.0);
    }
}
