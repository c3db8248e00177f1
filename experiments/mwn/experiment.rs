//! The experiments: noisy labels (Tables 2–3) and long-tailed classes (Table 1), each method
//! trained per seed by the shared [`ReweightTask`] (MWN and the loss baselines as
//! [`StepRule`](crate::l2rw::StepRule)s), then the summary, the learned weighting functions and
//! the weight histograms.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::l2rw::experiment::build_net;
use anyhow::{ensure, Context, Result};
use serde::{Deserialize, Serialize};
use zoo_data::corrupt::{long_tail_indices, NoiseSpec};
use zoo_data::split::balanced_meta_set;
use zoo_data::{load, make_batch, Augment, DataSource, ImageDataset, Normalize, Split};
use zoo_models::loss;
use zoo_models::models::VNet;
use zoo_models::{Classifier, Ctx};

use super::config::{
    ImbalanceSetting, Method, MwnConfig, NoiseSetting, Normalise, Part, PartConfig,
};
use super::task::{weighting_function, LossRule, MwnRule};
use crate::l2rw::experiment::role_rng;
use crate::l2rw::task::random_subset;
use crate::l2rw::{Method as L2rwMethod, NetSpec, ReweightTask, TaskData};
use crate::parallel::run_indexed_first;
use crate::plot::{self, Labels, Series};
use crate::results::{per_seed, Row, SeedStats, Summary};
use crate::runner::Runner;
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
    /// Seed.
    pub seed: u64,
    /// Fingerprint of the part's configuration (results of other configurations are not merged).
    pub config_key: String,
    /// Final test accuracy (%).
    pub test_accuracy: f64,
    /// Final test accuracy per class (%), by class index.
    pub test_accuracy_per_class: Vec<f64>,
    /// Mean wall time of a training step (ms).
    pub step_ms: f64,
    /// Mean weight of flagged rows (corrupted label / tail class) relative to uniform, over the
    /// last round (weighted methods only).
    pub weight_flagged: Option<f64>,
    /// The same for the other rows.
    pub weight_other: Option<f64>,
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
    /// Training images, flagged among them, meta images, test images.
    pub n_train: usize,
    /// Flagged training rows.
    pub n_flagged: usize,
    /// Clean meta images.
    pub n_meta: usize,
    /// Test images.
    pub n_test: usize,
}

/// A prepared setting: training set (labels as trained on), flags, meta set, test set.
pub(crate) struct Prepared {
    pub(crate) dataset: String,
    pub(crate) setting: String,
    pub(crate) net: NetSpec,
    pub(crate) train: ImageDataset,
    pub(crate) flagged: Vec<bool>,
    pub(crate) meta: ImageDataset,
    pub(crate) test: ImageDataset,
    pub(crate) norm: Normalize,
    /// What the flag means in plots ("corrupted label", "tail class").
    pub(crate) flag_name: &'static str,
    pub(crate) other_name: &'static str,
}

/// A stable fingerprint (FNV-1a of the JSON) of what determines a part's results.
fn config_key<S: Serialize>(cfg: &MwnConfig, part: &PartConfig<S>) -> Result<String> {
    let v = serde_json::json!({
        "part": part, "mwn": cfg.mwn, "focal_gamma": cfg.focal_gamma,
        "cb_beta": cfg.cb_beta, "l2rw_all_zero": cfg.l2rw_all_zero,
        "histogram_examples": cfg.histogram_examples,
    });
    let s = serde_json::to_string(&v)?;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
    }
    Ok(format!("{h:016x}"))
}

/// Loads `name` once per run.
pub(crate) struct Datasets<'s> {
    pub(crate) src: &'s DataSource,
    pub(crate) cache: BTreeMap<String, (ImageDataset, ImageDataset)>,
}

impl Datasets<'_> {
    pub(crate) fn get(&mut self, name: &str) -> Result<&(ImageDataset, ImageDataset)> {
        if !self.cache.contains_key(name) {
            let train = load(name, Split::Train, self.src)
                .with_context(|| format!("loading {name} (train)"))?;
            let test = load(name, Split::Test, self.src)
                .with_context(|| format!("loading {name} (test)"))?;
            self.cache.insert(name.to_string(), (train, test));
        }
        Ok(&self.cache[name])
    }
}

fn limit_test(test: &ImageDataset, limit: Option<usize>) -> ImageDataset {
    match limit {
        Some(k) => test.subset(&(0..k.min(test.len())).collect::<Vec<_>>()),
        None => test.clone(),
    }
}

/// Noise (§4.2): a random subset (if limited), a clean class-balanced meta set drawn first, the
/// noise applied to the rest.
fn prepare_noise(
    data: &mut Datasets,
    part: &PartConfig<NoiseSetting>,
    s: &NoiseSetting,
    seed: u64,
) -> Result<Prepared> {
    noisy_split(data, part.train_limit, part.test_limit, s, seed)
}

/// The split of [`prepare_noise`] from the limits alone: the same seed and setting give the same
/// subset, meta set and noisy labels (also used by the `mlnt` binary, so its runs share MWN's split).
pub(crate) fn noisy_split(
    data: &mut Datasets,
    train_limit: Option<usize>,
    test_limit: Option<usize>,
    s: &NoiseSetting,
    seed: u64,
) -> Result<Prepared> {
    let (train_all, test_all) = data.get(&s.dataset)?;
    let nc = train_all.num_classes;
    let spec: NoiseSpec = s.noise.parse()?;
    let mut rng = role_rng(seed, &format!("mwn-noise-{}-{}", s.dataset, s.noise));
    let base = match train_limit {
        Some(k) => train_all.subset(&random_subset(train_all.len(), k, &mut rng)),
        None => train_all.clone(),
    };
    let (meta_idx, rest_idx) = balanced_meta_set(&base.labels, s.meta_per_class, &mut rng)?;
    let rest = base.subset(&rest_idx);
    let noisy = spec.apply(&rest.labels, nc, &mut rng)?;
    tracing::info!(
        "{} {}: {} training images, {:.1}% labels changed, {} clean meta images",
        s.dataset,
        s.noise,
        rest.len(),
        100.0 * noisy.realised_rate(),
        meta_idx.len()
    );
    Ok(Prepared {
        dataset: s.dataset.clone(),
        setting: s.noise.clone(),
        net: s.net.clone(),
        train: rest.with_labels(noisy.labels.clone()),
        flagged: noisy.changed.clone(),
        meta: base.subset(&meta_idx),
        test: limit_test(test_all, test_limit),
        norm: Normalize::for_dataset(&s.dataset)?,
        flag_name: "corrupted label",
        other_name: "clean label",
    })
}

/// Long tail (§4.1): a clean balanced meta set drawn first, then the long-tailed subset of the
/// rest (`n_c = n_max · IF^(−c/(C−1))`); flagged rows are those of the rarer half of the classes.
fn prepare_long_tail(
    data: &mut Datasets,
    part: &PartConfig<ImbalanceSetting>,
    s: &ImbalanceSetting,
    seed: u64,
) -> Result<Prepared> {
    let (train_all, test_all) = data.get(&s.dataset)?;
    let nc = train_all.num_classes;
    let mut rng = role_rng(
        seed,
        &format!("mwn-lt-{}-{}", s.dataset, s.imbalance_factor),
    );
    let base = match part.train_limit {
        Some(k) => train_all.subset(&random_subset(train_all.len(), k, &mut rng)),
        None => train_all.clone(),
    };
    let (meta_idx, rest_idx) = balanced_meta_set(&base.labels, s.meta_per_class, &mut rng)?;
    let rest = base.subset(&rest_idx);
    let keep = long_tail_indices(&rest.labels, nc, s.imbalance_factor, &mut rng)?;
    let train = rest.subset(&keep);
    let counts = train.class_counts();
    let mut sorted = counts.clone();
    sorted.sort_unstable();
    let median = sorted[sorted.len() / 2];
    let flagged: Vec<bool> = train
        .labels
        .iter()
        .map(|&y| counts[y as usize] < median)
        .collect();
    tracing::info!(
        "{}-LT IF {}: {} training images (class counts {:?}), {} clean meta images",
        s.dataset,
        s.imbalance_factor,
        train.len(),
        counts,
        meta_idx.len()
    );
    Ok(Prepared {
        dataset: s.dataset.clone(),
        setting: format!("IF={}", s.imbalance_factor),
        net: s.net.clone(),
        train,
        flagged,
        meta: base.subset(&meta_idx),
        test: limit_test(test_all, part.test_limit),
        norm: Normalize::for_dataset(&s.dataset)?,
        flag_name: "tail class",
        other_name: "head class",
    })
}

/// Raw VNet outputs of a training sample under the final model, for histograms.
struct WeightSample {
    flagged: Vec<f64>,
    other: Vec<f64>,
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
        let b = make_batch(&p.train, chunk, &p.norm, None, &dev)?;
        let z = model.forward(&params, &b.images, &mut Ctx::eval())?;
        let l = loss::per_example_ce(&z, &b.labels)?.detach();
        let w = vnet
            .forward(&vnet.store().params(), &l.unsqueeze(1)?)?
            .squeeze(1)?;
        ls.extend(l.to_dtype(candle_core::DType::F64)?.to_vec1::<f64>()?);
        ws.extend(w.to_dtype(candle_core::DType::F64)?.to_vec1::<f64>()?);
    }
    Ok((ls, ws))
}

/// Slope of the least-squares line through `(x, y)` points (0 for fewer than two distinct x).
fn least_squares_slope(pts: &[(f64, f64)]) -> f64 {
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

#[allow(clippy::too_many_arguments)]
fn train_one(
    exp: &Experiment<MwnConfig>,
    part: Part,
    opt: &crate::l2rw::OptConfig,
    augment: bool,
    key: &str,
    p: &Prepared,
    method: Method,
    seed: u64,
    samples: &Mutex<BTreeMap<String, WeightSample>>,
) -> Result<RunResult> {
    let cfg = &exp.config;
    let dev = &exp.device;
    let nc = p.train.num_classes;
    let model = build_net(&p.net, nc, &mut role_rng(seed, "mwn-net"), dev)?;
    let data = TaskData {
        train: &p.train,
        flagged: &p.flagged,
        meta: &p.meta,
        test: &p.test,
        norm: p.norm.clone(),
        augment: if augment {
            Augment::CifarCropFlip
        } else {
            Augment::None
        },
    };
    let base = match method {
        Method::L2rw => L2rwMethod::L2rw,
        _ => L2rwMethod::Plain,
    };
    let mut task = ReweightTask::new(model, base, cfg.l2rw_all_zero, opt, data, seed)?;
    let mut vnet = None;
    match method {
        Method::Ce | Method::L2rw => {}
        Method::Focal => task = task.with_rule(Box::new(LossRule::Focal(cfg.focal_gamma)))?,
        Method::ClassBalanced => {
            let w = loss::class_balanced_weights(&p.train.class_counts(), cfg.cb_beta)
                .context("class-balanced weights")?;
            task = task.with_rule(Box::new(LossRule::ClassBalanced(w)))?;
        }
        Method::Mwn => {
            let v = Arc::new(VNet::new(
                cfg.mwn.hidden,
                &mut role_rng(seed, "mwn-vnet"),
                dev,
            )?);
            task = task.with_rule(Box::new(MwnRule::new(v.clone(), &cfg.mwn)?))?;
            vnet = Some(v);
        }
    }
    let label = format!(
        "{}_{}_{}/{method}",
        part.as_str(),
        p.dataset,
        p.setting.replace([':', '='], "_")
    );
    let run = Runner::with_dir(&exp.results, &[seed], opt.rounds)
        .resume(exp.common.resume)
        .eval_every(opt.eval_every_rounds)
        .label(label.clone())
        .run_seed(seed, &mut task)?;
    let m = run.final_metrics();
    let err = m.get("test_error").context("no test error was logged")?;
    let per_class = (0..nc)
        .filter_map(|c| m.get(&format!("test_error_class{c}")))
        .map(|e| 100.0 * (1.0 - e))
        .collect();
    let step_ms = {
        let v: Vec<f64> = run
            .history
            .iter()
            .filter_map(|r| r.train.get("step_ms"))
            .collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    };
    let mut r = RunResult {
        part,
        dataset: p.dataset.clone(),
        setting: p.setting.clone(),
        method,
        seed,
        config_key: key.to_string(),
        test_accuracy: 100.0 * (1.0 - err),
        test_accuracy_per_class: per_class,
        step_ms,
        weight_flagged: m.get("train_weight_flagged"),
        weight_other: m.get("train_weight_other"),
        vnet_flagged: None,
        vnet_other: None,
        vnet_slope: None,
        weight_fn: None,
        n_train: p.train.len(),
        n_flagged: p.flagged.iter().filter(|&&f| f).count(),
        n_meta: p.meta.len(),
        n_test: p.test.len(),
    };
    if let Some(v) = vnet {
        let rows = random_subset(
            p.train.len(),
            cfg.histogram_examples,
            &mut role_rng(seed, "mwn-hist"),
        );
        let (ls, ws) = final_losses_and_weights(task.model(), &v, p, &rows)?;
        let (mut wf, mut wo) = (Vec::new(), Vec::new());
        for (&row, &w) in rows.iter().zip(&ws) {
            if p.flagged[row] {
                wf.push(w);
            } else {
                wo.push(w);
            }
        }
        let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
        r.vnet_flagged = mean(&wf);
        r.vnet_other = mean(&wo);
        let max = quantile(&ls, 0.99).max((nc as f64).ln() * 2.0);
        let f = weighting_function(&v, max, 101)?;
        r.vnet_slope = Some(least_squares_slope(&f));
        r.weight_fn = Some(f);
        let mut samples = samples
            .lock()
            .map_err(|_| anyhow::anyhow!("a training thread panicked"))?;
        let e = samples
            .entry(format!("{}/{}/{}", part.as_str(), p.dataset, p.setting))
            .or_insert(WeightSample {
                flagged: Vec::new(),
                other: Vec::new(),
            });
        e.flagged.extend(wf);
        e.other.extend(wo);
    }
    tracing::info!(
        "{label} seed {seed}: test accuracy {:.2}% ({:.0} ms/step)",
        r.test_accuracy,
        r.step_ms
    );
    Ok(r)
}

/// Runs `parts` and writes `results.json` (merged with results of the other part already in the
/// output directory under the same configuration), `summary.json`/`summary.md` and plots.
pub fn run(exp: &Experiment<MwnConfig>, src: &DataSource, parts: &[Part]) -> Result<Summary> {
    let cfg = &exp.config;
    let mut data = Datasets {
        src,
        cache: BTreeMap::new(),
    };
    let keys = [
        (Part::Noise, config_key(cfg, &cfg.noise)?),
        (Part::LongTail, config_key(cfg, &cfg.long_tail)?),
    ];
    let key_of = |p: Part| keys.iter().find(|k| k.0 == p).map(|k| k.1.clone());
    let samples: Mutex<BTreeMap<String, WeightSample>> = Mutex::new(BTreeMap::new());
    let mut flag_names: BTreeMap<String, (&'static str, &'static str)> = BTreeMap::new();
    // Every split is prepared first (sequentially: the dataset cache is shared), then the runs
    // go out to `--jobs` threads; each owns its seeded generators, so results do not depend on
    // the schedule.
    let mut preps: Vec<(Part, String, Prepared, u64)> = Vec::new();
    if parts.contains(&Part::Noise) {
        let key = key_of(Part::Noise).unwrap_or_default();
        for s in &cfg.noise.settings {
            for &seed in exp.common.seeds() {
                let p = prepare_noise(&mut data, &cfg.noise, s, seed)?;
                flag_names.insert(
                    format!("noise/{}/{}", p.dataset, p.setting),
                    (p.flag_name, p.other_name),
                );
                preps.push((Part::Noise, key.clone(), p, seed));
            }
        }
    }
    if parts.contains(&Part::LongTail) {
        let key = key_of(Part::LongTail).unwrap_or_default();
        for s in &cfg.long_tail.settings {
            for &seed in exp.common.seeds() {
                let p = prepare_long_tail(&mut data, &cfg.long_tail, s, seed)?;
                flag_names.insert(
                    format!("long_tail/{}/{}", p.dataset, p.setting),
                    (p.flag_name, p.other_name),
                );
                preps.push((Part::LongTail, key.clone(), p, seed));
            }
        }
    }
    let part_cfg = |part: Part| match part {
        Part::Noise => (&cfg.noise.opt, cfg.noise.augment, &cfg.noise.methods),
        Part::LongTail => (
            &cfg.long_tail.opt,
            cfg.long_tail.augment,
            &cfg.long_tail.methods,
        ),
    };
    // In the report's order: part, setting, seed (the preparation order), then the methods'.
    let jobs: Vec<(usize, Method)> = preps
        .iter()
        .enumerate()
        .flat_map(|(k, (part, ..))| part_cfg(*part).2.iter().map(move |&m| (k, m)))
        .collect();
    // Meta-learned methods (the longest runs) go out first, so that runs side by side end together.
    let long = |j: usize| matches!(jobs[j].1, Method::Mwn | Method::L2rw);
    let mut results = run_indexed_first(cfg.jobs.max(1), jobs.len(), long, |j| {
        let (k, method) = jobs[j];
        let (part, key, p, seed) = &preps[k];
        let (opt, augment, _) = part_cfg(*part);
        train_one(exp, *part, opt, augment, key, p, method, *seed, &samples)
    })?;
    let samples = samples
        .into_inner()
        .map_err(|_| anyhow::anyhow!("a training thread panicked"))?;
    // Keep earlier results of the parts not run now, if they came from this configuration.
    let path = exp.results.path("results.json");
    if path.is_file() {
        let old: Vec<RunResult> = serde_json::from_slice(&std::fs::read(&path)?)
            .with_context(|| format!("reading {}", path.display()))?;
        let seeds = exp.common.seeds();
        let kept: Vec<RunResult> = old
            .into_iter()
            .filter(|r| {
                !parts.contains(&r.part)
                    && key_of(r.part).as_deref() == Some(r.config_key.as_str())
                    && seeds.contains(&r.seed)
            })
            .collect();
        if !kept.is_empty() {
            tracing::info!(
                "keeping {} earlier results of the other part from {}",
                kept.len(),
                path.display()
            );
        }
        results.splice(0..0, kept);
    }
    exp.results.write_json("results.json", &results)?;
    for (k, s) in &samples {
        let (fname, oname) = flag_names.get(k).copied().unwrap_or(("flagged", "other"));
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
    summarise(exp, &results)
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

impl crate::results::SeededRun for RunResult {
    fn seed(&self) -> u64 {
        self.seed
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

fn summarise(exp: &Experiment<MwnConfig>, rs: &[RunResult]) -> Result<Summary> {
    let cfg = &exp.config;
    let seeds = exp.common.seeds().to_vec();
    let mut s = Summary::new(
        exp,
        PAPER,
        "Test accuracy (%) by method: noisy labels (Tables 2–3) and long-tailed CIFAR (Table 1)",
    )?;
    let mut metrics: BTreeMap<String, SeedStats> = BTreeMap::new();
    // Settings in first-seen order.
    let mut settings: Vec<(Part, String, String)> = Vec::new();
    for r in rs {
        let k = (r.part, r.dataset.clone(), r.setting.clone());
        if !settings.contains(&k) {
            settings.push(k);
        }
    }
    let mut claims = Vec::new();
    for (part, ds, set) in &settings {
        let net = net_of(cfg, *part, ds, set);
        let methods = match part {
            Part::Noise => &cfg.noise.methods,
            Part::LongTail => &cfg.long_tail.methods,
        };
        let here = |r: &RunResult| r.part == *part && &r.dataset == ds && &r.setting == set;
        let title = match part {
            Part::Noise => format!("{ds} {set}"),
            Part::LongTail => format!("{ds}-LT {set}"),
        };
        for &m in methods {
            let v = per_seed(
                &seeds,
                rs,
                |r| here(r) && r.method == m,
                |r| Some(r.test_accuracy),
            );
            if v.iter().all(|x| x.is_nan()) {
                continue;
            }
            metrics.insert(
                format!("{}/{ds}/{set}/{m}/test_accuracy_pct", part.as_str()),
                SeedStats::new(v.clone()),
            );
            let mut row = Row::new(format!("{title}, {net}: {m}"), "% test accuracy", v)
                .higher_is_better()
                .decimals(2);
            if let Some(&(_, _, _, _, val, src)) = PAPER_ROWS
                .iter()
                .find(|p| p.0 == *part && p.1 == ds && p.2 == set && p.3 == m)
            {
                row = row.paper(
                    val,
                    format!("{src} (as quoted in the task; not confirmed against the paper here)"),
                );
            }
            s.row(row);
        }
        let ce = per_seed(
            &seeds,
            rs,
            |r| here(r) && r.method == Method::Ce,
            |r| Some(r.test_accuracy),
        );
        let mwn = per_seed(
            &seeds,
            rs,
            |r| here(r) && r.method == Method::Mwn,
            |r| Some(r.test_accuracy),
        );
        if !ce.iter().any(|x| x.is_nan()) && !mwn.iter().any(|x| x.is_nan()) {
            let d: Vec<f64> = mwn.iter().zip(&ce).map(|(a, b)| a - b).collect();
            let st = SeedStats::new(d.clone());
            claims.push(format!(
                "{title}: MWN − CE = {:+.2} ± {:.2} points ({} of {} seeds positive): {}",
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
            s.row(
                Row::new(
                    format!("{title}, {net}: MWN − CE (paired by seed)"),
                    "points",
                    d,
                )
                .higher_is_better()
                .decimals(2),
            );
        }
        if rs.iter().any(|r| here(r) && r.method == Method::Mwn) {
            let mwn_r = |r: &RunResult| here(r) && r.method == Method::Mwn;
            let slope = per_seed(&seeds, rs, mwn_r, |r| r.vnet_slope);
            let vf = per_seed(&seeds, rs, mwn_r, |r| r.vnet_flagged);
            let vo = per_seed(&seeds, rs, mwn_r, |r| r.vnet_other);
            let (fl, ot) = match part {
                Part::Noise => ("corrupted", "clean"),
                Part::LongTail => ("tail-class", "head-class"),
            };
            // Arrows mark the direction the paper predicts: under noise w(ℓ) falls and corrupted
            // examples get less weight; under imbalance it rises and the tail gets more.
            let dir = |r: Row, up: bool| if up { r.higher_is_better() } else { r };
            let noise = *part == Part::Noise;
            s.row(dir(
                Row::new(
                    format!("{title}: MWN slope dV/dℓ of the learned w(ℓ), least squares over the plotted range"),
                    "weight per nat",
                    slope.clone(),
                )
                .decimals(4),
                !noise,
            ));
            s.row(dir(
                Row::new(
                    format!("{title}: MWN mean V(ℓ), {fl} examples"),
                    "weight",
                    vf.clone(),
                )
                .decimals(4),
                !noise,
            ));
            s.row(dir(
                Row::new(
                    format!("{title}: MWN mean V(ℓ), {ot} examples"),
                    "weight",
                    vo.clone(),
                )
                .decimals(4),
                noise,
            ));
            let st = SeedStats::new(slope.clone());
            let want_falling = *part == Part::Noise;
            let ok = slope
                .iter()
                .all(|&x| if want_falling { x < 0.0 } else { x > 0.0 });
            claims.push(format!(
                "{title}: learned w(ℓ) {} with the loss (least-squares slope over the plotted range {:+.4} ± {:.4} per nat; paper: {}): {}",
                if st.mean < 0.0 { "falls" } else { "rises" },
                st.mean,
                st.std,
                if want_falling { "falling under noise" } else { "rising under imbalance" },
                if ok { "the paper's shape, on every seed" } else { "NOT the paper's shape on every seed" }
            ));
            metrics.insert(format!("{}/{ds}/{set}/mwn/vnet_slope", part.as_str()), st);
            metrics.insert(
                format!("{}/{ds}/{set}/mwn/vnet_mean_{fl}", part.as_str()),
                SeedStats::new(vf),
            );
            metrics.insert(
                format!("{}/{ds}/{set}/mwn/vnet_mean_{ot}", part.as_str()),
                SeedStats::new(vo),
            );
            // The learned functions, one line per seed.
            let series: Vec<Series> = rs
                .iter()
                .filter(|r| mwn_r(r))
                .filter_map(|r| {
                    r.weight_fn
                        .clone()
                        .map(|f| Series::new(format!("seed {}", r.seed), f))
                })
                .collect();
            if !series.is_empty() {
                let file = format!(
                    "weight_fn_{}.svg",
                    sanitize(&format!("{}/{ds}/{set}", part.as_str()))
                );
                plot::line_chart(
                    &exp.results.path(&file),
                    &Labels::new(
                        format!("MWN: learned weighting function at the end, {title}, {net}"),
                        "training loss ℓ",
                        "weight V(ℓ)",
                    ),
                    &series,
                )?;
                s.plot(file);
            }
            let hist = format!(
                "weights_hist_{}.svg",
                sanitize(&format!("{}/{ds}/{set}", part.as_str()))
            );
            if exp.results.path(&hist).is_file() {
                s.plot(hist);
            }
        }
        for &m in methods {
            let v = per_seed(
                &seeds,
                rs,
                |r| here(r) && r.method == m,
                |r| Some(r.step_ms),
            );
            if v.iter().all(|x| x.is_nan()) {
                continue;
            }
            s.row(Row::new(format!("{title}: time per step, {m}"), "ms", v).decimals(0));
        }
    }
    ensure!(!s.rows.is_empty(), "no result rows");
    for c in claims {
        s.note(c);
    }
    let m = &cfg.mwn;
    s.note(format!(
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
    ));
    for (name, p) in [
        ("noise", serde_json::to_value(&cfg.noise)?),
        ("long_tail", serde_json::to_value(&cfg.long_tail)?),
    ] {
        if rs.iter().any(|r| r.part.as_str() == name) {
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
            s.note(format!(
                "{name} part: {} steps, batch {}, meta batch {}, SGD lr {} (×{} at {}), momentum {}, weight decay {}, \
                 augmentation {}, training subset {}, test images {}.{warmup} {}",
                o["steps"], o["batch_size"], o["meta_batch"], o["lr"], o["gamma"], o["milestones"], o["momentum"],
                o["weight_decay"], p["augment"], p["train_limit"],
                rs.iter().find(|r| r.part.as_str() == name).map_or(0, |r| r.n_test),
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
    }
    s.note(format!(
        "Baselines: ce = mean cross-entropy; focal = focal loss, γ = {}; class_balanced = CE with Cui et al.'s weights, \
         β = {}; l2rw = the zoo's Learning to Reweight on the same split and seed. Each seed: the same data, meta set and \
         initial weights for every method. Paper numbers use the paper's networks and full schedules; where ours differ \
         (network, steps) the rows are not like for like. Nothing is selected on the test set: the final model is reported.",
        cfg.focal_gamma, cfg.cb_beta
    ));
    s.metrics = metrics;
    exp.results.write_summary(&s)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::least_squares_slope;

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
