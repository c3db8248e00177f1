//! Beyond the paper: bagged candle MLPs on a Fashion-MNIST subset (the variance reduction of
//! bagging for an unstable neural learner) and the bagged ensemble distilled into one student
//! with the zoo's Hinton KD loss.

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor, D};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use zoo_models::init::Init;
use zoo_models::loss::{cross_entropy, kd_loss, Reduction};
use zoo_models::optim::{Adam, Optimizer};
use zoo_models::ParamStore;

use super::ensemble::plurality;
use super::experiment::{mix_seed, Config};
use crate::cli::Preset;
use crate::results::{Row, Summary};
use crate::Experiment;

/// Settings of the neural part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NeuralConfig {
    /// Training images drawn (class-balanced) from the Fashion-MNIST training split.
    pub train_subset: usize,
    /// Test images (first `test_subset` of the official test split; 10,000 = all).
    pub test_subset: usize,
    /// Bagged MLPs (each on its own bootstrap replicate).
    pub members: usize,
    /// Hidden width of the one-hidden-layer MLP 784-h-10.
    pub hidden: usize,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    /// Distillation temperature and soft-target weight α of `kd_loss`.
    pub temperature: f64,
    pub alpha: f64,
    /// Unlabelled training-split images (outside the subset) added to the second student's
    /// transfer set, labelled only by the ensemble's soft targets (0: no such student).
    pub transfer_images: usize,
}

impl NeuralConfig {
    /// Values for a preset.
    pub fn preset(preset: Preset) -> Self {
        let base = NeuralConfig {
            train_subset: 2000,
            test_subset: 10_000,
            members: 10,
            hidden: 256,
            epochs: 30,
            batch_size: 100,
            lr: 1e-3,
            temperature: 4.0,
            alpha: 0.9,
            transfer_images: 10_000,
        };
        match preset {
            Preset::Paper => NeuralConfig {
                members: 25,
                transfer_images: 20_000,
                ..base
            },
            Preset::Cpu => base,
            Preset::Smoke => NeuralConfig {
                train_subset: 200,
                test_subset: 200,
                members: 2,
                hidden: 32,
                epochs: 1,
                batch_size: 50,
                transfer_images: 100,
                ..base
            },
        }
    }

    /// Rejects invalid values.
    pub fn validate(&self) -> Result<()> {
        if self.train_subset < 10 || self.test_subset == 0 {
            bail!("neural.train_subset must be >= 10 and neural.test_subset >= 1");
        }
        if self.members == 0 || self.hidden == 0 || self.epochs == 0 || self.batch_size == 0 {
            bail!("neural.members, hidden, epochs and batch_size must be positive");
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            bail!("neural.lr must be positive");
        }
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            bail!("neural.temperature must be positive");
        }
        if !(0.0..=1.0).contains(&self.alpha) {
            bail!("neural.alpha must be in [0, 1]");
        }
        Ok(())
    }
}

/// Fashion-MNIST per-pixel mean and standard deviation (of x/255 over the training split).
const FMNIST_MEAN: f32 = 0.2860;
const FMNIST_STD: f32 = 0.3530;

/// Results of the neural part, one entry per seed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NeuralSeed {
    pub seed: u64,
    /// Test error (%) of nets trained on the whole subset (one per member seed, up to 3).
    pub single_errors: Vec<f64>,
    /// Test error (%) of each bagged member (trained on its own bootstrap replicate).
    pub member_errors: Vec<f64>,
    /// Error (%) of the ensemble of the first m members, m = 1..members (probability averaging).
    pub bagged_curve: Vec<f64>,
    /// Error (%) of the plurality vote of all members.
    pub bagged_vote_error: f64,
    /// Domingos' (2000) variance of the 0/1 loss of one member: mean over test images of the
    /// fraction of members that disagree with the members' modal prediction.
    pub member_variance: f64,
    /// The same for nets trained on the whole subset (spread due to initialisation and order only).
    pub single_variance: f64,
    /// Test error (%) of one student net distilled from the bagged ensemble with `kd_loss` on
    /// the labelled subset.
    pub student_error: f64,
    /// Test error (%) of a student trained on pure soft targets (`kd_loss`, α = 1) over the subset
    /// plus `transfer_images` unlabelled images (None if `transfer_images` is 0).
    pub transfer_student_error: Option<f64>,
    pub seconds: f64,
}

/// Everything the neural part measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NeuralOutcome {
    pub seeds: Vec<NeuralSeed>,
    pub config: NeuralConfig,
}

/// A one-hidden-layer ReLU MLP 784-h-10 with functional parameters in a [`ParamStore`].
struct Mlp {
    store: ParamStore,
}

impl Mlp {
    fn new(
        inputs: usize,
        hidden: usize,
        classes: usize,
        dev: &Device,
        rng: &mut StdRng,
    ) -> Result<Self> {
        let mut store = ParamStore::new(dev);
        store.add_var(
            "fc1.weight",
            Init::PytorchDefault.tensor((hidden, inputs), DType::F32, dev, rng)?,
        )?;
        store.add_var(
            "fc1.bias",
            Init::bias_default(inputs).tensor(hidden, DType::F32, dev, rng)?,
        )?;
        store.add_var(
            "fc2.weight",
            Init::PytorchDefault.tensor((classes, hidden), DType::F32, dev, rng)?,
        )?;
        store.add_var(
            "fc2.bias",
            Init::bias_default(hidden).tensor(classes, DType::F32, dev, rng)?,
        )?;
        Ok(Self { store })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let p = self.store.params();
        let h =
            zoo_models::ops::linear(x, p.get("fc1.weight")?, Some(p.get("fc1.bias")?))?.relu()?;
        Ok(zoo_models::ops::linear(
            &h,
            p.get("fc2.weight")?,
            Some(p.get("fc2.bias")?),
        )?)
    }

    /// Class probabilities for `x`, in chunks, as rows of f32.
    fn probs(&self, x: &Tensor) -> Result<Vec<Vec<f32>>> {
        let n = x.dim(0)?;
        let mut out = Vec::with_capacity(n);
        let mut i = 0;
        while i < n {
            let len = (n - i).min(1000);
            let logits = self.forward(&x.narrow(0, i, len)?)?;
            let p = candle_nn::ops::softmax(&logits, D::Minus1)?;
            out.extend(p.to_dtype(DType::F32)?.to_vec2::<f32>()?);
            i += len;
        }
        Ok(out)
    }
}

/// Images as a normalised `(n, 784)` f32 tensor and labels as a u32 tensor.
fn to_tensors(
    ds: &zoo_data::ImageDataset,
    idx: &[usize],
    dev: &Device,
) -> Result<(Tensor, Tensor, Vec<u32>)> {
    let d = ds.channels * ds.height * ds.width;
    let mut x = Vec::with_capacity(idx.len() * d);
    let mut y = Vec::with_capacity(idx.len());
    for &i in idx {
        x.extend(
            ds.image(i)
                .iter()
                .map(|&v| (v as f32 / 255.0 - FMNIST_MEAN) / FMNIST_STD),
        );
        y.push(ds.labels[i]);
    }
    let xt = Tensor::from_vec(x, (idx.len(), d), dev)?;
    let yt = Tensor::from_vec(y.clone(), idx.len(), dev)?;
    Ok((xt, yt, y))
}

/// Trains an MLP with Adam on the rows `rows` of (x, y) — repeats allowed (bootstrap) — with
/// cross-entropy, or with `kd_loss` against `teacher` logits (one row per row of x) if given.
#[allow(clippy::too_many_arguments)]
fn train_mlp(
    cfg: &NeuralConfig,
    x: &Tensor,
    y: &Tensor,
    rows: &[usize],
    teacher: Option<&Tensor>,
    classes: usize,
    dev: &Device,
    rng: &mut StdRng,
) -> Result<Mlp> {
    let net = Mlp::new(x.dim(1)?, cfg.hidden, classes, dev, rng)?;
    let mut opt = Adam::new(0.0);
    let mut order = rows.to_vec();
    for _ in 0..cfg.epochs {
        order.shuffle(rng);
        for chunk in order.chunks(cfg.batch_size) {
            let idx = Tensor::from_vec(
                chunk.iter().map(|&i| i as u32).collect::<Vec<_>>(),
                chunk.len(),
                dev,
            )?;
            let xb = x.index_select(&idx, 0)?;
            let yb = y.index_select(&idx, 0)?;
            let logits = net.forward(&xb)?;
            let loss = match teacher {
                Some(t) => kd_loss(
                    &logits,
                    &t.index_select(&idx, 0)?,
                    &yb,
                    cfg.temperature,
                    cfg.alpha,
                )?,
                None => cross_entropy(&logits, &yb, Reduction::Mean)?,
            };
            let l = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            if !l.is_finite() {
                bail!("neural part: non-finite training loss {l}");
            }
            let grads = zoo_models::backprop::backward(&loss)?;
            opt.step(&net.store, &grads, cfg.lr)?;
        }
    }
    Ok(net)
}

fn argmax(p: &[f32]) -> usize {
    let v: Vec<f64> = p.iter().map(|&x| x as f64).collect();
    plurality(&v)
}

fn error_pct(pred: &[usize], labels: &[u32]) -> f64 {
    let wrong = pred
        .iter()
        .zip(labels)
        .filter(|(p, y)| **p != **y as usize)
        .count();
    100.0 * wrong as f64 / labels.len().max(1) as f64
}

/// Domingos' variance: mean over examples of the fraction of predictors that disagree with the
/// modal prediction (ties to the lowest class).
pub fn disagreement_variance(preds: &[Vec<usize>], classes: usize) -> f64 {
    let Some(first) = preds.first() else {
        return 0.0;
    };
    let n = first.len();
    let mut total = 0.0;
    for i in 0..n {
        let mut counts = vec![0.0; classes];
        for p in preds {
            counts[p[i]] += 1.0;
        }
        let m = plurality(&counts);
        total += 1.0 - counts[m] / preds.len() as f64;
    }
    total / n.max(1) as f64
}

/// Fashion-MNIST, loaded once for every seed of the neural part.
pub struct FashionData {
    train: zoo_data::ImageDataset,
    xte: Tensor,
    yte: Vec<u32>,
    n_test: usize,
}

/// Loads Fashion-MNIST and the test subset of `cfg`.
pub fn load_data(exp: &Experiment<Config>, cfg: &NeuralConfig) -> Result<FashionData> {
    let src = zoo_data::DataSource::from_option(exp.common.data_dir.clone());
    let train = zoo_data::load("fashion_mnist", zoo_data::Split::Train, &src)
        .context("bagging neural part: loading Fashion-MNIST (set --hf-home or HF_HOME, or pass --no-neural)")?;
    let test = zoo_data::load("fashion_mnist", zoo_data::Split::Test, &src)
        .context("bagging neural part: loading the Fashion-MNIST test split")?;
    let test_idx: Vec<usize> = (0..cfg.test_subset.min(test.len())).collect();
    let (xte, _, yte) = to_tensors(&test, &test_idx, &exp.device)?;
    Ok(FashionData {
        train,
        xte,
        yte,
        n_test: test_idx.len(),
    })
}

/// The neural part for one seed: single nets, bagged members, their ensemble and students.
pub fn run_seed(
    exp: &Experiment<Config>,
    cfg: &NeuralConfig,
    data: &FashionData,
    seed: u64,
) -> Result<NeuralSeed> {
    let (train, xte, yte) = (&data.train, &data.xte, data.yte.as_slice());
    let classes = train.num_classes;
    let dev = &exp.device;
    let started = std::time::Instant::now();
    let mut rng = StdRng::seed_from_u64(mix_seed(seed, 1000, 0));
    // Class-balanced subset of the training split.
    let per_class = cfg.train_subset / classes;
    let mut by_class = vec![Vec::new(); classes];
    for (i, &l) in train.labels.iter().enumerate() {
        by_class[l as usize].push(i);
    }
    let mut subset = Vec::new();
    for c in by_class.iter_mut() {
        c.shuffle(&mut rng);
        if c.len() < per_class {
            bail!(
                "Fashion-MNIST has only {} images of a class, need {per_class}",
                c.len()
            );
        }
        subset.extend_from_slice(&c[..per_class]);
    }
    let (xtr, ytr, _) = to_tensors(train, &subset, dev)?;
    let all: Vec<usize> = (0..subset.len()).collect();
    // Unlabelled transfer images: training-split images outside the subset.
    let mut in_subset = vec![false; train.len()];
    subset.iter().for_each(|&i| in_subset[i] = true);
    let mut rest: Vec<usize> = (0..train.len()).filter(|&i| !in_subset[i]).collect();
    rest.shuffle(&mut rng);
    rest.truncate(cfg.transfer_images);
    let (xex, _, _) = to_tensors(train, &rest, dev)?;
    let mut sum_extra = vec![vec![0.0f64; classes]; rest.len()];

    let member_seeds = cfg.members.min(3);
    let mut single_preds = Vec::new();
    let mut single_errors = Vec::new();
    for k in 0..member_seeds {
        let mut r = StdRng::seed_from_u64(mix_seed(seed, 1001, k as u64));
        let net = train_mlp(cfg, &xtr, &ytr, &all, None, classes, dev, &mut r)?;
        let pred: Vec<usize> = net.probs(xte)?.iter().map(|p| argmax(p)).collect();
        single_errors.push(error_pct(&pred, yte));
        single_preds.push(pred);
    }
    let mut member_errors = Vec::new();
    let mut member_preds = Vec::new();
    let mut sum_test = vec![vec![0.0f64; classes]; data.n_test];
    let mut sum_train = vec![vec![0.0f64; classes]; subset.len()];
    let mut bagged_curve = Vec::new();
    for m in 0..cfg.members {
        let mut r = StdRng::seed_from_u64(mix_seed(seed, 1002, m as u64));
        let boot: Vec<usize> = super::ensemble::bootstrap(&all, &mut r);
        let net = train_mlp(cfg, &xtr, &ytr, &boot, None, classes, dev, &mut r)?;
        let pt = net.probs(xte)?;
        let pred: Vec<usize> = pt.iter().map(|p| argmax(p)).collect();
        member_errors.push(error_pct(&pred, yte));
        member_preds.push(pred);
        for (s, p) in sum_test.iter_mut().zip(&pt) {
            s.iter_mut().zip(p).for_each(|(a, b)| *a += *b as f64);
        }
        for (s, p) in sum_train.iter_mut().zip(net.probs(&xtr)?) {
            s.iter_mut().zip(&p).for_each(|(a, b)| *a += *b as f64);
        }
        if !rest.is_empty() {
            for (s, p) in sum_extra.iter_mut().zip(net.probs(&xex)?) {
                s.iter_mut().zip(&p).for_each(|(a, b)| *a += *b as f64);
            }
        }
        let ens: Vec<usize> = sum_test.iter().map(|s| plurality(s)).collect();
        bagged_curve.push(error_pct(&ens, yte));
    }
    let vote: Vec<usize> = (0..data.n_test)
        .map(|i| {
            let mut c = vec![0.0; classes];
            member_preds.iter().for_each(|p| c[p[i]] += 1.0);
            plurality(&c)
        })
        .collect();
    // Teacher logits: log of the ensemble's mean probability (softmax of it = the mean).
    let m = cfg.members as f64;
    let log_mean = |sums: &[Vec<f64>]| -> Result<Tensor> {
        let v: Vec<f32> = sums
            .iter()
            .flat_map(|s| s.iter().map(move |v| ((v / m).max(1e-12)).ln() as f32))
            .collect();
        Ok(Tensor::from_vec(v, (sums.len(), classes), dev)?)
    };
    let teacher = log_mean(&sum_train)?;
    let mut r = StdRng::seed_from_u64(mix_seed(seed, 1003, 0));
    let student = train_mlp(cfg, &xtr, &ytr, &all, Some(&teacher), classes, dev, &mut r)?;
    let spred: Vec<usize> = student.probs(xte)?.iter().map(|p| argmax(p)).collect();
    let transfer_student_error = if rest.is_empty() {
        None
    } else {
        // Subset + unlabelled images, pure soft targets (α = 1: the labels are never read;
        // the ensemble's own argmax is passed only to give the tensor its shape).
        let xt = Tensor::cat(&[&xtr, &xex], 0)?;
        let sums: Vec<Vec<f64>> = sum_train.iter().chain(&sum_extra).cloned().collect();
        let t_all = log_mean(&sums)?;
        let pseudo: Vec<u32> = sums.iter().map(|s| plurality(s) as u32).collect();
        let yt = Tensor::from_vec(pseudo, sums.len(), dev)?;
        let rows: Vec<usize> = (0..sums.len()).collect();
        let soft_cfg = NeuralConfig {
            alpha: 1.0,
            ..cfg.clone()
        };
        let mut r = StdRng::seed_from_u64(mix_seed(seed, 1004, 0));
        let st = train_mlp(
            &soft_cfg,
            &xt,
            &yt,
            &rows,
            Some(&t_all),
            classes,
            dev,
            &mut r,
        )?;
        let p: Vec<usize> = st.probs(xte)?.iter().map(|p| argmax(p)).collect();
        Some(error_pct(&p, yte))
    };
    let out = NeuralSeed {
        seed,
        single_errors,
        member_errors,
        bagged_vote_error: error_pct(&vote, yte),
        bagged_curve,
        member_variance: disagreement_variance(&member_preds, classes),
        single_variance: disagreement_variance(&single_preds, classes),
        student_error: error_pct(&spred, yte),
        transfer_student_error,
        seconds: started.elapsed().as_secs_f64(),
    };
    tracing::info!(
        "neural seed {seed}: single net {:.2}%, member {:.2}%, bagged {:.2}%, student {:.2}%, \
         transfer-set student {:?} ({:.0} s)",
        mean(&out.single_errors),
        mean(&out.member_errors),
        out.bagged_curve.last().copied().unwrap_or(f64::NAN),
        out.student_error,
        out.transfer_student_error,
        out.seconds
    );
    Ok(out)
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

impl NeuralOutcome {
    /// Adds the neural rows, the ensemble-size curve and a note to the summary.
    pub fn add_to(&self, summary: &mut Summary, exp: &Experiment<Config>) -> Result<()> {
        let c = &self.config;
        let per =
            |f: &dyn Fn(&NeuralSeed) -> f64| -> Vec<f64> { self.seeds.iter().map(f).collect() };
        let u = "% test error";
        let tag = format!(
            "Fashion-MNIST {} imgs, MLP 784-{}-10",
            c.train_subset, c.hidden
        );
        summary
            .row(Row::new(format!("{tag}: net on the whole subset"), u, per(&|s| mean(&s.single_errors))).decimals(2))
            .row(Row::new(format!("{tag}: one bagged member (bootstrap)"), u, per(&|s| mean(&s.member_errors))).decimals(2))
            .row(
                Row::new(
                    format!("{tag}: bagged ensemble of {} (mean probability)", c.members),
                    u,
                    per(&|s| s.bagged_curve.last().copied().unwrap_or(f64::NAN)),
                )
                .decimals(2),
            )
            .row(Row::new(format!("{tag}: bagged ensemble of {} (plurality vote)", c.members), u, per(&|s| s.bagged_vote_error)).decimals(2))
            .row(
                Row::new(format!("{tag}: student distilled from the ensemble (kd_loss)"), u, per(&|s| s.student_error))
                    .decimals(2)
                    .note(format!("T = {}, α = {}; same architecture and data as the whole-subset net", c.temperature, c.alpha)),
            )
            .row(
                Row::new(format!("{tag}: variance of one bagged member (Domingos)"), "fraction of test images", per(&|s| s.member_variance))
                    .decimals(4)
                    .note("mean fraction of members disagreeing with the members' modal prediction: the part of the error bagging averages away"),
            )
            .row(
                Row::new(format!("{tag}: variance of a net on the whole subset (Domingos)"), "fraction of test images", per(&|s| s.single_variance))
                    .decimals(4)
                    .note("same measure over the whole-subset nets (seeds differ only in initialisation and batch order)"),
            );
        if self
            .seeds
            .iter()
            .all(|s| s.transfer_student_error.is_some())
        {
            summary.row(
                Row::new(
                    format!(
                        "{tag}: student on soft targets, subset + {} unlabelled images",
                        c.transfer_images
                    ),
                    u,
                    per(&|s| s.transfer_student_error.unwrap_or(f64::NAN)),
                )
                .decimals(2)
                .note("kd_loss with α = 1: the unlabelled images' only targets are the ensemble's"),
            );
        }
        let pts: Vec<(f64, f64)> = (0..c.members)
            .map(|m| ((m + 1) as f64, mean(&per(&|s| s.bagged_curve[m]))))
            .collect();
        let f = "neural_error_vs_members.svg";
        crate::plot::line_chart(
            &exp.results.path(f),
            &crate::plot::Labels::new(
                "Bagged MLPs on a Fashion-MNIST subset: test error vs ensemble size",
                "number of bagged MLPs",
                "test error (%)",
            ),
            &[crate::plot::Series::new(
                "bagged MLPs (mean probability)",
                pts,
            )],
        )?;
        summary.plot(f);
        summary.note(format!(
            "Neural part (beyond the paper): {} class-balanced Fashion-MNIST training images, {} test \
             images, MLP 784-{}-10, Adam lr {}, {} epochs, batch {}; no paper numbers. {:.0} s.",
            c.train_subset,
            c.test_subset,
            c.hidden,
            c.lr,
            c.epochs,
            c.batch_size,
            self.seeds.iter().map(|s| s.seconds).sum::<f64>()
        ));
        Ok(())
    }
}
