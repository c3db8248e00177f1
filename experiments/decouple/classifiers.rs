//! Stage 2 of Kang et al. (2020): classifiers built on a frozen representation, working on cached
//! `(n, d)` feature matrices so that re-balancing the classifier never touches the backbone.
//!
//! * [`tau_normalize`]: `w̃_i = w_i / ‖w_i‖^τ` (τ = 0 leaves `W` unchanged, τ = 1 gives unit rows).
//! * [`Ncm`]: nearest class mean, by cosine similarity or Euclidean distance.
//! * [`train_crt`]: classifier re-training: a fresh linear layer trained with class-balanced
//!   sampling.
//! * [`train_lws`]: learnable weight scaling: per-class scales `f_i` on the joint classifier's
//!   logits, trained with class-balanced sampling while `W`, `b` and the features stay fixed.
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use zoo::decouple::classifiers::{row_norms, tau_normalize};
//! let w = Tensor::new(&[[3f32, 4.0], [0.0, 0.5]], &Device::Cpu)?;
//! let unit = tau_normalize(&w, 1.0)?;
//! assert!(row_norms(&unit)?.iter().all(|n| (n - 1.0).abs() < 1e-6));
//! # Ok::<(), anyhow::Error>(())
//! ```

use anyhow::{ensure, Context, Result};
use candle_core::{DType, Device, Tensor, D};
use rand::rngs::StdRng;
use zoo_data::sampler::{ClassBalanced, Sampler};
use zoo_models::init::Init;
use zoo_models::loss::{cross_entropy, Reduction};
use zoo_models::optim::{LrSchedule, Optimizer, Sgd};
use zoo_models::ParamStore;

/// `w_i / ‖w_i‖₂^τ` for every row `i` of `w` (`(C, d)`): Kang et al.'s τ-normalised classifier.
/// Rows of norm 0 are left at 0.
pub fn tau_normalize(w: &Tensor, tau: f64) -> Result<Tensor> {
    ensure!(tau.is_finite(), "τ must be finite, got {tau}");
    let norms = w.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?;
    // ‖w‖^τ, with 0^τ replaced by 1 so zero rows stay zero instead of becoming NaN.
    let zero = norms.eq(0.0)?;
    let safe = zero.where_cond(&norms.ones_like()?, &norms)?;
    let scale = safe.powf(tau)?;
    Ok(w.broadcast_div(&scale)?)
}

/// Euclidean norm of every row of a `(C, d)` matrix.
pub fn row_norms(w: &Tensor) -> Result<Vec<f64>> {
    Ok(w.to_dtype(DType::F64)?
        .sqr()?
        .sum(D::Minus1)?
        .sqrt()?
        .to_vec1::<f64>()?)
}

/// A linear classifier `f ↦ f·Wᵀ + b` on cached features.
#[derive(Debug, Clone)]
pub struct LinearHead {
    /// `(C, d)`.
    pub weight: Tensor,
    /// `(C,)`, if the layer has one.
    pub bias: Option<Tensor>,
}

impl LinearHead {
    /// Logits `(n, C)` of features `(n, d)`.
    pub fn logits(&self, feats: &Tensor) -> Result<Tensor> {
        let z = feats.matmul(&self.weight.t()?)?;
        Ok(match &self.bias {
            Some(b) => z.broadcast_add(b)?,
            None => z,
        })
    }

    /// The τ-normalised classifier: weights [`tau_normalize`]d and no bias, as Kang et al.'s
    /// code computes τ-norm logits (a dot product with the normalised weights).
    pub fn tau_normalized(&self, tau: f64) -> Result<LinearHead> {
        Ok(LinearHead {
            weight: tau_normalize(&self.weight, tau)?,
            bias: None,
        })
    }

    /// Number of classes.
    pub fn num_classes(&self) -> Result<usize> {
        Ok(self.weight.dims2()?.0)
    }
}

/// Distance used by [`Ncm`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NcmMetric {
    /// Cosine similarity to the class mean.
    Cosine,
    /// Negative Euclidean distance to the class mean.
    Euclidean,
}

/// Nearest class mean: the mean training feature of every class.
#[derive(Debug, Clone)]
pub struct Ncm {
    /// `(C, d)`.
    pub means: Tensor,
}

impl Ncm {
    /// Class means of `feats` `(n, d)` with `labels`. Every class must occur.
    pub fn fit(feats: &Tensor, labels: &[u32], num_classes: usize) -> Result<Self> {
        let (n, _) = feats.dims2()?;
        ensure!(
            labels.len() == n,
            "{} labels for {n} feature rows",
            labels.len()
        );
        let mut counts = vec![0f32; num_classes];
        for &l in labels {
            ensure!(
                (l as usize) < num_classes,
                "label {l} outside 0..{num_classes}"
            );
            counts[l as usize] += 1.0;
        }
        if let Some(c) = counts.iter().position(|&k| k == 0.0) {
            anyhow::bail!("NCM: class {c} has no training feature");
        }
        // Means as one matmul: (C, n) one-hot-over-count times (n, d).
        let mut assign = vec![0f32; num_classes * n];
        for (i, &l) in labels.iter().enumerate() {
            assign[l as usize * n + i] = 1.0 / counts[l as usize];
        }
        let a = Tensor::from_vec(assign, (num_classes, n), feats.device())?;
        Ok(Self {
            means: a.matmul(&feats.to_dtype(DType::F32)?)?,
        })
    }

    /// Scores `(n, C)`: cosine similarities, or negative Euclidean distances.
    pub fn logits(&self, feats: &Tensor, metric: NcmMetric) -> Result<Tensor> {
        match metric {
            NcmMetric::Cosine => {
                let f = l2_normalize_rows(feats)?;
                let m = l2_normalize_rows(&self.means)?;
                Ok(f.matmul(&m.t()?)?)
            }
            NcmMetric::Euclidean => {
                // ‖f − m‖² = ‖f‖² − 2 f·m + ‖m‖²
                let ff = feats.sqr()?.sum_keepdim(D::Minus1)?;
                let mm = self.means.sqr()?.sum(D::Minus1)?.unsqueeze(0)?;
                let fm = feats.matmul(&self.means.t()?)?;
                let d2 = ff.broadcast_add(&mm)?.sub(&(fm * 2.0)?)?.relu()?;
                Ok(d2.sqrt()?.neg()?)
            }
        }
    }
}

fn l2_normalize_rows(x: &Tensor) -> Result<Tensor> {
    let n = x
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .sqrt()?
        .clamp(1e-12, f64::MAX)?;
    Ok(x.broadcast_div(&n)?)
}

/// Optimisation of a stage-2 classifier: SGD with momentum, half-cosine learning rate over all
/// steps, class-balanced draws (one epoch = as many draws as training rows).
#[derive(Debug, Clone, PartialEq)]
pub struct HeadTraining {
    /// Epochs.
    pub epochs: usize,
    /// Mini-batch size.
    pub batch_size: usize,
    /// Initial learning rate.
    pub lr: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// Coupled weight decay.
    pub weight_decay: f64,
}

/// Runs class-balanced SGD on the trainable variables of `store`, with `logits(params, feats)`.
#[allow(clippy::too_many_arguments)]
fn train_balanced(
    store: &ParamStore,
    feats: &Tensor,
    labels: &[u32],
    num_classes: usize,
    cfg: &HeadTraining,
    weight_decay: f64,
    rng: &mut StdRng,
    logits: impl Fn(&zoo_models::ParamSet, &Tensor) -> Result<Tensor>,
) -> Result<()> {
    ensure!(
        cfg.epochs >= 1 && cfg.batch_size >= 1,
        "stage 2: epochs and batch size must be >= 1"
    );
    let (n, _) = feats.dims2()?;
    ensure!(
        labels.len() == n,
        "{} labels for {n} feature rows",
        labels.len()
    );
    let mut sampler = ClassBalanced::new(labels, num_classes)?;
    let steps_per_epoch = n.div_ceil(cfg.batch_size);
    let schedule = LrSchedule::Cosine {
        base: cfg.lr,
        total: cfg.epochs * steps_per_epoch,
        min: 0.0,
    };
    let mut opt = Sgd::new(cfg.momentum, false, weight_decay)?;
    let dev = feats.device();
    let mut step = 0;
    for epoch in 0..cfg.epochs {
        let order = sampler.epoch_indices(epoch, rng);
        for chunk in order.chunks(cfg.batch_size) {
            let idx: Vec<u32> = chunk.iter().map(|&i| i as u32).collect();
            let y: Vec<u32> = chunk.iter().map(|&i| labels[i]).collect();
            let idx = Tensor::from_vec(idx, chunk.len(), dev)?;
            let x = feats.index_select(&idx, 0)?;
            let y = Tensor::from_vec(y, chunk.len(), dev)?;
            let loss = cross_entropy(&logits(&store.params(), &x)?, &y, Reduction::Mean)?;
            let l = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            ensure!(l.is_finite(), "stage 2: non-finite loss {l} at step {step}");
            let grads = zoo_models::backprop::backward(&loss)?;
            opt.step(store, &grads, schedule.lr_at(step))?;
            step += 1;
        }
    }
    Ok(())
}

/// cRT: a linear classifier re-initialised (PyTorch's `nn.Linear` default, from `rng`) and
/// trained with class-balanced sampling on the frozen features.
pub fn train_crt(
    feats: &Tensor,
    labels: &[u32],
    num_classes: usize,
    cfg: &HeadTraining,
    rng: &mut StdRng,
) -> Result<LinearHead> {
    let (_, d) = feats.dims2()?;
    let dev = feats.device();
    let mut store = ParamStore::new(dev);
    store.add_var(
        "weight",
        Init::PytorchDefault.tensor((num_classes, d), DType::F32, dev, rng)?,
    )?;
    store.add_var(
        "bias",
        Init::bias_default(d).tensor(num_classes, DType::F32, dev, rng)?,
    )?;
    train_balanced(
        &store,
        feats,
        labels,
        num_classes,
        cfg,
        cfg.weight_decay,
        rng,
        |p, x| {
            Ok(x.matmul(&p.get("weight")?.t()?)?
                .broadcast_add(p.get("bias")?)?)
        },
    )
    .context("cRT")?;
    let p = store.params();
    Ok(LinearHead {
        weight: p.get("weight")?.detach(),
        bias: Some(p.get("bias")?.detach()),
    })
}

/// LWS: per-class scales `f` (initialised to 1) of the joint classifier's logits,
/// `z_i = f_i·(w_i·x + b_i)`, trained with class-balanced sampling; `head` and `feats` are only
/// read. Returns `f` as a `(C,)` tensor. The scales get no weight decay.
pub fn train_lws(
    feats: &Tensor,
    labels: &[u32],
    head: &LinearHead,
    cfg: &HeadTraining,
    rng: &mut StdRng,
) -> Result<Tensor> {
    let c = head.num_classes()?;
    let dev = feats.device();
    let mut store = ParamStore::new(dev);
    store.add_var("scales", Tensor::ones(c, DType::F32, dev)?)?;
    // The joint logits are constants: computed once, detached.
    let base = head.logits(feats)?.detach();
    train_balanced(&store, &base, labels, c, cfg, 0.0, rng, |p, z| {
        Ok(z.broadcast_mul(p.get("scales")?)?)
    })
    .context("LWS")?;
    Ok(store.params().get("scales")?.detach())
}

/// Logits of the LWS classifier: `f_i·(w_i·x + b_i)`.
pub fn lws_logits(head: &LinearHead, scales: &Tensor, feats: &Tensor) -> Result<Tensor> {
    Ok(head.logits(feats)?.broadcast_mul(scales)?)
}

/// Features on `device` as a contiguous f32 matrix (helper for callers holding features elsewhere).
pub fn to_features(x: &Tensor, device: &Device) -> Result<Tensor> {
    Ok(x.to_dtype(DType::F32)?.to_device(device)?.contiguous()?)
}
