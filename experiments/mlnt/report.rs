//! The report: per method and iteration the validation-selected, student and EMA-teacher
//! accuracies, paired differences against CE, the second-iteration ablation, exact against
//! first-order meta-gradients, Meta-Weight-Net's results on the same split when they exist, the
//! curves plot, the claims as small named checks, and notes whose figures come from the config.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{ensure, Result};

use super::config::{CifarSetting, Features, Method, MlntConfig, Update};
use super::experiment::{RunResult, PAPER_CLOTHING1M};
use crate::plot::{line_chart, Labels, Series};
use crate::results::{per_seed, Row, SeedStats, Summary};
use crate::reweight::json_test_accuracy;
use crate::Experiment;

/// The paper, as cited in the summary.
pub const PAPER: &str = "Li, Wong, Zhao & Kankanhalli (2019), Learning to Learn from Noisy \
                         Labeled Data, CVPR 2019, arXiv:1812.05214";

/// A value of a run, for rows built from several.
type Of = fn(&RunResult) -> f64;

/// A summary being built from the runs.
struct Report<'a> {
    rs: &'a [RunResult],
    seeds: Vec<u64>,
    s: Summary,
    metrics: BTreeMap<String, SeedStats>,
    claims: Vec<String>,
}

/// One noise setting of the report and the (method, iteration) pairs that ran in it.
struct Here<'a> {
    ds: &'a str,
    set: &'a str,
    net: String,
    keys: Vec<(Method, usize)>,
}

impl Here<'_> {
    fn matches(&self, r: &RunResult) -> bool {
        r.dataset == self.ds && r.setting == self.set
    }
}

impl Report<'_> {
    /// One value per seed of `method`'s run in `round` (NaN where it did not run).
    fn of(&self, h: &Here, (method, round): (Method, usize), f: Of) -> Vec<f64> {
        let pick = |r: &RunResult| h.matches(r) && r.method == method && r.round == round;
        per_seed(&self.seeds, self.rs, pick, f)
    }

    /// A paired-difference row (higher is better), `d = a − b` per seed.
    fn diff_row(&mut self, name: String, a: &[f64], b: &[f64]) -> Vec<f64> {
        let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
        let row = Row::new(name, "points", d.clone());
        self.s.row(row.higher_is_better().decimals(2));
        d
    }
}

/// A run's name in the tables: the method, and its iteration after the first.
pub(super) fn run_name(m: Method, round: usize) -> String {
    if round > 1 {
        format!("{m} (iteration {round})")
    } else {
        m.to_string()
    }
}

/// `d`'s mean ± std and how many seeds are positive, for the claims.
fn paired(d: &[f64]) -> (SeedStats, usize) {
    (
        SeedStats::new(d.to_vec()),
        d.iter().filter(|&&x| x > 0.0).count(),
    )
}

/// Writes `summary.json`/`summary.md` and the curves plot for `rs`.
pub(super) fn summarise(exp: &Experiment<MlntConfig>, rs: &[RunResult]) -> Result<Summary> {
    let cfg = &exp.config;
    let mut r = Report {
        rs,
        seeds: exp.common.seeds().to_vec(),
        s: Summary::new(
            exp,
            PAPER,
            "Test accuracy (%) on CIFAR-10 with noisy labels: CE vs MLNT (student, EMA teacher, and \
             the one selected on the clean validation set)",
        )?,
        metrics: BTreeMap::new(),
        claims: Vec::new(),
    };
    let mwn = mwn_results(exp);
    for st in &cfg.cifar.settings {
        let h = here(rs, st);
        for &k in &h.keys {
            method_rows(&mut r, &h, k);
        }
        ce_comparisons(&mut r, &h);
        second_round_ablation(&mut r, &h);
        if !cfg.mlnt.first_order {
            exact_vs_first_order(&mut r, &h);
        }
        mwn_rows(&mut r, &h, &mwn);
    }
    ensure!(!r.s.rows.is_empty(), "no result rows");
    let mut s = r.s;
    for c in r.claims {
        s.note(c);
    }
    s.note(mlnt_note(cfg));
    s.note(training_note(cfg, &r.seeds));
    if cfg.mlnt.iterative {
        s.note(
            "Iteration 2: a fresh student (same initial weights) trained with MLNT on the rows \
             whose given label equals the round-1 mentor's prediction (the mentor: round 1's \
             validation-selected MLNT model); the paper's exact protocol for the second iteration \
             was not confirmed here.",
        );
    }
    if cfg.mlnt.iterative && cfg.mlnt.ce_second_round {
        s.note(
            "ce (iteration 2), an ablation: the same filter with CE's own validation-selected \
             model as the mentor, and a fresh network (same initial weights) trained with CE on \
             the rows it keeps. Against it, MLNT's second iteration shows what the meta-learned \
             mentor and training add beyond the filter.",
        );
    }
    s.note(format!(
        "Clothing1M (paper: MLNT {PAPER_CLOTHING1M} % after two iterations, as quoted in the task; \
         not confirmed against the paper here) is not run: the data is not available offline. \
         The paper's CIFAR table was not confirmed either, so no CIFAR paper numbers are shown."
    ));
    s.metrics = r.metrics;
    for f in write_curves(exp, rs)? {
        s.plot(f);
    }
    exp.results.write_summary(&s)?;
    Ok(s)
}

/// The setting `st` and the (method, iteration) pairs of `rs` in it, in first-seen order.
fn here<'a>(rs: &[RunResult], st: &'a CifarSetting) -> Here<'a> {
    let mut keys: Vec<(Method, usize)> = Vec::new();
    for r in rs
        .iter()
        .filter(|r| r.dataset == st.dataset && r.setting == st.noise)
    {
        if !keys.contains(&(r.method, r.round)) {
            keys.push((r.method, r.round));
        }
    }
    Here {
        ds: &st.dataset,
        set: &st.noise,
        net: st.net.to_string(),
        keys,
    }
}

/// One run's accuracies (selected, student, teacher), time per step, and for a second
/// iteration the rows the mentor kept.
fn method_rows(r: &mut Report, h: &Here, (m, round): (Method, usize)) {
    let (ds, set, net) = (h.ds, h.set, &h.net);
    let name = run_name(m, round);
    let teacher_name = if m == Method::Ce {
        "EMA of the weights (ablation)"
    } else {
        "EMA teacher"
    };
    let accs: [(&str, Of); 3] = [
        ("selected on validation", RunResult::test_acc_selected),
        ("student", RunResult::test_acc_student),
        (teacher_name, RunResult::test_acc_ema),
    ];
    for (what, f) in accs {
        let v = r.of(h, (m, round), f);
        if v.iter().all(|x| x.is_nan()) {
            continue;
        }
        r.metrics.insert(
            format!(
                "{ds}/{set}/{}/{}",
                name.replace(' ', "_"),
                what.replace(' ', "_")
            ),
            SeedStats::new(v.clone()),
        );
        let row = Row::new(
            format!("{ds} {set}, {net}: {name}, {what}"),
            "% test accuracy",
            v,
        );
        r.s.row(row.higher_is_better().decimals(2));
    }
    let t = r.of(h, (m, round), |x| x.run.step_ms);
    r.s.row(Row::new(format!("{ds} {set}: time per step, {name}"), "ms", t).decimals(0));
    if round > 1 {
        let k = r.of(h, (m, round), |x| {
            100.0 * x.kept_clean_frac.unwrap_or(f64::NAN)
        });
        let n = r.of(h, (m, round), |x| x.run.n_train as f64);
        let kept = format!("{ds} {set}: {name}, rows kept by the mentor");
        r.s.row(Row::new(kept, "rows", n).decimals(0));
        let clean = format!("{ds} {set}: {name}, clean labels among the kept rows");
        r.s.row(Row::new(clean, "%", k).higher_is_better().decimals(1));
    }
}

/// Every run against CE's first iteration, paired by seed; the selected models' difference is
/// the paper's claim.
fn ce_comparisons(r: &mut Report, h: &Here) {
    let ce = (Method::Ce, 1);
    for &(m, round) in h.keys.iter().filter(|k| **k != ce) {
        let name = run_name(m, round);
        let pairs: [(&str, Of); 3] = [
            ("selected − CE selected", RunResult::test_acc_selected),
            ("student − CE student", RunResult::test_acc_student),
            ("teacher − CE's EMA", RunResult::test_acc_ema),
        ];
        for (what, f) in pairs {
            let (a, b) = (r.of(h, (m, round), f), r.of(h, ce, f));
            if a.iter().chain(&b).any(|x| x.is_nan()) {
                continue;
            }
            let row = format!("{} {}: {name} {what} (paired by seed)", h.ds, h.set);
            let d = r.diff_row(row, &a, &b);
            if what.starts_with("selected") {
                r.claims.push(beats_ce_claim(h, &name, &d));
            }
        }
    }
}

/// The paper's claim on one run: better than CE, each selected on the clean validation set.
fn beats_ce_claim(h: &Here, name: &str, d: &[f64]) -> String {
    let (sd, wins) = paired(d);
    format!(
        "{} {}: {name} − CE (each selected on the clean validation set) = \
         {:+.2} ± {:.2} points ({wins} of {} seeds positive): {}",
        h.ds,
        h.set,
        sd.mean,
        sd.std,
        d.len(),
        if wins == d.len() {
            format!("{name} beats CE on every seed")
        } else if sd.mean > 0.0 {
            format!("{name} beats CE on average, not on every seed")
        } else {
            format!("{name} does NOT beat CE here")
        }
    )
}

/// The ablation: MLNT's second iteration against CE's (each with its own mentor).
fn second_round_ablation(r: &mut Report, h: &Here) {
    if !(h.keys.contains(&(Method::Ce, 2)) && h.keys.contains(&(Method::Mlnt, 2))) {
        return;
    }
    let sel: Of = RunResult::test_acc_selected;
    let (a, b) = (
        r.of(h, (Method::Mlnt, 2), sel),
        r.of(h, (Method::Ce, 2), sel),
    );
    if a.iter().chain(&b).any(|x| x.is_nan()) {
        return;
    }
    let (ds, set) = (h.ds, h.set);
    let row = format!(
        "{ds} {set}: mlnt (iteration 2) − ce (iteration 2), selected (paired by \
         seed)"
    );
    let d = r.diff_row(row, &a, &b);
    let (sd, wins) = paired(&d);
    r.claims.push(format!(
        "{ds} {set}: mlnt (iteration 2) − ce (iteration 2), each selected on the clean \
         validation set = {:+.2} ± {:.2} points ({wins} of {} seeds positive): what MLNT \
         adds beyond the second-iteration filter",
        sd.mean,
        sd.std,
        d.len()
    ));
}

/// Exact against first-order meta-gradient: accuracy and time per step, paired by seed.
fn exact_vs_first_order(r: &mut Report, h: &Here) {
    let sel: Of = RunResult::test_acc_selected;
    let ms: Of = |x| x.run.step_ms;
    let (ea, fa) = (
        r.of(h, (Method::Mlnt, 1), sel),
        r.of(h, (Method::MlntFo, 1), sel),
    );
    if ea.iter().chain(&fa).any(|x| x.is_nan()) {
        return;
    }
    let (et, ft) = (
        r.of(h, (Method::Mlnt, 1), ms),
        r.of(h, (Method::MlntFo, 1), ms),
    );
    let (ds, set) = (h.ds, h.set);
    let d: Vec<f64> = ea.iter().zip(&fa).map(|(a, b)| a - b).collect();
    let ratio: Vec<f64> = et.iter().zip(&ft).map(|(a, b)| a / b).collect();
    let (sd, sr) = (SeedStats::new(d.clone()), SeedStats::new(ratio.clone()));
    r.claims.push(format!(
        "{ds} {set}: exact − first-order meta-gradient = {:+.2} ± {:.2} points of test \
         accuracy, at {:.2}× the time per step",
        sd.mean, sd.std, sr.mean
    ));
    let name = format!("{ds} {set}: MLNT exact − first order");
    r.s.row(Row::new(name, "points", d).decimals(2));
    let name = format!("{ds} {set}: MLNT exact / first order, time per step");
    r.s.row(Row::new(name, "×", ratio).decimals(2));
}

/// Meta-Weight-Net (and its CE and L2RW) on the same split and seeds, if `mwn` ran them.
fn mwn_rows(r: &mut Report, h: &Here, mwn: &[serde_json::Value]) {
    let same_split = |v: &serde_json::Value, seed: u64| {
        r.rs.iter().any(|x| {
            h.matches(x)
                && x.run.seed == seed
                && x.round == 1
                && v["n_train"].as_u64() == Some(x.run.n_train as u64)
                && v["n_test"].as_u64() == Some(x.run.n_test as u64)
        })
    };
    let found = |method: &str| -> Vec<Option<&serde_json::Value>> {
        r.seeds
            .iter()
            .map(|&seed| {
                mwn.iter().find(|v| {
                    v["part"] == "noise"
                        && v["dataset"] == h.ds
                        && v["setting"] == h.set
                        && v["method"] == method
                        && v["seed"].as_u64() == Some(seed)
                        && same_split(v, seed)
                })
            })
            .collect()
    };
    let mut rows = Vec::new();
    for (method, what) in [("ce", "CE"), ("mwn", "Meta-Weight-Net"), ("l2rw", "L2RW")] {
        let found = found(method);
        let v: Vec<f64> = found
            .iter()
            .map(|x| x.and_then(json_test_accuracy).unwrap_or(f64::NAN))
            .collect();
        if v.iter().all(|x| x.is_nan()) {
            continue;
        }
        // Each folder once, in the order the seeds found them.
        let mut sources: Vec<&str> = Vec::new();
        for src in found
            .iter()
            .filter_map(|x| x.and_then(|x| x["source"].as_str()))
        {
            if !sources.contains(&src) {
                sources.push(src);
            }
        }
        let name = format!(
            "{} {}, {}: {what} from the mwn binary (same split and seed)",
            h.ds, h.set, h.net
        );
        let note = format!(
            "{}/results.json: mwn's own schedule (its config.json, possibly longer than \
             this run's), final model, no validation selection",
            sources.join(", ")
        );
        rows.push(
            Row::new(name, "% test accuracy", v)
                .higher_is_better()
                .decimals(2)
                .note(note),
        );
    }
    for row in rows {
        r.s.row(row);
    }
}

/// MLNT's step as configured.
fn mlnt_note(cfg: &MlntConfig) -> String {
    let m = &cfg.mlnt;
    format!(
        "MLNT step (after step {}): teacher θ̃ ← ε θ̃ + (1−ε) θ with ε = {} until step {}, {} after \
         (initialised as a copy of the student; BN running statistics averaged the same way); \
         every {} step(s): M = {} synthetic label sets, each moving ⌊ρn⌋ = ⌊{}·{}⌋ rows to the given \
         label of one of their k = {} nearest neighbours in the {} penultimate features; {} fast SGD \
         step(s) of size {} on each; consistency loss KL(teacher ‖ student(θ'_m)) (mean over n·C \
         elements, nn.KLDivLoss's default) averaged over m, weight {} ramped as exp(−5(1−u)²) to step \
         {}; meta-gradient {} (the core's unrolled_meta_gradient); update: {}.",
        m.start_iter,
        m.ema_start,
        m.mid_iter,
        m.ema_end,
        m.meta_every,
        m.num_fast,
        m.perturb_ratio,
        cfg.cifar.opt.batch_size,
        m.num_neighbor,
        match m.features {
            Features::Baseline => "CE baseline's (same seed, frozen, eval mode)",
            Features::Student => "student's own (detached)",
        },
        m.fast_steps,
        m.fast_lr,
        m.alpha,
        m.mid_iter,
        if m.first_order {
            "first order"
        } else {
            "exact second order (mlnt_fo: first order)"
        },
        match m.update {
            Update::Combined => "one SGD step on ∇CE + α∇L_meta (the authors' main.py)",
            Update::Sequential => "an SGD step on α∇L_meta, then the CE step (Alg. 1's order)",
        }
    )
}

/// The training schedule and data, from the config.
fn training_note(cfg: &MlntConfig, seeds: &[u64]) -> String {
    let o = &cfg.cifar.opt;
    format!(
        "Training: {} steps, batch {}, SGD lr {} (×{} at {:?}), momentum {}, weight decay {}, \
         augmentation {}, training subset {:?}; the same batches, augmentation and initial weights \
         for every method of a seed, and the same split, initial weights and batch stream as mwn's runs of that seed (so under mwn's schedule CE here would replay mwn's CE exactly). \
         The clean held-out images (MWN's meta set) are only a validation set: each method's \
         reported model is its student or EMA, whichever is better there. Nothing is selected on \
         the test set. Seeds: {:?}.",
        o.steps,
        o.batch_size,
        o.lr,
        o.gamma,
        o.milestones,
        o.momentum,
        o.weight_decay,
        cfg.cifar.augment,
        cfg.cifar.train_limit,
        seeds
    )
}

/// MWN's (and its CE's) results, each tagged with `"source"` (its folder under `results/`):
/// first those of the same preset beside ours (`results/mwn/<preset>/results.json`), then those of
/// every other `results/mwn/*/` run, so that a run on the same split and seed is found wherever
/// it was kept.
fn mwn_results(exp: &Experiment<MlntConfig>) -> Vec<serde_json::Value> {
    let root: &Path = exp.results.root();
    let Some(base) = root.parent().and_then(|p| p.parent()) else {
        return Vec::new();
    };
    let preset = exp.config.preset.to_string();
    let mut dirs: Vec<String> = std::fs::read_dir(base.join("mwn"))
        .map(|it| {
            it.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                .filter(|d| *d != preset)
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs.insert(0, preset);
    let mut out = Vec::new();
    for d in dirs {
        let path = base.join("mwn").join(&d).join("results.json");
        let Some(vs) = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Vec<serde_json::Value>>(&b).ok())
        else {
            continue;
        };
        for mut v in vs {
            if let Some(o) = v.as_object_mut() {
                o.insert("source".into(), format!("results/mwn/{d}").into());
                out.push(v);
            }
        }
    }
    out
}

/// One SVG per (dataset, noise setting): each method's (and iteration's) student test accuracy
/// against epoch, mean over seeds with ±1 std bars (epochs that not every seed evaluated are
/// left out). Returns the file names.
fn write_curves(exp: &Experiment<MlntConfig>, rs: &[RunResult]) -> Result<Vec<String>> {
    let mut groups: BTreeMap<(&str, &str), BTreeMap<String, Vec<&RunResult>>> = BTreeMap::new();
    for r in rs {
        groups
            .entry((r.dataset.as_str(), r.setting.as_str()))
            .or_default()
            .entry(run_name(r.method, r.round))
            .or_default()
            .push(r);
    }
    let mut files = Vec::new();
    for ((dataset, setting), methods) in groups {
        let series: Vec<Series> = methods
            .into_iter()
            .map(|(name, runs)| Series::mean_of(name, runs.iter().map(|r| &r.run.test_acc_curve)))
            .collect();
        if series.iter().all(|s| s.points.is_empty()) {
            continue;
        }
        let f = format!(
            "test_accuracy_{dataset}_{}.svg",
            setting.replace([':', '=', '.'], "_")
        );
        line_chart(
            &exp.results.path(&f),
            &Labels::new(
                format!("{dataset}, {setting}: student test accuracy (mean ± std over seeds)"),
                "epoch",
                "test accuracy (%)",
            ),
            &series,
        )?;
        files.push(f);
    }
    Ok(files)
}
