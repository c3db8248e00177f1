//! The experiment: per setting, stage 1 (joint training with each sampler, on the shared runner),
//! cached features of the frozen backbone, stage 2 (joint, NCM, cRT, τ-norm, LWS), then the
//! summary, `results.json`, `grid.md` and the plots.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::{bail, ensure, Context, Result};
use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use zoo_data::corrupt::long_tail_indices;
use zoo_data::sampler::{
    ClassBalanced, InstanceBalanced, ProgressivelyBalanced, Sampler, Sequential, SquareRoot,
};
use zoo_data::split::balanced_meta_set;
use zoo_data::{load, Augment, DataSource, ImageDataset, Loader, Normalize, Split};
use zoo_models::metrics::Predictions;
use zoo_models::models::{ResNet, ResNetCifar, ResNetCifarConfig, ResNetConfig};
use zoo_models::optim::{LrSchedule, Sgd};
use zoo_models::{Classifier, Ctx};

use super::classifiers::{
    lws_logits, row_norms, train_crt, train_lws, HeadTraining, LinearHead, Ncm, NcmMetric,
};
use super::config::{DataSpec, DecoupleConfig, Net, Sampling, Schedule, Setting};
use crate::plot::{self, Labels, Series};
use crate::results::SeedStats;
use crate::runner::Runner;
use crate::stats::mean_std;
use crate::trainer::ClassifierTrainer;
use crate::Experiment;

/// The paper, as cited in the summary.
pub const PAPER: &str = "Kang, Xie, Rohrbach, Yan, Gordo, Feng & Kalantidis (2020), Decoupling \
                         Representation and Classifier for Long-Tailed Recognition, ICLR 2020, \
                         arXiv:1910.09217";

/// The classifiers compared on one representation, in table order.
pub const CLASSIFIERS: [&str; 6] = ["joint", "ncm_cos", "ncm_euclid", "crt", "tau_norm", "lws"];

/// Name of a classifier as the paper writes it.
pub fn classifier_label(c: &str) -> &str {
    match c {
        "joint" => "joint",
        "ncm_cos" => "NCM (cosine)",
        "ncm_euclid" => "NCM (Euclidean)",
        "crt" => "cRT",
        "tau_norm" => "τ-norm",
        "lws" => "LWS",
        other => other,
    }
}

/// A generator for one role of one seed: unrelated streams per role, and the same stream for
/// every sampler of a seed (same initial weights).
pub fn role_rng(seed: u64, role: &str) -> StdRng {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in role.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
    }
    StdRng::seed_from_u64(h ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// Accuracy of one classifier on the test set, overall and by class group.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Eval {
    /// Top-1 accuracy, %.
    pub accuracy: f64,
    /// Mean accuracy of classes with > 100 training images, % (`None`: no such class).
    pub many: Option<f64>,
    /// 20–100 training images.
    pub medium: Option<f64>,
    /// < 20 training images.
    pub few: Option<f64>,
    /// Mean accuracy of the larger half of the classes (by training images), %.
    pub head_half: f64,
    /// Mean accuracy of the smaller half, %.
    pub tail_half: f64,
    /// Accuracy per class, %.
    pub per_class: Vec<f64>,
    /// Top-1 accuracy on the validation split, %.
    pub val_accuracy: f64,
}

/// Overall, many/medium/few-shot and head/tail-half accuracy of `test` predictions, with
/// `train_counts` defining the groups (Liu et al. 2019; Kang et al. 2020).
pub fn evaluate(test: &Predictions, val: &Predictions, train_counts: &[usize]) -> Result<Eval> {
    let shots = test.shot_accuracy(train_counts)?;
    let per_class: Vec<f64> = test
        .per_class_accuracy()
        .into_iter()
        .map(|a| 100.0 * a.unwrap_or(f64::NAN))
        .collect();
    let mut order: Vec<usize> = (0..train_counts.len()).collect();
    order.sort_by_key(|&c| std::cmp::Reverse(train_counts[c]));
    let half = order.len().div_ceil(2);
    let mean_of = |cs: &[usize]| {
        let v: Vec<f64> = cs
            .iter()
            .map(|&c| per_class[c])
            .filter(|a| a.is_finite())
            .collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    };
    Ok(Eval {
        accuracy: 100.0 * test.accuracy(),
        many: shots.many.map(|a| 100.0 * a),
        medium: shots.medium.map(|a| 100.0 * a),
        few: shots.few.map(|a| 100.0 * a),
        head_half: mean_of(&order[..half]),
        tail_half: mean_of(&order[half..]),
        per_class,
        val_accuracy: 100.0 * val.accuracy(),
    })
}

/// One classifier on one representation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    /// Setting tag (`cifar10_lt_if100`).
    pub setting: String,
    /// Stage-1 sampler.
    pub sampler: Sampling,
    /// Seed.
    pub seed: u64,
    /// Classifier (`joint`, `ncm_cos`, `ncm_euclid`, `crt`, `tau_norm`, `lws`).
    pub classifier: String,
    /// Test accuracy.
    pub eval: Eval,
    /// τ chosen on the validation split (τ-norm only).
    pub tau: Option<f64>,
}

/// Diagnostics of one representation (per seed): classifier norms and the τ sweep.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Diagnostics {
    /// Setting tag.
    pub setting: String,
    /// Stage-1 sampler.
    pub sampler: Sampling,
    /// Seed.
    pub seed: u64,
    /// ‖w_i‖ per class of the joint, τ-normalised (chosen τ), cRT classifiers, and LWS's
    /// effective `f_i·‖w_i‖`.
    pub norms: BTreeMap<String, Vec<f64>>,
    /// LWS scales `f_i`.
    pub lws_scales: Vec<f64>,
    /// τ grid.
    pub tau_grid: Vec<f64>,
    /// Validation accuracy (%) at each τ (the choice).
    pub tau_val_accuracy: Vec<f64>,
    /// Test accuracy (%) at each τ (reported only; never used to choose).
    pub tau_test_accuracy: Vec<f64>,
    /// Stage-1 wall time, seconds.
    pub stage1_s: f64,
    /// Stage-1 mean epoch time, seconds.
    pub epoch_s: f64,
}

/// The data of one setting.
pub struct SettingData {
    /// Long-tailed training set.
    pub train: ImageDataset,
    /// Balanced validation split (τ is chosen here).
    pub val: ImageDataset,
    /// Balanced test set.
    pub test: ImageDataset,
    /// Per-channel normalisation.
    pub norm: Normalize,
}

/// ImageNet statistics, for the list datasets.
fn imagenet_norm() -> Result<Normalize> {
    Normalize::new(vec![0.485, 0.456, 0.406], vec![0.229, 0.224, 0.225])
}

/// Loads a setting's data. CIFAR-LT: the balanced validation split (`val_per_class` per class)
/// is drawn from the full training set first, then the long tail from the rest, so the head
/// class keeps `5000 − val_per_class` images and no class loses tail images to validation.
pub fn load_setting(setting: &Setting, data_dir: Option<&std::path::Path>) -> Result<SettingData> {
    match &setting.data {
        DataSpec::CifarLt {
            dataset,
            imbalance_factor,
            data_dir: preset_dir,
        } => {
            let src = match data_dir.or(preset_dir.as_deref()) {
                Some(d) => {
                    if !d.is_dir() {
                        bail!(
                            "{dataset}: data directory {} does not exist (give --data-dir DIR \
                             holding the parquet files, e.g. ../shared/data/cifar10-jpeg)",
                            d.display()
                        );
                    }
                    DataSource::Dir(d.to_path_buf())
                }
                None => DataSource::Hub,
            };
            let all = load(dataset, Split::Train, &src)
                .with_context(|| format!("loading {dataset} (train)"))?;
            let test = load(dataset, Split::Test, &src)
                .with_context(|| format!("loading {dataset} (test)"))?;
            let mut rng = role_rng(setting.data_seed, "cifar-lt-data");
            let (val_idx, rest_idx) =
                balanced_meta_set(&all.labels, setting.val_per_class, &mut rng)?;
            let mut rest = all.subset(&rest_idx);
            if let Some(cap) = setting.max_per_class {
                let (keep, _) = balanced_meta_set(&rest.labels, cap, &mut rng)
                    .context("max_per_class exceeds a class's images")?;
                rest = rest.subset(&keep);
            }
            let lt =
                long_tail_indices(&rest.labels, rest.num_classes, *imbalance_factor, &mut rng)?;
            let test = match setting.test_limit {
                Some(k) => test.subset(&(0..k.min(test.len())).collect::<Vec<_>>()),
                None => test,
            };
            Ok(SettingData {
                train: rest.subset(&lt),
                val: all.subset(&val_idx),
                test,
                norm: Normalize::for_dataset(dataset)?,
            })
        }
        DataSpec::ListLt {
            name,
            image_root,
            list_dir,
            resize,
            crop,
        } => {
            let nc = zoo_data::lt_list::num_classes(name)?;
            let ld = |split: &str| {
                let list = zoo_data::lt_list::list_path(list_dir, name, split);
                zoo_data::lt_list::load_list(name, image_root, &list, nc, *resize, *crop)
                    .with_context(|| {
                        format!(
                            "{name} is not available on this machine or is incomplete: expected \
                             the published split list {} and the images under {}",
                            list.display(),
                            image_root.display()
                        )
                    })
            };
            let train = ld("train")?;
            let val = ld("val")?;
            let mut test = ld("test")?;
            if let Some(k) = setting.test_limit {
                test = test.subset(&(0..k.min(test.len())).collect::<Vec<_>>());
            }
            Ok(SettingData {
                train,
                val,
                test,
                norm: imagenet_norm()?,
            })
        }
    }
}

/// Builds the backbone with its linear head.
pub fn build_net(
    net: &Net,
    num_classes: usize,
    rng: &mut StdRng,
    dev: &Device,
) -> Result<Box<dyn Classifier>> {
    Ok(match *net {
        Net::ResNetCifar { depth } => Box::new(ResNetCifar::new(
            ResNetCifarConfig::new(depth, num_classes),
            rng,
            dev,
        )?),
        Net::ResNet10 => Box::new(ResNet::new(ResNetConfig::resnet10(num_classes), rng, dev)?),
        Net::ResNeXt50 => Box::new(ResNet::new(
            ResNetConfig::resnext50_32x4d(num_classes),
            rng,
            dev,
        )?),
    })
}

/// The stage-1 sampler over `labels`.
pub fn make_sampler(
    s: Sampling,
    labels: &[u32],
    num_classes: usize,
    epochs: usize,
) -> Result<Box<dyn Sampler>> {
    Ok(match s {
        Sampling::Instance => Box::new(InstanceBalanced { n: labels.len() }),
        Sampling::ClassBalanced => Box::new(ClassBalanced::new(labels, num_classes)?),
        Sampling::SquareRoot => Box::new(SquareRoot::new(labels, num_classes)?),
        Sampling::Progressive => Box::new(ProgressivelyBalanced::new(labels, num_classes, epochs)?),
    })
}

/// Penultimate features `(n, d)` of every image of `ds` (eval mode, no augmentation).
pub fn extract_features(
    model: &dyn Classifier,
    ds: &ImageDataset,
    norm: &Normalize,
    batch_size: usize,
    dev: &Device,
) -> Result<Tensor> {
    let mut loader = Loader::new(
        ds,
        batch_size,
        norm.clone(),
        Augment::None,
        Box::new(Sequential { n: ds.len() }),
        0,
        dev,
    )?;
    let params = model.store().params();
    let mut out = Vec::new();
    for b in loader.epoch(0) {
        let b = b?;
        out.push(
            model
                .features(&params, &b.images, &mut Ctx::eval())?
                .detach(),
        );
    }
    ensure!(!out.is_empty(), "no images to extract features from");
    Ok(Tensor::cat(&out, 0)?)
}

fn lr_schedule(s: &super::config::Stage1) -> LrSchedule {
    let then = match &s.schedule {
        Schedule::Cosine => LrSchedule::Cosine {
            base: s.lr,
            total: s.epochs,
            min: 0.0,
        },
        Schedule::MultiStep { milestones, gamma } => LrSchedule::MultiStep {
            base: s.lr,
            milestones: milestones.clone(),
            gamma: *gamma,
        },
    };
    if s.warmup_epochs > 0 {
        LrSchedule::Warmup {
            steps: s.warmup_epochs,
            then: Box::new(then),
        }
    } else {
        then
    }
}

fn predictions(logits: &Tensor, labels: &[u32]) -> Result<Predictions> {
    let y = Tensor::from_vec(labels.to_vec(), labels.len(), logits.device())?;
    Ok(Predictions::from_logits(logits, &y)?)
}

/// Cached features of a frozen representation.
struct Features {
    train: Tensor,
    val: Tensor,
    test: Tensor,
}

/// Stage 2 on one representation: every classifier, evaluated; plus the diagnostics.
#[allow(clippy::too_many_arguments)]
fn stage2(
    setting: &Setting,
    data: &SettingData,
    f: &Features,
    joint: &LinearHead,
    sampler: Sampling,
    seed: u64,
    out: &mut Vec<RunResult>,
) -> Result<Diagnostics> {
    let nc = data.train.num_classes;
    let counts = data.train.class_counts();
    let tag = setting.data.tag();
    let (ytr, yva, yte) = (&data.train.labels, &data.val.labels, &data.test.labels);
    let mut push = |name: &str, val_logits: &Tensor, test_logits: &Tensor, tau: Option<f64>| {
        let e = evaluate(
            &predictions(test_logits, yte)?,
            &predictions(val_logits, yva)?,
            &counts,
        )?;
        tracing::info!(
            "{tag} {sampler} seed {seed} {:<16} test acc {:.2}% (val {:.2}%)",
            classifier_label(name),
            e.accuracy,
            e.val_accuracy
        );
        out.push(RunResult {
            setting: tag.clone(),
            sampler,
            seed,
            classifier: name.to_string(),
            eval: e,
            tau,
        });
        anyhow::Ok(())
    };
    push(
        "joint",
        &joint.logits(&f.val)?,
        &joint.logits(&f.test)?,
        None,
    )?;
    let ncm = Ncm::fit(&f.train, ytr, nc)?;
    for (name, m) in [
        ("ncm_cos", NcmMetric::Cosine),
        ("ncm_euclid", NcmMetric::Euclidean),
    ] {
        push(
            name,
            &ncm.logits(&f.val, m)?,
            &ncm.logits(&f.test, m)?,
            None,
        )?;
    }
    let s2 = &setting.stage2;
    let ht = HeadTraining {
        epochs: s2.epochs,
        batch_size: s2.batch_size,
        lr: s2.lr,
        momentum: s2.momentum,
        weight_decay: s2.weight_decay,
    };
    let crt = train_crt(&f.train, ytr, nc, &ht, &mut role_rng(seed, "crt"))?;
    push("crt", &crt.logits(&f.val)?, &crt.logits(&f.test)?, None)?;
    // τ on the validation split only: best accuracy, ties broken by lower NLL, then smaller τ.
    let (mut val_acc, mut test_acc) = (Vec::new(), Vec::new());
    let mut best: Option<(f64, f64, f64)> = None;
    for &tau in &s2.tau_grid {
        let h = joint.tau_normalized(tau)?;
        let pv = predictions(&h.logits(&f.val)?, yva)?;
        let pt = predictions(&h.logits(&f.test)?, yte)?;
        let (a, nll) = (pv.accuracy(), pv.nll());
        val_acc.push(100.0 * a);
        test_acc.push(100.0 * pt.accuracy());
        let better = match best {
            None => true,
            Some((ba, bn, _)) => a > ba || (a == ba && nll < bn),
        };
        if better {
            best = Some((a, nll, tau));
        }
    }
    let tau = best.map(|b| b.2).context("empty τ grid")?;
    let tn = joint.tau_normalized(tau)?;
    push(
        "tau_norm",
        &tn.logits(&f.val)?,
        &tn.logits(&f.test)?,
        Some(tau),
    )?;
    let scales = train_lws(&f.train, ytr, joint, &ht, &mut role_rng(seed, "lws"))?;
    push(
        "lws",
        &lws_logits(joint, &scales, &f.val)?,
        &lws_logits(joint, &scales, &f.test)?,
        None,
    )?;
    let scales_v = scales.to_dtype(candle_core::DType::F64)?.to_vec1::<f64>()?;
    let jn = row_norms(&joint.weight)?;
    let mut norms = BTreeMap::new();
    norms.insert(
        "lws".to_string(),
        jn.iter().zip(&scales_v).map(|(n, s)| n * s.abs()).collect(),
    );
    norms.insert("joint".to_string(), jn);
    norms.insert("tau_norm".to_string(), row_norms(&tn.weight)?);
    norms.insert("crt".to_string(), row_norms(&crt.weight)?);
    Ok(Diagnostics {
        setting: tag,
        sampler,
        seed,
        norms,
        lws_scales: scales_v,
        tau_grid: s2.tau_grid.clone(),
        tau_val_accuracy: val_acc,
        tau_test_accuracy: test_acc,
        stage1_s: 0.0,
        epoch_s: 0.0,
    })
}

/// Seeds that train sampler number `k` (the first sampler: every seed).
pub fn seeds_for(setting: &Setting, seeds: &[u64], k: usize) -> Vec<u64> {
    match setting.stage1.other_sampler_seeds {
        Some(m) if k > 0 => seeds.iter().copied().take(m).collect(),
        _ => seeds.to_vec(),
    }
}

/// Everything one setting produced.
pub struct SettingOutcome {
    /// Every (sampler, seed, classifier).
    pub results: Vec<RunResult>,
    /// Every (sampler, seed).
    pub diagnostics: Vec<Diagnostics>,
    /// Training images per class.
    pub train_counts: Vec<usize>,
    /// Validation and test sizes.
    pub n_val: usize,
    /// Test images.
    pub n_test: usize,
}

/// Loads a setting's data and checks that every class has training images.
pub fn load_checked(exp: &Experiment<DecoupleConfig>, setting: &Setting) -> Result<SettingData> {
    let data = load_setting(setting, exp.common.data_dir.as_deref())?;
    let tag = setting.data.tag();
    let counts = data.train.class_counts();
    ensure!(
        counts.iter().all(|&c| c > 0),
        "{tag}: a class has no training image ({counts:?})"
    );
    tracing::info!(
        "{}: {} training images (per class {:?}), {} validation, {} test",
        setting.data.label(),
        data.train.len(),
        counts,
        data.val.len(),
        data.test.len()
    );
    Ok(data)
}

/// Where stage 1 leaves a representation's weights (stage 2 reads them from there, in the same
/// process or another): `seed_<s>/<setting>/<sampler>/model.safetensors`.
pub fn stage1_model_file(
    exp: &Experiment<DecoupleConfig>,
    setting: &Setting,
    sampler: Sampling,
    seed: u64,
) -> std::path::PathBuf {
    exp.results
        .root()
        .join(format!("seed_{seed}"))
        .join(setting.data.tag())
        .join(sampler.as_str())
        .join("model.safetensors")
}

/// What stage 1 of one (sampler, seed) reports (its weights are in [`stage1_model_file`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stage1Run {
    /// Training wall time, seconds.
    pub stage1_s: f64,
    /// Mean epoch time, seconds.
    pub epoch_s: f64,
}

/// Stage 1: joint training with `sampler` on the shared runner; saves the weights.
pub fn stage1(
    exp: &Experiment<DecoupleConfig>,
    setting: &Setting,
    data: &SettingData,
    sampler: Sampling,
    seed: u64,
) -> Result<Stage1Run> {
    let dev = &exp.device;
    let tag = setting.data.tag();
    let nc = data.train.num_classes;
    let s1 = &setting.stage1;
    let augment = if s1.augment {
        match setting.data {
            DataSpec::CifarLt { .. } => Augment::CifarCropFlip,
            // No RandomResizedCrop in zoo_data: flips and 4-px shifts instead (see notes).
            DataSpec::ListLt { .. } => Augment::CifarCropFlip,
        }
    } else {
        Augment::None
    };
    let model = build_net(&setting.net, nc, &mut role_rng(seed, "net"), dev)?;
    let train = Loader::new(
        &data.train,
        s1.batch_size,
        data.norm.clone(),
        augment,
        make_sampler(sampler, &data.train.labels, nc, s1.epochs)?,
        role_rng(seed, &format!("loader-{sampler}")).random::<u64>(),
        dev,
    )?;
    let val = Loader::new(
        &data.val,
        256,
        data.norm.clone(),
        Augment::None,
        Box::new(Sequential { n: data.val.len() }),
        0,
        dev,
    )?;
    let opt = Sgd::new(s1.momentum, false, s1.weight_decay)?;
    let mut task = ClassifierTrainer::new(model, Box::new(opt), lr_schedule(s1), train, val)?
        .eval_prefix("val_");
    let run = Runner::with_dir(&exp.results, &[seed], s1.epochs)
        .resume(exp.common.resume)
        .eval_every(s1.epochs)
        .label(format!("{tag}/{sampler}"))
        .run_seed(seed, &mut task)
        .with_context(|| format!("{tag}: stage 1 with {sampler} sampling, seed {seed}"))?;
    let file = stage1_model_file(exp, setting, sampler, seed);
    zoo_models::checkpoint::save_tensors(&file, &task.model.store().state_dict()?)?;
    Ok(Stage1Run {
        stage1_s: run.history.last().map_or(0.0, |r| r.time_s),
        epoch_s: run.history.iter().map(|r| r.epoch_s).sum::<f64>()
            / run.history.len().max(1) as f64,
    })
}

/// What stage 2 of one representation produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stage2Run {
    /// Every classifier on this representation.
    pub results: Vec<RunResult>,
    /// Norms, τ sweep, stage-1 times.
    pub diagnostics: Diagnostics,
    /// Training images per class of the setting.
    pub train_counts: Vec<usize>,
    /// Validation images.
    pub n_val: usize,
    /// Test images.
    pub n_test: usize,
}

/// Stage 2 on the representation stage 1 saved: cached features, then every classifier.
pub fn stage2_run(
    exp: &Experiment<DecoupleConfig>,
    setting: &Setting,
    data: &SettingData,
    sampler: Sampling,
    seed: u64,
    s1: &Stage1Run,
) -> Result<Stage2Run> {
    let dev = &exp.device;
    let nc = data.train.num_classes;
    let model = build_net(&setting.net, nc, &mut role_rng(seed, "net"), dev)?;
    let file = stage1_model_file(exp, setting, sampler, seed);
    let sd = zoo_models::checkpoint::load_tensors(&file, dev)
        .with_context(|| format!("the stage-1 representation {}", file.display()))?;
    model.store().load_state_dict(&sd)?;
    let model = model.as_ref();
    let bs = 256;
    let f = Features {
        train: extract_features(model, &data.train, &data.norm, bs, dev)?,
        val: extract_features(model, &data.val, &data.norm, bs, dev)?,
        test: extract_features(model, &data.test, &data.norm, bs, dev)?,
    };
    let p = model.store().params();
    let (w, b) = model.head();
    let joint = LinearHead {
        weight: p.get(w)?.detach(),
        bias: match b {
            Some(b) => Some(p.get(b)?.detach()),
            None => None,
        },
    };
    let mut results = Vec::new();
    let mut d = stage2(setting, data, &f, &joint, sampler, seed, &mut results)?;
    d.stage1_s = s1.stage1_s;
    d.epoch_s = s1.epoch_s;
    Ok(Stage2Run {
        results,
        diagnostics: d,
        train_counts: data.train.class_counts(),
        n_val: data.val.len(),
        n_test: data.test.len(),
    })
}

/// Mean and sample std over seeds of `f` over the results matching (setting, sampler, classifier).
pub fn per_seed(
    rs: &[RunResult],
    sampler: Sampling,
    classifier: &str,
    f: impl Fn(&Eval) -> Option<f64>,
) -> Vec<f64> {
    rs.iter()
        .filter(|r| r.sampler == sampler && r.classifier == classifier)
        .filter_map(|r| f(&r.eval))
        .collect()
}

/// Mean over seeds of per-class accuracies.
pub fn mean_per_class(rs: &[RunResult], sampler: Sampling, classifier: &str) -> Vec<f64> {
    let rows: Vec<&Vec<f64>> = rs
        .iter()
        .filter(|r| r.sampler == sampler && r.classifier == classifier)
        .map(|r| &r.eval.per_class)
        .collect();
    let n = rows.first().map_or(0, |r| r.len());
    (0..n)
        .map(|c| mean_std(&rows.iter().map(|r| r[c]).collect::<Vec<_>>()).0)
        .collect()
}

/// Markdown table of every (sampler, classifier): overall and tail accuracy, mean ± std.
pub fn grid_markdown(label: &str, o: &SettingOutcome, samplers: &[Sampling]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "### {label}: test accuracy (%) by stage-1 sampler and classifier (mean ± std over seeds)\n"
    );
    s.push_str("| Sampler (seeds) |");
    for c in CLASSIFIERS {
        let _ = write!(s, " {} |", classifier_label(c));
    }
    s.push_str("\n|---|");
    s.push_str(&"---:|".repeat(CLASSIFIERS.len()));
    s.push('\n');
    for &sm in samplers {
        let n = per_seed(&o.results, sm, "joint", |e| Some(e.accuracy)).len();
        let _ = write!(s, "| {} ({n}) |", sm.label());
        for c in CLASSIFIERS {
            let v = per_seed(&o.results, sm, c, |e| Some(e.accuracy));
            let st = SeedStats::new(v);
            let t = per_seed(&o.results, sm, c, |e| Some(e.tail_half));
            let tt = SeedStats::new(t);
            let _ = write!(s, " {:.2} ± {:.2} (tail {:.1}) |", st.mean, st.std, tt.mean);
        }
        s.push('\n');
    }
    s.push_str("\n\"tail\": mean accuracy of the smaller half of the classes.\n");
    s
}

/// Plots of one setting (means over the base sampler's seeds). Returns the file names.
pub fn plots(
    exp: &Experiment<DecoupleConfig>,
    setting: &Setting,
    o: &SettingOutcome,
) -> Result<Vec<String>> {
    let tag = setting.data.tag();
    let label = setting.data.label();
    let base = setting.stage1.samplers[0];
    let mut files = Vec::new();
    let ds: Vec<&Diagnostics> = o.diagnostics.iter().filter(|d| d.sampler == base).collect();
    ensure!(!ds.is_empty(), "no diagnostics for {tag}");
    let n_seeds = ds.len();
    // Classes from the largest to the smallest, as in the paper's Fig. 2.
    let mut order: Vec<usize> = (0..o.train_counts.len()).collect();
    order.sort_by_key(|&c| std::cmp::Reverse(o.train_counts[c]));
    let mean_norms = |key: &str| -> Vec<(f64, f64)> {
        order
            .iter()
            .enumerate()
            .map(|(rank, &c)| {
                let v: Vec<f64> = ds.iter().map(|d| d.norms[key][c]).collect();
                (rank as f64, mean_std(&v).0)
            })
            .collect()
    };
    let taus: Vec<f64> = o
        .results
        .iter()
        .filter(|r| r.sampler == base && r.classifier == "tau_norm")
        .filter_map(|r| r.tau)
        .collect();
    let f = format!("weight_norms_{tag}.svg");
    plot::line_chart(
        &exp.results.path(&f),
        &Labels::new(
            format!(
                "{label}, {}: classifier weight norm per class (mean of {n_seeds} seed(s))",
                setting.net
            ),
            "class index, sorted by training images (largest first)",
            "‖w_i‖",
        ),
        &[
            Series::new("joint", mean_norms("joint")),
            Series::new(
                format!("τ-norm (τ = {:.2}, mean)", mean_std(&taus).0),
                mean_norms("tau_norm"),
            ),
            Series::new("cRT", mean_norms("crt")),
            Series::new("LWS (f_i·‖w_i‖)", mean_norms("lws")),
        ],
    )?;
    files.push(f);
    // Per-class accuracy against class size.
    let f = format!("per_class_accuracy_{tag}.svg");
    let mut series = Vec::new();
    for c in ["joint", "ncm_cos", "crt", "tau_norm", "lws"] {
        let acc = mean_per_class(&o.results, base, c);
        let mut pts: Vec<(f64, f64)> = o
            .train_counts
            .iter()
            .zip(&acc)
            .map(|(&n, &a)| ((n as f64).log10(), a))
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        series.push(Series::new(classifier_label(c), pts));
    }
    plot::line_chart(
        &exp.results.path(&f),
        &Labels::new(
            format!("{label}: per-class test accuracy against class size ({n_seeds} seed(s))"),
            "log10(training images of the class)",
            "test accuracy (%)",
        ),
        &series,
    )?;
    files.push(f);
    // τ sweep.
    let f = format!("tau_sweep_{tag}.svg");
    let grid = &ds[0].tau_grid;
    let sweep = |get: &dyn Fn(&Diagnostics) -> &Vec<f64>| -> (Vec<(f64, f64)>, Vec<f64>) {
        grid.iter()
            .enumerate()
            .map(|(i, &t)| {
                let v: Vec<f64> = ds.iter().map(|d| get(d)[i]).collect();
                let (m, s) = mean_std(&v);
                ((t, m), s)
            })
            .unzip()
    };
    let (vp, ve) = sweep(&|d| &d.tau_val_accuracy);
    let (tp, te) = sweep(&|d| &d.tau_test_accuracy);
    plot::line_chart(
        &exp.results.path(&f),
        &Labels::new(
            format!("{label}: τ-norm sweep (τ chosen on validation; test shown only, never used)"),
            "τ",
            "accuracy (%)",
        ),
        &[
            Series::new(format!("validation ({} images)", o.n_val), vp).with_errors(ve),
            Series::new("test (not used for the choice)", tp).with_errors(te),
        ],
    )?;
    files.push(f);
    // Samplers × classifiers (the paper's Fig. 1).
    let samplers: Vec<Sampling> = setting.stage1.samplers.clone();
    if samplers.len() > 1 {
        let f = format!("samplers_{tag}.svg");
        let cats: Vec<String> = samplers.iter().map(|s| s.label().to_string()).collect();
        let vals: Vec<(String, Vec<f64>)> = CLASSIFIERS
            .iter()
            .map(|&c| {
                (
                    classifier_label(c).to_string(),
                    samplers
                        .iter()
                        .map(|&s| mean_std(&per_seed(&o.results, s, c, |e| Some(e.accuracy))).0)
                        .collect(),
                )
            })
            .collect();
        let series: Vec<(&str, &[f64])> = vals
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_slice()))
            .collect();
        plot::bar_chart(
            &exp.results.path(&f),
            &Labels::new(
                format!("{label}: test accuracy by stage-1 sampler and classifier"),
                "stage-1 sampler",
                "test accuracy (%)",
            ),
            &cats,
            &series,
        )?;
        files.push(f);
    }
    Ok(files)
}
