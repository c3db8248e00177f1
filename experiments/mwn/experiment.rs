//! The experiments: noisy labels (Tables 2–3) and long-tailed classes (Table 1), each method
//! trained per seed on the reweighting core (MWN as its own [`StepRule`], the baselines as the
//! core's), then the learned weighting functions, the weight histograms and the report.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use zoo_data::{make_batch, Augment, DataSource};
use zoo_models::loss;
use zoo_models::models::VNet;
use zoo_models::{Classifier, Ctx};

use super::config::{Method, MwnConfig, Part, PartConfig};
use super::report::summarise;
use super::task::{weighting_function, MwnRule};
use crate::parallel::run_indexed_first;
use crate::plot::{self, Labels};
use crate::results::Summary;
use crate::reweight::rules::{self, ClassBalancedCe, Focal};
use crate::reweight::{
    self, fnv1a, random_subset, role_rng, Datasets, Prepared, ReweightTask, RunOut, RunRecord,
    Setting, StepRule, TaskData,
};
use crate::Experiment;

/// One trained model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    /// Which part.
    pub part: Part,
    /// `cifar10` / `cifar100`.
    pub dataset: String,
    /// The setting: a noise spec (`uniform_any:0.4`) or `IF=100`.
    pub setting: String,
    /// Method.
    pub method: Method,
    /// Fingerprint of the part's configuration (results of other configurations are not merged).
    pub config_key: String,
    /// What the core measured.
    #[serde(flatten)]
    pub run: RunRecord,
    /// MWN: mean VNet output `V(ℓ)` over flagged / other rows of a training sample, at the end.
    pub vnet_flagged: Option<f64>,
    /// See `vnet_flagged`.
    pub vnet_other: Option<f64>,
    /// MWN: least-squares slope `dV/dℓ` of the learned weighting function over the plotted range
    /// `ℓ ∈ [0, max(q99 of the final training losses, 2 ln C)]`: negative when it falls with the
    /// loss, positive when it rises. (Not over the final training losses alone: after the
    /// network has memorised its training set those all lie near 0, a sliver of the function.)
    pub vnet_slope: Option<f64>,
    /// MWN: the learned weighting function `(ℓ, V(ℓ))` at the end of training.
    pub weight_fn: Option<Vec<(f64, f64)>>,
}

impl crate::results::SeededRun for RunResult {
    fn seed(&self) -> u64 {
        self.run.seed
    }
}

/// One prepared split of a part, setting and seed.
struct Prep {
    part: Part,
    key: String,
    p: Prepared,
    seed: u64,
}

/// Raw VNet outputs of a training sample under the final model, for histograms.
#[derive(Default)]
struct WeightSample {
    flagged: Vec<f64>,
    other: Vec<f64>,
}

/// What the flag means in the histograms of `part`: (flagged, other).
fn flag_names(part: Part) -> (&'static str, &'static str) {
    match part {
        Part::Noise => ("corrupted label", "clean label"),
        Part::LongTail => ("tail class", "head class"),
    }
}

/// A stable fingerprint (FNV-1a of the JSON) of what determines a part's results.
fn config_key<S: Serialize>(cfg: &MwnConfig, part: &PartConfig<S>) -> Result<String> {
    let v = serde_json::json!({
        "part": part, "mwn": cfg.mwn, "focal_gamma": cfg.focal_gamma,
        "cb_beta": cfg.cb_beta, "l2rw_all_zero": cfg.l2rw_all_zero,
        "histogram_examples": cfg.histogram_examples,
    });
    Ok(format!(
        "{:016x}",
        fnv1a(serde_json::to_string(&v)?.as_bytes())
    ))
}

/// Final per-example losses (evaluation mode) of `rows` of the training set, and `V(ℓ)`.
fn final_losses_and_weights(
    model: &dyn Classifier,
    vnet: &VNet,
    p: &Prepared,
    rows: &[usize],
) -> Result<(Vec<f64>, Vec<f64>)> {
    let params = model.store().params();
    let dev = model.store().device().clone();
    let (mut ls, mut ws) = (Vec::new(), Vec::new());
    for chunk in rows.chunks(500) {
        let b = make_batch(&p.split.train, chunk, &p.norm, None, &dev)?;
        let z = model.forward(&params, &b.images, &mut Ctx::eval())?;
        let l = loss::per_example_ce(&z, &b.labels)?.detach();
        let w = vnet
            .forward(&vnet.store().params(), &l.unsqueeze(1)?)?
            .squeeze(1)?;
        ls.extend(zoo_models::readout::vec_f64(&l)?);
        ws.extend(zoo_models::readout::vec_f64(&w)?);
    }
    Ok((ls, ws))
}

/// Slope of the least-squares line through `(x, y)` points (0 for fewer than two distinct x).
pub(super) fn least_squares_slope(pts: &[(f64, f64)]) -> f64 {
    let n = pts.len() as f64;
    let (mx, my) = pts
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x / n, b + y / n));
    let (sxy, sxx) = pts.iter().fold((0.0, 0.0), |(a, b), (x, y)| {
        (a + (x - mx) * (y - my), b + (x - mx) * (x - mx))
    });
    if sxx > 0.0 {
        sxy / sxx
    } else {
        0.0
    }
}

fn quantile(v: &[f64], q: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    if s.is_empty() {
        return f64::NAN;
    }
    s[((s.len() - 1) as f64 * q).round() as usize]
}

/// A method's step rule, and the VNet to inspect after training (MWN only).
type RuleAndVnet = (Box<dyn StepRule>, Option<Arc<VNet>>);

/// The rule of `method`, and the VNet to inspect after training (MWN only).
fn rule_of(
    exp: &Experiment<MwnConfig>,
    method: Method,
    p: &Prepared,
    seed: u64,
) -> Result<RuleAndVnet> {
    let cfg = &exp.config;
    let rule: Box<dyn StepRule> = match method {
        Method::Ce => Box::new(rules::Plain),
        Method::L2rw => Box::new(rules::L2rw::new(cfg.l2rw_all_zero)),
        Method::Focal => Box::new(Focal(cfg.focal_gamma)),
        Method::ClassBalanced => {
            let w = loss::class_balanced_weights(&p.split.train.class_counts(), cfg.cb_beta)
                .context("class-balanced weights")?;
            Box::new(ClassBalancedCe(w))
        }
        Method::Mwn => {
            let rng = &mut role_rng(seed, "mwn-vnet");
            let v = Arc::new(VNet::new(cfg.mwn.hidden, rng, &exp.device)?);
            return Ok((Box::new(MwnRule::new(v.clone(), &cfg.mwn)?), Some(v)));
        }
    };
    Ok((rule, None))
}

/// MWN's learned function after training: mean `V(ℓ)` of flagged and other rows of a training
/// sample (also added to the histograms), and `w(ℓ)` with its slope.
fn vnet_diagnostics(
    exp: &Experiment<MwnConfig>,
    prep: &Prep,
    (model, vnet): (&dyn Classifier, &VNet),
    r: &mut RunResult,
    samples: &Mutex<BTreeMap<String, WeightSample>>,
) -> Result<()> {
    let p = &prep.p;
    let train = &p.split.train;
    let rng = &mut role_rng(prep.seed, "mwn-hist");
    let rows = random_subset(train.len(), exp.config.histogram_examples, rng);
    let (ls, ws) = final_losses_and_weights(model, vnet, p, &rows)?;
    let (mut wf, mut wo) = (Vec::new(), Vec::new());
    for (&row, &w) in rows.iter().zip(&ws) {
        if p.split.flagged[row] {
            wf.push(w);
        } else {
            wo.push(w);
        }
    }
    let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    r.vnet_flagged = mean(&wf);
    r.vnet_other = mean(&wo);
    let max = quantile(&ls, 0.99).max((train.num_classes as f64).ln() * 2.0);
    let f = weighting_function(vnet, max, 101)?;
    r.vnet_slope = Some(least_squares_slope(&f));
    r.weight_fn = Some(f);
    let mut samples = samples
        .lock()
        .map_err(|_| anyhow::anyhow!("a training thread panicked"))?;
    let e = samples
        .entry(format!(
            "{}/{}/{}",
            prep.part.as_str(),
            p.dataset,
            p.setting
        ))
        .or_default();
    e.flagged.extend(wf);
    e.other.extend(wo);
    Ok(())
}

/// Trains `method` on `prep` and measures it.
fn train_one(
    exp: &Experiment<MwnConfig>,
    prep: &Prep,
    method: Method,
    samples: &Mutex<BTreeMap<String, WeightSample>>,
) -> Result<RunResult> {
    let (p, seed) = (&prep.p, prep.seed);
    let (opt, augment) = match prep.part {
        Part::Noise => (&exp.config.noise.opt, exp.config.noise.augment),
        Part::LongTail => (&exp.config.long_tail.opt, exp.config.long_tail.augment),
    };
    let nc = p.split.train.num_classes;
    let model = p
        .net
        .build(nc, &mut role_rng(seed, "mwn-net"), &exp.device)?;
    let data = TaskData {
        train: &p.split.train,
        flagged: &p.split.flagged,
        meta: &p.split.meta,
        test: &p.test,
        norm: p.norm.clone(),
        augment: if augment {
            Augment::CifarCropFlip
        } else {
            Augment::None
        },
    };
    let (rule, vnet) = rule_of(exp, method, p, seed)?;
    let mut task = ReweightTask::new(model, rule, opt, data, seed)?;
    let label = format!(
        "{}_{}_{}/{method}",
        prep.part.as_str(),
        p.dataset,
        p.setting.replace([':', '='], "_")
    );
    let run = reweight::train(&mut task, seed, &RunOut::of(exp, label))?;
    let mut r = RunResult {
        part: prep.part,
        dataset: p.dataset.clone(),
        setting: p.setting.clone(),
        method,
        config_key: prep.key.clone(),
        run,
        vnet_flagged: None,
        vnet_other: None,
        vnet_slope: None,
        weight_fn: None,
    };
    if let Some(v) = vnet {
        vnet_diagnostics(exp, prep, (task.model(), &v), &mut r, samples)?;
    }
    Ok(r)
}

/// Every split of `parts`, in the report's order: part, setting, seed.
fn prepare_all(
    exp: &Experiment<MwnConfig>,
    src: &DataSource,
    parts: &[Part],
    key_of: impl Fn(Part) -> String,
) -> Result<Vec<Prep>> {
    let (noise, lt) = (&exp.config.noise, &exp.config.long_tail);
    let mut data = Datasets::new(src);
    let mut preps = Vec::new();
    let mut push = |part: Part, p: Prepared, seed: u64| {
        let key = key_of(part);
        preps.push(Prep { part, key, p, seed });
    };
    if parts.contains(&Part::Noise) {
        for s in &noise.settings {
            let limits = (noise.train_limit, noise.test_limit);
            let set = Setting::new(&s.dataset, &s.net, s.meta_per_class, limits);
            for &seed in exp.common.seeds() {
                push(Part::Noise, set.noisy(&mut data, &s.noise, seed)?, seed);
            }
        }
    }
    if parts.contains(&Part::LongTail) {
        for s in &lt.settings {
            let limits = (lt.train_limit, lt.test_limit);
            let set = Setting::new(&s.dataset, &s.net, s.meta_per_class, limits);
            for &seed in exp.common.seeds() {
                let p = set.long_tailed(&mut data, s.imbalance_factor, seed)?;
                push(Part::LongTail, p, seed);
            }
        }
    }
    Ok(preps)
}

/// A result written before the core (`test_accuracy` in % instead of `test_error`), in the
/// current schema.
fn upgrade(mut v: serde_json::Value) -> serde_json::Value {
    if let Some(o) = v.as_object_mut() {
        if !o.contains_key("test_error") {
            let err = |a: &serde_json::Value| a.as_f64().map(|a| 1.0 - a / 100.0);
            let e = o.get("test_accuracy").and_then(err);
            let per: Option<Vec<f64>> = o
                .get("test_accuracy_per_class")
                .and_then(|a| a.as_array())
                .map(|a| a.iter().filter_map(err).collect());
            o.insert("test_error".into(), e.into());
            o.insert(
                "test_error_per_class".into(),
                per.unwrap_or_default().into(),
            );
        }
    }
    v
}

/// Results of the parts not run now already in the output directory, if they came from this
/// configuration and seeds.
fn kept_results(
    exp: &Experiment<MwnConfig>,
    parts: &[Part],
    key_of: impl Fn(Part) -> String,
) -> Result<Vec<RunResult>> {
    let path = exp.results.path("results.json");
    if !path.is_file() {
        return Ok(Vec::new());
    }
    let old: Vec<serde_json::Value> = serde_json::from_slice(&std::fs::read(&path)?)
        .with_context(|| format!("reading {}", path.display()))?;
    let old: Vec<RunResult> = old
        .into_iter()
        .map(|v| serde_json::from_value(upgrade(v)))
        .collect::<Result<_, _>>()
        .with_context(|| format!("reading {}", path.display()))?;
    let seeds = exp.common.seeds();
    let kept: Vec<RunResult> = old
        .into_iter()
        .filter(|r| {
            !parts.contains(&r.part)
                && key_of(r.part) == r.config_key
                && seeds.contains(&r.run.seed)
        })
        .collect();
    if !kept.is_empty() {
        tracing::info!(
            "keeping {} earlier results of the other part from {}",
            kept.len(),
            path.display()
        );
    }
    Ok(kept)
}

/// One histogram of the final VNet weights per setting, flagged against other rows.
fn write_histograms(
    exp: &Experiment<MwnConfig>,
    samples: BTreeMap<String, WeightSample>,
) -> Result<()> {
    for (k, s) in &samples {
        let part = if k.starts_with("noise/") {
            Part::Noise
        } else {
            Part::LongTail
        };
        let (fname, oname) = flag_names(part);
        let file = format!("weights_hist_{}.svg", sanitize(k));
        plot::histogram(
            &exp.results.path(&file),
            &Labels::new(
                format!("MWN: V(ℓ) of training examples at the end, {k} (all seeds)"),
                "VNet weight V(ℓ)",
                "examples",
            ),
            &[(oname, &s.other), (fname, &s.flagged)],
            30,
            None,
        )?;
    }
    Ok(())
}

/// Runs `parts` and writes `results.json` (merged with results of the other part already in the
/// output directory under the same configuration), `summary.json`/`summary.md` and plots.
pub fn run(exp: &Experiment<MwnConfig>, src: &DataSource, parts: &[Part]) -> Result<Summary> {
    let cfg = &exp.config;
    let keys = [
        (Part::Noise, config_key(cfg, &cfg.noise)?),
        (Part::LongTail, config_key(cfg, &cfg.long_tail)?),
    ];
    let key_of = |p: Part| {
        keys.iter()
            .find(|k| k.0 == p)
            .map(|k| k.1.clone())
            .unwrap_or_default()
    };
    // Every split is prepared first (sequentially: the dataset cache is shared), then the runs
    // go out to `--jobs` threads; each owns its seeded generators, so results do not depend on
    // the schedule.
    let preps = prepare_all(exp, src, parts, key_of)?;
    let methods = |part: Part| match part {
        Part::Noise => &cfg.noise.methods,
        Part::LongTail => &cfg.long_tail.methods,
    };
    let jobs: Vec<(usize, Method)> = preps
        .iter()
        .enumerate()
        .flat_map(|(k, p)| methods(p.part).iter().map(move |&m| (k, m)))
        .collect();
    // Meta-learned methods (the longest runs) go out first, so that runs side by side end together.
    let long = |j: usize| matches!(jobs[j].1, Method::Mwn | Method::L2rw);
    let samples = Mutex::new(BTreeMap::new());
    let mut results = run_indexed_first(cfg.jobs.max(1), jobs.len(), long, |j| {
        train_one(exp, &preps[jobs[j].0], jobs[j].1, &samples)
    })?;
    let samples = samples
        .into_inner()
        .map_err(|_| anyhow::anyhow!("a training thread panicked"))?;
    results.splice(0..0, kept_results(exp, parts, key_of)?);
    exp.results.write_json("results.json", &results)?;
    write_histograms(exp, samples)?;
    summarise(exp, &results)
}

/// `s` with every character but ASCII letters and digits replaced by `_` (file names).
pub(super) fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{upgrade, RunResult};
    use crate::reweight::json_test_accuracy;

    /// An entry of a `results.json` written before the core (results/mwn/cpu, seed 0, CE).
    const OLD: &str = r#"{"part": "noise", "dataset": "cifar10", "setting": "uniform_any:0.4",
        "method": "ce", "seed": 0, "config_key": "24248667a0e56ae1", "test_accuracy": 58.58,
        "test_accuracy_per_class": [66.9, 72.3, 37.6, 26.3, 48.1, 62.8, 70.8, 60.8, 72.8, 67.4],
        "step_ms": 305.515785115625, "weight_flagged": null, "weight_other": null,
        "vnet_flagged": null, "vnet_other": null, "vnet_slope": null, "weight_fn": null,
        "n_train": 10000, "n_flagged": 3553, "n_meta": 1000, "n_test": 10000}"#;

    #[test]
    fn results_written_before_the_core_still_merge_and_read() {
        let old: serde_json::Value = serde_json::from_str(OLD).unwrap();
        assert_eq!(json_test_accuracy(&old), Some(58.58));
        let r: RunResult = serde_json::from_value(upgrade(old)).unwrap();
        assert_eq!(
            (r.run.seed, r.run.n_train, r.run.n_flagged),
            (0, 10000, 3553)
        );
        assert!((r.run.test_accuracy() - 58.58).abs() < 1e-9);
        assert_eq!(r.run.test_error_per_class.len(), 10);
        assert_eq!(r.run.weighted_step_ms, None);
        // Written again, it is in the current schema and reads back the same.
        let v = serde_json::to_value(&r).unwrap();
        assert!(v.get("test_accuracy").is_none() && v["test_error"].is_f64());
        assert_eq!(json_test_accuracy(&v), Some(r.run.test_accuracy()));
    }
}
