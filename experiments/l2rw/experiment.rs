//! The experiments: MNIST 4-vs-9 class imbalance (Fig. 3) and CIFAR noisy labels (Table 1), each
//! method trained per seed on the reweighting core, then the report.

use std::collections::HashSet;

use anyhow::{Context, Result};
use serde::Serialize;
use zoo_data::corrupt::{mnist_4v9, relabel_4v9, NoiseSpec};
use zoo_data::split::balanced_meta_set;
use zoo_data::{load, Augment, DataSource, ImageDataset, Normalize, Split as DataSplit};
use zoo_models::models::{LeNet, LeNetConfig};
use zoo_models::Classifier;

use super::config::{L2rwConfig, Method, Part};
use super::report::summarise;
use crate::parallel::run_indexed_first;
use crate::results::Summary;
use crate::reweight::{
    self, limit_test, noisy_split, role_rng, Datasets, OptConfig, ReweightTask, RunOut, RunRecord,
    Split, TaskData,
};
use crate::Experiment;

/// One trained model.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    /// `mnist` or `cifar`.
    pub part: String,
    /// The setting: `p=0.995` or a noise spec.
    pub setting: String,
    /// Method.
    pub method: Method,
    /// What the core measured.
    #[serde(flatten)]
    pub run: RunRecord,
}

impl crate::results::SeededRun for RunResult {
    fn seed(&self) -> u64 {
        self.run.seed
    }
}

/// A prepared split of one setting and seed.
struct Prep {
    setting: String,
    seed: u64,
    split: Split,
}

/// What every run of one part shares.
struct PartRun<'a> {
    part: &'static str,
    opt: &'a OptConfig,
    test: &'a ImageDataset,
    norm: Normalize,
    augment: Augment,
}

fn as_binary(mut ds: ImageDataset, labels: Vec<u32>) -> ImageDataset {
    ds.num_classes = 2;
    ds.class_names = vec!["4".into(), "9".into()];
    ds.with_labels(labels)
}

/// Trains `method` from `model` on `prep` with the part's shared settings.
fn train_one(
    exp: &Experiment<L2rwConfig>,
    pr: &PartRun,
    prep: &Prep,
    method: Method,
    model: Box<dyn Classifier>,
) -> Result<RunResult> {
    let s = &prep.split;
    let data = TaskData {
        train: &s.train,
        flagged: &s.flagged,
        meta: &s.meta,
        test: pr.test,
        norm: pr.norm.clone(),
        augment: pr.augment,
    };
    let rule = method.rule(exp.config.all_zero, &s.train.class_counts());
    let mut task = ReweightTask::new(model, rule, pr.opt, data, prep.seed)?;
    let label = format!("{}_{}/{method}", pr.part, prep.setting.replace(':', "_"));
    let run = reweight::train(&mut task, prep.seed, &RunOut::of(exp, label))?;
    Ok(RunResult {
        part: pr.part.into(),
        setting: prep.setting.clone(),
        method,
        run,
    })
}

/// The MNIST training set of proportion `p` (4-vs-9 relabelled) and its clean balanced meta set
/// from MNIST's training 4s and 9s not in the training set; flagged rows are the minority 4s.
fn mnist_split(
    train_all: &ImageDataset,
    pool: &(Vec<usize>, Vec<u32>),
    p: f64,
    seed: u64,
    cfg: &super::MnistConfig,
) -> Result<Split> {
    let mut rng = role_rng(seed, &format!("mnist-data-{p}"));
    let (idx, bin) = mnist_4v9(&train_all.labels, cfg.n_train, p, &mut rng)?;
    let used: HashSet<usize> = idx.iter().copied().collect();
    let (rest_idx, rest_bin): (Vec<usize>, Vec<u32>) = pool
        .0
        .iter()
        .zip(&pool.1)
        .filter(|(i, _)| !used.contains(i))
        .map(|(&i, &b)| (i, b))
        .unzip();
    let (meta_pos, _) = balanced_meta_set(&rest_bin, cfg.meta_per_class, &mut rng)?;
    let meta_rows: Vec<usize> = meta_pos.iter().map(|&k| rest_idx[k]).collect();
    let meta_bin: Vec<u32> = meta_pos.iter().map(|&k| rest_bin[k]).collect();
    Ok(Split {
        flagged: bin.iter().map(|&b| b == 0).collect(),
        train: as_binary(train_all.subset(&idx), bin),
        meta: as_binary(train_all.subset(&meta_rows), meta_bin),
    })
}

/// MNIST 4-vs-9 (§5.1): per proportion and seed, one training set and meta set shared by every
/// method, and every method from the same LeNet initialisation.
fn run_mnist(exp: &Experiment<L2rwConfig>, src: &DataSource) -> Result<Vec<RunResult>> {
    let cfg = &exp.config.mnist;
    let train_all = load("mnist", DataSplit::Train, src).context("loading MNIST (train)")?;
    let test_all = load("mnist", DataSplit::Test, src).context("loading MNIST (test)")?;
    let (mut test_idx, mut test_bin) = relabel_4v9(&test_all.labels);
    if let Some(k) = cfg.test_limit {
        test_idx.truncate(k);
        test_bin.truncate(k);
    }
    let test = as_binary(test_all.subset(&test_idx), test_bin);
    let pool = relabel_4v9(&train_all.labels);
    tracing::info!(
        "MNIST 4-vs-9: {} test images ({:?} per class)",
        test.len(),
        test.class_counts()
    );
    // The data of every (proportion, seed) first, then one job per method on them.
    let mut preps = Vec::new();
    for &p in &cfg.proportions {
        for &seed in exp.common.seeds() {
            let split = mnist_split(&train_all, &pool, p, seed, cfg)?;
            let setting = format!("p={p}");
            preps.push(Prep {
                setting,
                seed,
                split,
            });
        }
    }
    let pr = PartRun {
        part: "mnist",
        opt: &cfg.opt,
        test: &test,
        norm: Normalize::for_dataset("mnist")?,
        augment: Augment::None,
    };
    run_methods(
        exp,
        &preps,
        &cfg.methods,
        |seed| {
            let model = LeNet::new(
                LeNetConfig::mnist(2),
                &mut role_rng(seed, "lenet"),
                &exp.device,
            )?;
            Ok(Box::new(model) as Box<dyn Classifier>)
        },
        &pr,
    )
}

/// Every (prepared setting, method) pair, `--jobs` at a time. L2RW's runs (about 4× a plain
/// run) are handed out first (`run_indexed_first`) so that runs side by side finish close
/// together. `model` builds a seed's initial network.
fn run_methods(
    exp: &Experiment<L2rwConfig>,
    preps: &[Prep],
    methods: &[Method],
    model: impl Fn(u64) -> Result<Box<dyn Classifier>> + Sync,
    pr: &PartRun,
) -> Result<Vec<RunResult>> {
    let jobs: Vec<(usize, Method)> = (0..preps.len())
        .flat_map(|k| methods.iter().map(move |&m| (k, m)))
        .collect();
    let long = |j: usize| jobs[j].1 == Method::L2rw;
    run_indexed_first(exp.config.jobs.max(1), jobs.len(), long, |j| {
        let (k, method) = jobs[j];
        let prep = &preps[k];
        train_one(exp, pr, prep, method, model(prep.seed)?)
    })
}

/// CIFAR noisy labels (§5.2): a clean, class-balanced meta set drawn first, the noise applied to
/// the rest; the same data and initialisation for every method of a seed.
fn run_cifar(exp: &Experiment<L2rwConfig>, src: &DataSource) -> Result<Vec<RunResult>> {
    let cfg = &exp.config.cifar;
    let name = cfg.dataset.as_str();
    let mut data = Datasets::new(src);
    let (train_all, test_all) = data.get(name)?;
    let nc = train_all.num_classes;
    let test = limit_test(test_all, cfg.test_limit);
    let mut preps = Vec::new();
    for s in &cfg.settings {
        let spec: NoiseSpec = s.noise.parse()?;
        for &seed in exp.common.seeds() {
            let mut rng = role_rng(seed, &format!("cifar-data-{}", s.noise));
            let split = noisy_split(
                train_all,
                cfg.train_limit,
                s.meta_per_class,
                &spec,
                &mut rng,
            )?;
            preps.push(Prep {
                setting: s.noise.clone(),
                seed,
                split,
            });
        }
    }
    let pr = PartRun {
        part: "cifar",
        opt: &cfg.opt,
        test: &test,
        norm: Normalize::for_dataset(name)?,
        augment: if cfg.augment {
            Augment::CifarCropFlip
        } else {
            Augment::None
        },
    };
    let net = |seed: u64| {
        cfg.net
            .build(nc, &mut role_rng(seed, "cifar-net"), &exp.device)
    };
    run_methods(exp, &preps, &cfg.methods, net, &pr)
}

/// Runs the configured parts and writes `results.json`, `summary.json`/`summary.md` and plots.
/// `cifar_src` is where the CIFAR data come from (MNIST uses `--data-dir` or the hub).
pub fn run(exp: &Experiment<L2rwConfig>, cifar_src: &DataSource) -> Result<Summary> {
    let mut results = Vec::new();
    let src = exp.common.data_source();
    if exp.config.parts.contains(&Part::Mnist) {
        results.extend(run_mnist(exp, &src)?);
    }
    if exp.config.parts.contains(&Part::Cifar) {
        results.extend(run_cifar(exp, cifar_src)?);
    }
    exp.results.write_json("results.json", &results)?;
    summarise(exp, &results)
}
