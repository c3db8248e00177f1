//! Classification losses, all built from ops that candle can differentiate **twice**, so any of
//! them can sit inside the inner loss of a meta-gradient step ([`crate::meta`]).
//!
//! * Cross-entropy is `−(log_softmax(z) · onehot(y)).sum(1)`, not candle's gather-based
//!   `candle_nn::loss::cross_entropy` (`gather` has no second-order backward).
//! * Softmax is `candle_nn::ops::softmax(x, D::Minus1)`; `softmax_last_dim` has no backward.
//!
//! Shapes: `logits` are `(batch, classes)` (f32 or f64), `labels` are `(batch,)` `u32`. Per-example
//! results are `(batch,)`; reduced results are scalars. Every loss is computed in the logits' dtype.

use candle_core::{bail, DType, Result, Tensor, D};
use candle_nn::ops::{log_softmax, softmax};

/// How per-example losses are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reduction {
    /// Sum over the batch divided by the batch size.
    #[default]
    Mean,
    /// Sum over the batch.
    Sum,
    /// The `(batch,)` vector of per-example losses.
    None,
}

impl Reduction {
    /// Applies the reduction to a `(batch,)` vector.
    pub fn apply(self, per_example: &Tensor) -> Result<Tensor> {
        match self {
            Reduction::Mean => per_example.mean_all(),
            Reduction::Sum => per_example.sum_all(),
            Reduction::None => Ok(per_example.clone()),
        }
    }
}

fn check_logits_labels(logits: &Tensor, labels: &Tensor) -> Result<(usize, usize)> {
    let (b, c) = logits.dims2()?;
    let lb = labels.dims1()?;
    if lb != b {
        bail!("labels have {lb} entries but logits have batch {b}")
    }
    if !labels.dtype().is_int() {
        bail!("labels must be an integer tensor, got {:?}", labels.dtype())
    }
    Ok((b, c))
}

/// One-hot encoding of `labels` `(batch,)` as a `(batch, num_classes)` tensor of `dtype`, built on
/// the labels' device. Labels `>= num_classes` are an error.
pub fn one_hot(labels: &Tensor, num_classes: usize, dtype: DType) -> Result<Tensor> {
    let b = labels.dims1()?;
    let labels = labels.to_dtype(DType::U32)?;
    if b > 0 {
        let max = labels.max(0)?.to_scalar::<u32>()? as usize;
        if max >= num_classes {
            bail!("label {max} out of range for {num_classes} classes")
        }
    }
    let classes = Tensor::arange(0u32, num_classes as u32, labels.device())?;
    labels
        .unsqueeze(1)?
        .broadcast_eq(&classes.unsqueeze(0)?)?
        .to_dtype(dtype)
}

/// Per-example cross-entropy `ℓ_i = −log softmax(z_i)[y_i]`, `(batch,)`. Exact at second order.
pub fn per_example_ce(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let (_, c) = check_logits_labels(logits, labels)?;
    let oh = one_hot(labels, c, logits.dtype())?;
    if crate::ops::weights_only() {
        // Inside the meta-step's inner pass (see `ops::WeightsOnlyGuard`): the value ℓ, and the
        // gradient (softmax(z) − onehot) with the softmax detached, through `s − s.detach()`.
        let z = logits.detach();
        let value = log_softmax(&z, D::Minus1)?.mul(&oh)?.sum(1)?.neg()?;
        let coef = (softmax(&z, D::Minus1)? - &oh)?;
        let s = logits.mul(&coef)?.sum(1)?;
        return (value + (&s - s.detach())?)?.contiguous();
    }
    log_softmax(logits, D::Minus1)?.mul(&oh)?.sum(1)?.neg()
}

/// Cross-entropy with the given reduction (PyTorch's `F.cross_entropy(z, y, reduction=…)`).
pub fn cross_entropy(logits: &Tensor, labels: &Tensor, reduction: Reduction) -> Result<Tensor> {
    reduction.apply(&per_example_ce(logits, labels)?)
}

/// Per-example weighted cross-entropy `w_i ℓ_i`. `weights` is `(batch,)` in the logits' dtype and
/// may carry a graph (the meta step differentiates through it). `Mean` is `Σ_i w_i ℓ_i / n`
/// (divided by the batch size, **not** by `Σ w_i`, as L2RW and Meta-Weight-Net define it).
pub fn weighted_ce(
    logits: &Tensor,
    labels: &Tensor,
    weights: &Tensor,
    reduction: Reduction,
) -> Result<Tensor> {
    let l = per_example_ce(logits, labels)?;
    if weights.dims() != l.dims() {
        bail!(
            "weights have shape {:?}, expected ({},)",
            weights.dims(),
            l.dim(0)?
        )
    }
    reduction.apply(&l.mul(weights)?)
}

/// Cross-entropy against soft targets `q` `(batch, classes)`: `−Σ_c q_c log p_c` per example.
pub fn soft_target_ce(logits: &Tensor, targets: &Tensor, reduction: Reduction) -> Result<Tensor> {
    if logits.dims() != targets.dims() {
        bail!(
            "soft targets {:?} do not match logits {:?}",
            targets.dims(),
            logits.dims()
        )
    }
    let l = log_softmax(logits, D::Minus1)?
        .mul(&targets.to_dtype(logits.dtype())?)?
        .sum(1)?
        .neg()?;
    reduction.apply(&l)
}

/// Softmax at temperature `t`: `softmax(z / t)` over the last dimension.
pub fn softmax_t(logits: &Tensor, t: f64) -> Result<Tensor> {
    softmax(&(logits / t)?, D::Minus1)
}

/// `KL(softmax(t/T) ‖ softmax(s/T))` summed over classes and averaged over the batch
/// (PyTorch's `reduction='batchmean'`), **without** the `T²` factor. The teacher is detached.
pub fn distill_kl(student_logits: &Tensor, teacher_logits: &Tensor, t: f64) -> Result<Tensor> {
    if student_logits.dims() != teacher_logits.dims() {
        bail!(
            "student logits {:?} and teacher logits {:?} differ in shape",
            student_logits.dims(),
            teacher_logits.dims()
        )
    }
    if !(t > 0.0 && t.is_finite()) {
        bail!("temperature must be positive and finite, got {t}")
    }
    let teacher = teacher_logits.detach().to_dtype(student_logits.dtype())?;
    let log_pt = log_softmax(&(teacher / t)?, D::Minus1)?;
    let log_ps = log_softmax(&(student_logits / t)?, D::Minus1)?;
    let pt = log_pt.exp()?;
    pt.mul(&(log_pt - log_ps)?)?.sum(1)?.mean_all()
}

/// Hinton et al. (2015) distillation loss:
///
/// `α · T² · KL(softmax(t/T) ‖ softmax(s/T)) + (1 − α) · CE(s, y)`
///
/// with the KL summed over classes and **averaged over the batch** (`batchmean`) and the CE a batch
/// mean. The `T²` factor keeps the soft term's gradient magnitude independent of `T`: as `T → ∞`
/// its gradient w.r.t. the student logits tends to `(s − t)/(C·n)` for zero-mean logits. The teacher
/// logits are treated as constants (detached). `α = 1` gives the pure soft-target loss.
pub fn kd_loss(
    student_logits: &Tensor,
    teacher_logits: &Tensor,
    labels: &Tensor,
    t: f64,
    alpha: f64,
) -> Result<Tensor> {
    if !(0.0..=1.0).contains(&alpha) {
        bail!("distillation weight alpha must be in [0, 1], got {alpha}")
    }
    let soft = (distill_kl(student_logits, teacher_logits, t)? * (alpha * t * t))?;
    if alpha == 1.0 {
        return Ok(soft);
    }
    let hard = (cross_entropy(student_logits, labels, Reduction::Mean)? * (1.0 - alpha))?;
    soft + hard
}

/// The prior `u` that label smoothing mixes into the one-hot target.
#[derive(Debug, Clone, PartialEq)]
pub enum SmoothingPrior {
    /// `u_c = 1/C` (Szegedy et al. 2016).
    Uniform,
    /// `u_c` = the training set's class frequency (unigram prior, Pereyra et al. 2017). Must sum to 1.
    Unigram(Vec<f64>),
}

impl SmoothingPrior {
    /// The unigram prior from per-class training counts. Errors if all counts are zero.
    pub fn unigram_from_counts(counts: &[usize]) -> Result<Self> {
        let total: usize = counts.iter().sum();
        if total == 0 {
            bail!("unigram prior from an empty class-count vector")
        }
        Ok(Self::Unigram(
            counts.iter().map(|&c| c as f64 / total as f64).collect(),
        ))
    }

    fn probs(&self, num_classes: usize) -> Result<Vec<f64>> {
        match self {
            SmoothingPrior::Uniform => Ok(vec![1.0 / num_classes as f64; num_classes]),
            SmoothingPrior::Unigram(p) => {
                if p.len() != num_classes {
                    bail!(
                        "unigram prior has {} classes, logits have {num_classes}",
                        p.len()
                    )
                }
                let s: f64 = p.iter().sum();
                if p.iter().any(|&x| x < 0.0) || (s - 1.0).abs() > 1e-6 {
                    bail!("unigram prior must be non-negative and sum to 1 (sum {s})")
                }
                Ok(p.clone())
            }
        }
    }
}

/// Label-smoothed cross-entropy: CE against `q = (1 − ε)·onehot(y) + ε·u`, `u` from `prior`.
/// `ε = 0` is plain cross-entropy.
pub fn label_smoothing_ce(
    logits: &Tensor,
    labels: &Tensor,
    eps: f64,
    prior: &SmoothingPrior,
    reduction: Reduction,
) -> Result<Tensor> {
    let (_, c) = check_logits_labels(logits, labels)?;
    if !(0.0..=1.0).contains(&eps) {
        bail!("label smoothing epsilon must be in [0, 1], got {eps}")
    }
    let u = prior.probs(c)?;
    let u = Tensor::from_vec(u, (1, c), logits.device())?.to_dtype(logits.dtype())?;
    let oh = one_hot(labels, c, logits.dtype())?;
    let q = ((oh * (1.0 - eps))?.broadcast_add(&(u * eps)?))?;
    soft_target_ce(logits, &q, reduction)
}

/// Per-example entropy (nats) of `softmax(logits)`: `H_i = −Σ_c p_c log p_c`, `(batch,)`.
pub fn entropy(logits: &Tensor) -> Result<Tensor> {
    logits.dims2()?;
    let lp = log_softmax(logits, D::Minus1)?;
    lp.exp()?.mul(&lp)?.sum(1)?.neg()
}

/// The confidence-penalty weight β as a function of the training step (Pereyra et al. 2017).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BetaSchedule {
    /// β fixed.
    Constant(f64),
    /// β moves linearly from `start` (step 0) to `end` (step `steps`), then stays at `end`.
    Linear {
        /// β at step 0.
        start: f64,
        /// β from step `steps` on.
        end: f64,
        /// Length of the ramp in steps (0: `end` from the start).
        steps: usize,
    },
}

impl BetaSchedule {
    /// β at `step`.
    pub fn beta_at(&self, step: usize) -> f64 {
        match *self {
            BetaSchedule::Constant(b) => b,
            BetaSchedule::Linear { start, end, steps } => {
                if steps == 0 || step >= steps {
                    end
                } else {
                    start + (end - start) * step as f64 / steps as f64
                }
            }
        }
    }
}

/// Confidence-penalised cross-entropy (Pereyra et al. 2017), per example:
///
/// * `threshold = None`: `ℓ_i = CE_i − β·H_i` (plain penalty on low entropy);
/// * `threshold = Some(Γ)`: `ℓ_i = CE_i + β·max(0, Γ − H_i)`: only outputs whose entropy is
///   below `Γ` are penalised. Below `Γ` the gradient equals the plain penalty's (the two differ by
///   the constant `βΓ`); above it the penalty and its gradient are zero (at `H = Γ` exactly the
///   hinge takes the gradient of the penalised side).
///
/// β comes from a [`BetaSchedule`] via [`BetaSchedule::beta_at`]; pass the value here.
pub fn confidence_penalty(
    logits: &Tensor,
    labels: &Tensor,
    beta: f64,
    threshold: Option<f64>,
    reduction: Reduction,
) -> Result<Tensor> {
    let ce = per_example_ce(logits, labels)?;
    let h = entropy(logits)?;
    let l = match threshold {
        None => (ce - (h * beta)?)?,
        Some(g) => (ce + (h.neg()?.affine(1.0, g)?.relu()? * beta)?)?,
    };
    reduction.apply(&l)
}

/// Focal loss (Lin et al. 2017): `ℓ_i = −(1 − p_{y_i})^γ · log p_{y_i}`. `γ = 0` is cross-entropy.
pub fn focal(logits: &Tensor, labels: &Tensor, gamma: f64, reduction: Reduction) -> Result<Tensor> {
    if !(gamma >= 0.0 && gamma.is_finite()) {
        bail!("focal gamma must be finite and >= 0, got {gamma}")
    }
    let (_, c) = check_logits_labels(logits, labels)?;
    let oh = one_hot(labels, c, logits.dtype())?;
    let log_pt = log_softmax(logits, D::Minus1)?.mul(&oh)?.sum(1)?;
    let l = if gamma == 0.0 {
        log_pt.neg()?
    } else {
        // 1 − p_t can round to exactly 0; clamp keeps powf's backward (γ·x^(γ−1)) finite.
        let one_minus = log_pt.exp()?.neg()?.affine(1.0, 1.0)?.clamp(0.0, 1.0)?;
        one_minus.powf(gamma)?.mul(&log_pt)?.neg()?
    };
    reduction.apply(&l)
}

/// Class weights of Cui et al. (2019), "class-balanced loss based on effective number of samples":
/// `w_c ∝ (1 − β) / (1 − β^{n_c})`, normalised so `Σ_c w_c = C`. `β ∈ [0, 1)`; β = 0 gives equal
/// weights, β → 1 approaches inverse class frequency. Every class needs at least one example.
pub fn class_balanced_weights(counts: &[usize], beta: f64) -> Result<Vec<f64>> {
    if !(0.0..1.0).contains(&beta) {
        bail!("class-balanced beta must be in [0, 1), got {beta}")
    }
    if counts.is_empty() || counts.contains(&0) {
        bail!("class-balanced weights need a positive count for every class, got {counts:?}")
    }
    let raw: Vec<f64> = counts
        .iter()
        .map(|&n| (1.0 - beta) / (1.0 - beta.powi(n as i32)))
        .collect();
    let s: f64 = raw.iter().sum();
    let c = counts.len() as f64;
    Ok(raw.into_iter().map(|w| w * c / s).collect())
}

/// Class-weighted cross-entropy `w_{y_i} ℓ_i` with per-class weights (e.g. from
/// [`class_balanced_weights`]). `Mean` divides by the batch size (Cui et al.'s reduction), not by
/// `Σ w_{y_i}` as PyTorch's `weight=` argument does.
pub fn class_balanced_ce(
    logits: &Tensor,
    labels: &Tensor,
    class_weights: &[f64],
    reduction: Reduction,
) -> Result<Tensor> {
    let (_, c) = check_logits_labels(logits, labels)?;
    if class_weights.len() != c {
        bail!("{} class weights for {c} classes", class_weights.len())
    }
    let w = Tensor::from_slice(class_weights, (c, 1), logits.device())?.to_dtype(logits.dtype())?;
    let oh = one_hot(labels, c, logits.dtype())?;
    let per_example_w = oh.matmul(&w)?.squeeze(1)?;
    weighted_ce(logits, labels, &per_example_w, reduction)
}
