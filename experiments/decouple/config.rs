//! Presets of the decoupling experiments (Kang et al. 2020). Every number the binary uses is here
//! and is written to `config.json` beside the results.

use std::path::PathBuf;

use anyhow::{bail, ensure, Result};
use serde::{Deserialize, Serialize};

use crate::cli::{ExperimentConfig, Preset};

/// Class-aware sampling of the joint (stage-1) training: class `j` is drawn with probability
/// `p_j ∝ n_j^q`, then one of its images uniformly (Kang et al. 2020, §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Sampling {
    /// `q = 1`: every image once per epoch (plain shuffling).
    Instance,
    /// `q = 0`: every class equally likely.
    ClassBalanced,
    /// `q = ½`.
    SquareRoot,
    /// `p_j(t) = (1 − t/T)·p_IB + (t/T)·p_CB` at epoch `t` of `T`: instance-balanced at the first
    /// epoch, moving linearly towards class-balanced.
    Progressive,
}

impl Sampling {
    /// Name in tables, logs and directory names.
    pub fn as_str(self) -> &'static str {
        match self {
            Sampling::Instance => "instance",
            Sampling::ClassBalanced => "class_balanced",
            Sampling::SquareRoot => "square_root",
            Sampling::Progressive => "progressive",
        }
    }

    /// Name as the paper writes it.
    pub fn label(self) -> &'static str {
        match self {
            Sampling::Instance => "instance-balanced",
            Sampling::ClassBalanced => "class-balanced",
            Sampling::SquareRoot => "square-root",
            Sampling::Progressive => "progressively balanced",
        }
    }
}

impl std::fmt::Display for Sampling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The backbone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Net {
    /// He et al.'s CIFAR ResNet, depth 6n+2 (ResNet-32 in the CIFAR-LT literature).
    ResNetCifar {
        /// Depth (8, 20, 32, …).
        depth: usize,
    },
    /// Kang et al.'s ResNet-10 (ImageNet stem).
    ResNet10,
    /// ResNeXt-50 32×4d (ImageNet stem).
    ResNeXt50,
}

impl std::fmt::Display for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Net::ResNetCifar { depth } => write!(f, "ResNet-{depth}"),
            Net::ResNet10 => f.write_str("ResNet-10"),
            Net::ResNeXt50 => f.write_str("ResNeXt-50"),
        }
    }
}

/// Where the long-tailed data come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DataSpec {
    /// CIFAR-10-LT / CIFAR-100-LT (Cao et al. 2019): class `c` keeps `⌊n_max·IF^(−c/(C−1))⌋`
    /// training images; the test set stays balanced.
    CifarLt {
        /// `cifar10` or `cifar100`.
        dataset: String,
        /// Imbalance factor `n_max / n_min` (10, 50, 100, 200).
        imbalance_factor: f64,
        /// Directory in the hub's parquet layout (`--data-dir` sets it, so that `config.json`
        /// records the copy the run read); `None`: the hub cache.
        data_dir: Option<PathBuf>,
    },
    /// ImageNet-LT or Places-LT (Liu et al. 2019) from the published split lists
    /// (`<name>_train.txt`, `_val.txt`, `_test.txt`: `relative/path.jpg label` per line) and the
    /// original images under `image_root`.
    ListLt {
        /// `ImageNet_LT` or `Places_LT` (the lists' file-name prefix).
        name: String,
        /// Root the list paths are relative to.
        image_root: PathBuf,
        /// Directory holding the three list files.
        list_dir: PathBuf,
        /// Shorter side after resizing, before the centre crop.
        resize: usize,
        /// Side of the square centre crop kept in memory.
        crop: usize,
    },
}

impl DataSpec {
    /// Short name for directories and tables ("cifar10_lt_if100", "ImageNet_LT").
    pub fn tag(&self) -> String {
        match self {
            DataSpec::CifarLt {
                dataset,
                imbalance_factor,
                ..
            } => format!("{dataset}_lt_if{imbalance_factor}"),
            DataSpec::ListLt { name, .. } => name.clone(),
        }
    }

    /// Name as in papers ("CIFAR-10-LT (IF 100)").
    pub fn label(&self) -> String {
        match self {
            DataSpec::CifarLt {
                dataset,
                imbalance_factor,
                ..
            } => {
                let d = match dataset.as_str() {
                    "cifar10" => "CIFAR-10-LT",
                    "cifar100" => "CIFAR-100-LT",
                    other => other,
                };
                format!("{d} (IF {imbalance_factor})")
            }
            DataSpec::ListLt { name, .. } => name.replace('_', "-"),
        }
    }
}

/// Learning-rate schedule of stage 1 (indexed by epoch).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Schedule {
    /// Half cosine from `lr` to 0 over the epochs (Kang et al. on ImageNet-LT).
    Cosine,
    /// `lr · gamma^k` after `k` milestones (the CIFAR-LT recipe: ×0.01 at 160, ×0.0001 at 180).
    MultiStep {
        /// Epochs at which the rate is multiplied by `gamma`.
        milestones: Vec<usize>,
        /// Decay factor.
        gamma: f64,
    },
}

/// Stage 1: joint training of representation and classifier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stage1 {
    /// Samplers compared (each trains its own model); the first is the representation the
    /// stage-2 rows of the main table are built on (the paper: instance-balanced).
    pub samplers: Vec<Sampling>,
    /// Seeds for the samplers after the first (`None`: every seed). CPU presets train the main
    /// representation with every seed and the sampler comparison with fewer.
    pub other_sampler_seeds: Option<usize>,
    /// Epochs.
    pub epochs: usize,
    /// Mini-batch size.
    pub batch_size: usize,
    /// Initial learning rate.
    pub lr: f64,
    /// Linear warm-up epochs (0: none).
    pub warmup_epochs: usize,
    /// Schedule after warm-up.
    pub schedule: Schedule,
    /// SGD momentum.
    pub momentum: f64,
    /// Coupled L2 weight decay.
    pub weight_decay: f64,
    /// Random crop (pad 4) and horizontal flip.
    pub augment: bool,
}

/// Stage 2: classifiers on the frozen representation (cached features).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stage2 {
    /// Epochs of cRT and LWS (class-balanced draws, one epoch = as many draws as training images).
    pub epochs: usize,
    /// Mini-batch size.
    pub batch_size: usize,
    /// Initial learning rate (half cosine to 0 over the steps).
    pub lr: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// Weight decay of the cRT classifier (LWS scales get none).
    pub weight_decay: f64,
    /// τ values tried on the validation split.
    pub tau_grid: Vec<f64>,
}

/// One long-tailed setting: data, backbone, both stages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Setting {
    /// Data.
    pub data: DataSpec,
    /// Backbone.
    pub net: Net,
    /// Balanced validation images per class, carved from the training images before the long
    /// tail is drawn (CIFAR-LT; the list datasets have their own validation list).
    pub val_per_class: usize,
    /// Seed of the long-tailed subset and the validation split (fixed across training seeds, as
    /// the published CIFAR-LT lists are).
    pub data_seed: u64,
    /// Cap the images per class before the long tail is drawn (CIFAR-LT; smoke), so the largest
    /// class keeps this many; `None`: all.
    pub max_per_class: Option<usize>,
    /// Use only the first N test images (smoke); `None`: all.
    pub test_limit: Option<usize>,
    /// Joint training.
    pub stage1: Stage1,
    /// Classifier re-balancing.
    pub stage2: Stage2,
}

/// Everything one run of the `decouple` binary needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecoupleConfig {
    /// Preset name.
    pub preset: Preset,
    /// Seeds when `--seeds` is not given.
    pub seeds: Vec<u64>,
    /// Settings, run in order.
    pub settings: Vec<Setting>,
}

fn tau_grid(step: f64, max: f64) -> Vec<f64> {
    let n = (max / step).round() as usize;
    (0..=n)
        .map(|i| (i as f64 * step * 1e6).round() / 1e6)
        .collect()
}

const ALL_SAMPLERS: [Sampling; 4] = [
    Sampling::Instance,
    Sampling::ClassBalanced,
    Sampling::SquareRoot,
    Sampling::Progressive,
];

impl Setting {
    /// Kang et al. on ImageNet-LT: ResNeXt-50, 90 epochs, batch 512, lr 0.2 cosine, momentum 0.9,
    /// weight decay 5e-4; stage 2 for 10 epochs with the same optimiser.
    pub fn imagenet_lt() -> Self {
        Self {
            data: DataSpec::ListLt {
                name: "ImageNet_LT".into(),
                image_root: PathBuf::from("data/imagenet"),
                list_dir: PathBuf::from("data/ImageNet_LT"),
                resize: 256,
                crop: 224,
            },
            net: Net::ResNeXt50,
            val_per_class: 0,
            data_seed: 0,
            max_per_class: None,
            test_limit: None,
            stage1: Stage1 {
                samplers: ALL_SAMPLERS.to_vec(),
                other_sampler_seeds: None,
                epochs: 90,
                batch_size: 512,
                lr: 0.2,
                warmup_epochs: 0,
                schedule: Schedule::Cosine,
                momentum: 0.9,
                weight_decay: 5e-4,
                augment: true,
            },
            stage2: Stage2 {
                epochs: 10,
                batch_size: 512,
                lr: 0.2,
                momentum: 0.9,
                weight_decay: 5e-4,
                tau_grid: tau_grid(0.1, 2.0),
            },
        }
    }

    /// CIFAR-LT with ResNet-32 as in the CIFAR-LT literature (LDAM / BagofTricks-LT): 200
    /// epochs, batch 128, lr 0.1 with 5 warm-up epochs, ×0.01 at 160 and 180, weight decay 2e-4.
    pub fn cifar_lt(dataset: &str, imbalance_factor: f64) -> Self {
        Self {
            data: DataSpec::CifarLt {
                dataset: dataset.into(),
                imbalance_factor,
                data_dir: None,
            },
            net: Net::ResNetCifar { depth: 32 },
            val_per_class: 20,
            data_seed: 0,
            max_per_class: None,
            test_limit: None,
            stage1: Stage1 {
                samplers: ALL_SAMPLERS.to_vec(),
                other_sampler_seeds: None,
                epochs: 200,
                batch_size: 128,
                lr: 0.1,
                warmup_epochs: 5,
                schedule: Schedule::MultiStep {
                    milestones: vec![160, 180],
                    gamma: 0.01,
                },
                momentum: 0.9,
                weight_decay: 2e-4,
                augment: true,
            },
            stage2: Stage2 {
                epochs: 10,
                batch_size: 128,
                lr: 0.1,
                momentum: 0.9,
                weight_decay: 2e-4,
                tau_grid: tau_grid(0.1, 2.0),
            },
        }
    }
}

impl DecoupleConfig {
    /// The paper's settings: ImageNet-LT with ResNeXt-50 (Kang et al. Table 2, Fig. 1), and
    /// CIFAR-10-LT (IF 100) with ResNet-32 for the BagofTricks-LT numbers. The other CIFAR-LT
    /// settings (CIFAR-10/100, IF 10/50/100/200) are [`Setting::cifar_lt`] away.
    pub fn paper() -> Self {
        Self {
            preset: Preset::Paper,
            seeds: vec![0, 1, 2],
            settings: vec![Setting::imagenet_lt(), Setting::cifar_lt("cifar10", 100.0)],
        }
    }

    /// CIFAR-10-LT IF 100 (from the hub, or `--data-dir`: the committed results read the JPEG
    /// copy, `--data-dir ../shared/data/cifar10-jpeg`), sized for a 2-core CPU: ResNet-8
    /// (16/32/64 channels, option A) for 20 epochs, lr 0.1 cosine to 0 without warm-up, instead
    /// of ResNet-32 for 200; three seeds for the instance-balanced representation and its
    /// stage-2 classifiers, one seed for each other sampler: 120 epochs in all. (An earlier
    /// version trained 5 epochs, when an epoch took ~55 s: too short for the classifier's weight
    /// norms to order by class size, so τ-norm could not show its effect.)
    pub fn cpu() -> Self {
        let mut s = Setting::cifar_lt("cifar10", 100.0);
        s.net = Net::ResNetCifar { depth: 8 };
        s.stage1.epochs = 20;
        s.stage1.other_sampler_seeds = Some(1);
        s.stage1.warmup_epochs = 0;
        s.stage1.schedule = Schedule::Cosine;
        s.stage1.weight_decay = 5e-4;
        s.stage2.epochs = 10;
        Self {
            preset: Preset::Cpu,
            seeds: vec![0, 1, 2],
            settings: vec![s],
        }
    }

    /// Seconds: every sampler and classifier on a few hundred images.
    pub fn smoke() -> Self {
        let mut c = Self::cpu();
        c.preset = Preset::Smoke;
        c.seeds = vec![0];
        let s = &mut c.settings[0];
        s.val_per_class = 2;
        s.max_per_class = Some(100);
        s.test_limit = Some(100);
        s.stage1.epochs = 1;
        s.stage1.warmup_epochs = 0;
        s.stage1.batch_size = 64;
        s.stage2.epochs = 2;
        s.stage2.batch_size = 64;
        s.stage2.tau_grid = vec![0.0, 0.5, 1.0];
        c
    }
}

fn check_positive(x: f64, what: &str) -> Result<()> {
    ensure!(x.is_finite() && x > 0.0, "{what} must be > 0, got {x}");
    Ok(())
}

impl Setting {
    /// Rejects invalid values, naming the field.
    pub fn validate(&self) -> Result<()> {
        let what = self.data.tag();
        match &self.data {
            DataSpec::CifarLt {
                dataset,
                imbalance_factor,
                ..
            } => {
                ensure!(
                    matches!(dataset.as_str(), "cifar10" | "cifar100"),
                    "{what}: dataset must be cifar10 or cifar100, got {dataset:?}"
                );
                ensure!(
                    imbalance_factor.is_finite() && *imbalance_factor >= 1.0,
                    "{what}: imbalance factor must be >= 1, got {imbalance_factor}"
                );
                ensure!(
                    self.val_per_class >= 1,
                    "{what}: val_per_class must be at least 1 (τ is chosen on it)"
                );
                ensure!(
                    matches!(self.net, Net::ResNetCifar { .. }),
                    "{what}: CIFAR-LT takes a CIFAR ResNet (32×32 inputs), got {}",
                    self.net
                );
            }
            DataSpec::ListLt {
                name, resize, crop, ..
            } => {
                ensure!(
                    matches!(name.as_str(), "ImageNet_LT" | "Places_LT"),
                    "{what}: list dataset must be ImageNet_LT or Places_LT, got {name:?}"
                );
                ensure!(
                    *crop >= 32 && resize >= crop,
                    "{what}: need crop >= 32 and resize >= crop, got resize {resize}, crop {crop}"
                );
                ensure!(
                    !matches!(self.net, Net::ResNetCifar { .. }),
                    "{what}: list datasets take ResNet10 or ResNeXt50"
                );
            }
        }
        if let Net::ResNetCifar { depth } = self.net {
            ensure!(
                depth >= 8 && (depth - 2) % 6 == 0,
                "{what}: CIFAR ResNet depth must be 6n+2 (8, 20, 32…), got {depth}"
            );
        }
        ensure!(
            self.test_limit != Some(0) && self.max_per_class != Some(0),
            "{what}: test_limit and max_per_class must be >= 1"
        );
        let s1 = &self.stage1;
        ensure!(
            !s1.samplers.is_empty(),
            "{what}: stage1.samplers: give at least one"
        );
        for (i, a) in s1.samplers.iter().enumerate() {
            ensure!(
                !s1.samplers[..i].contains(a),
                "{what}: sampler {a} listed twice"
            );
        }
        ensure!(
            s1.other_sampler_seeds != Some(0),
            "{what}: stage1.other_sampler_seeds must be >= 1"
        );
        ensure!(s1.epochs >= 1, "{what}: stage1.epochs must be >= 1");
        ensure!(s1.batch_size >= 1, "{what}: stage1.batch_size must be >= 1");
        check_positive(s1.lr, "stage1.lr")?;
        ensure!(
            s1.warmup_epochs < s1.epochs,
            "{what}: stage1.warmup_epochs ({}) must be below the epochs ({})",
            s1.warmup_epochs,
            s1.epochs
        );
        if let Schedule::MultiStep { milestones, gamma } = &s1.schedule {
            check_positive(*gamma, "stage1.schedule.gamma")?;
            ensure!(
                milestones.windows(2).all(|w| w[0] < w[1]),
                "{what}: stage1 milestones must be increasing"
            );
        }
        ensure!(
            (0.0..1.0).contains(&s1.momentum),
            "{what}: stage1.momentum must lie in [0, 1)"
        );
        ensure!(
            s1.weight_decay.is_finite() && s1.weight_decay >= 0.0,
            "{what}: stage1.weight_decay must be >= 0"
        );
        let s2 = &self.stage2;
        ensure!(s2.epochs >= 1, "{what}: stage2.epochs must be >= 1");
        ensure!(s2.batch_size >= 1, "{what}: stage2.batch_size must be >= 1");
        check_positive(s2.lr, "stage2.lr")?;
        ensure!(
            (0.0..1.0).contains(&s2.momentum),
            "{what}: stage2.momentum must lie in [0, 1)"
        );
        ensure!(
            s2.weight_decay.is_finite() && s2.weight_decay >= 0.0,
            "{what}: stage2.weight_decay must be >= 0"
        );
        ensure!(
            !s2.tau_grid.is_empty(),
            "{what}: stage2.tau_grid: give at least one τ"
        );
        for &t in &s2.tau_grid {
            ensure!(
                t.is_finite() && (0.0..=4.0).contains(&t),
                "{what}: τ = {t} must lie in [0, 4]"
            );
        }
        Ok(())
    }
}

impl ExperimentConfig for DecoupleConfig {
    fn preset(p: Preset) -> Self {
        match p {
            Preset::Paper => Self::paper(),
            Preset::Cpu => Self::cpu(),
            Preset::Smoke => Self::smoke(),
        }
    }

    fn default_seeds(&self) -> Vec<u64> {
        self.seeds.clone()
    }

    fn set_seeds(&mut self, seeds: &[u64]) {
        self.seeds = seeds.to_vec();
    }

    fn data_needs(&self) -> Vec<crate::preflight::DataNeed> {
        use crate::preflight::DataNeed;
        let mut needs = Vec::new();
        for s in &self.settings {
            match &s.data {
                DataSpec::CifarLt {
                    dataset, data_dir, ..
                } => needs.push(DataNeed::dataset_in(dataset.clone(), data_dir.clone())),
                DataSpec::ListLt {
                    name,
                    image_root,
                    list_dir,
                    ..
                } => {
                    needs.push(DataNeed::Path {
                        what: format!("{name} image root"),
                        path: image_root.clone(),
                    });
                    for split in ["train", "val", "test"] {
                        needs.push(DataNeed::Path {
                            what: format!("{name} {split} list"),
                            path: zoo_data::lt_list::list_path(list_dir, name, split),
                        });
                    }
                }
            }
        }
        needs
    }

    fn validate(&self) -> Result<()> {
        ensure!(!self.seeds.is_empty(), "seeds: give at least one");
        if self.settings.is_empty() {
            bail!("settings: give at least one");
        }
        let mut tags = Vec::new();
        for s in &self.settings {
            s.validate()?;
            let t = s.data.tag();
            ensure!(!tags.contains(&t), "setting {t} is listed twice");
            tags.push(t);
        }
        Ok(())
    }
}
