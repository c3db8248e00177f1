//! The meta-gradient step of Learning to Reweight (L2RW, Ren et al. 2018), Meta-Weight-Net (MWN,
//! Shu et al. 2019) and Meta-Learning based Noise-Tolerant training (MLNT, Li et al. 2019).
//!
//! # The maths
//!
//! For a training batch of `n` examples with per-example losses `ℓ_i(θ)` and weights `w_i`
//! (`w = ε`, a leaf, for L2RW; `w_i = V_φ(ℓ_i)` for MWN), one **virtual** SGD step is
//!
//! ```text
//! θ'(w) = θ − α ∇θ [ (1/n) Σ_i w_i ℓ_i(θ) ]
//! ```
//!
//! and a meta loss `L(θ')` is evaluated on a clean meta batch. [`meta_gradient`] returns
//! `dL/dε` (or `dL/dφ`). For one step, by the chain rule,
//!
//! ```text
//! dL/dε_i = −(α/n) ⟨∇θ'L(θ'), ∇θ ℓ_i(θ)⟩,       dL/dφ = Σ_i (dL/dw_i) ∂V_φ(ℓ_i)/∂φ.
//! ```
//!
//! [`unrolled_meta_gradient`] takes `k` virtual steps `θ'_{j+1} = θ'_j − α ∇ℓ_j(θ'_j)` from
//! `θ'_0 = θ` and returns `dL(θ'_k)/dθ` through all of them (MLNT), or with `first_order` the
//! first-order approximation `∇L(θ'_k)` (the Jacobians `∂θ'_{j+1}/∂θ'_j` replaced by `I`).
//!
//! # Mechanism, and why it is exact
//!
//! Reverse-over-reverse automatic differentiation. The inner `backward()` runs with candle's
//! `CANDLE_GRAD_DO_NOT_DETACH` set, so the gradient `∇θ Σ w_i ℓ_i` it returns is itself a
//! differentiable function of `θ` and `w`; `θ'` is built from it as ordinary tensors, the model
//! runs forward with `θ'` as its [`ParamSet`], and a second `backward()` of `L(θ')` reaches `ε`
//! (or `φ`) through the inner gradient. This is the exact derivative (to floating point), not an
//! approximation, provided every op on the path has a differentiable backward pass: the zoo's
//! losses ([`crate::loss`], CE as `−(log_softmax·onehot).sum(1)`) and ops ([`crate::ops`]) do,
//! and `tests/meta.rs` checks the result against central finite differences in f64 on an MLP and
//! on a conv net with BatchNorm and max pooling.
//!
//! The alternative, the inner-product formula above with per-example gradients `∇θ ℓ_i`, needs
//! `n` backward passes per step (or per-example gradient tricks); the double backward costs about
//! one extra backward pass through the inner graph, whatever `n` is.
//!
//! [`meta_gradient`] needs `dL/dw` only, which by the formula above has no term through the
//! dependence of `∇θ ℓ_i` on `θ`. Its inner pass therefore runs *weights-only*: the inner
//! backward builds `∇θ Σ w_i ℓ_i` from detached copies of the forward tensors (each op's
//! backward, and CE's `softmax(z) − onehot`), so the result is still a differentiable, exactly
//! linear function of `w`, and the outer backward never walks back into the forward graph. The
//! finite-difference tests cover this path. [`unrolled_meta_gradient`] (gradients w.r.t. `θ`)
//! keeps the full graph.
//!
//! Gradients w.r.t. `θ` are taken through zero-valued "anchor" variables (`θ + δ`, `δ = 0`), so
//! `θ` can be any tensors (the store's variables, an `f64` copy of them, or an earlier virtual
//! step) and the inner gradient is read from `δ`'s slot in the gradient store.
//!
//! # Preconditions
//!
//! * `CANDLE_GRAD_DO_NOT_DETACH=1` in the environment before the **first** `backward()` on the
//!   calling thread (candle reads it once per thread). `.cargo/config.toml` sets it for
//!   `cargo run`/`cargo test`; binaries set it first thing in `main`. Without it candle silently
//!   returns first-order numbers, so every function here first runs [`second_order_available`]
//!   and fails with an explanation if the self-test does not pass.
//! * BatchNorm under the virtual step uses batch statistics and must not update running
//!   statistics: forward with [`Ctx`] `{ train: true, update_stats: false }`, as the
//!   [`Classifier`] helpers here do.
//!
//! # Example: one L2RW step on ResNet-32
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use rand::{rngs::StdRng, SeedableRng};
//! use zoo_models::loss;
//! use zoo_models::meta::{l2rw_grad, l2rw_weights};
//! use zoo_models::models::{ResNetCifar, ResNetCifarConfig};
//! use zoo_models::optim::{Optimizer, Sgd};
//! use zoo_models::{Classifier, Ctx};
//!
//! # fn main() -> candle_core::Result<()> {
//! // A binary must set CANDLE_GRAD_DO_NOT_DETACH=1 first thing in `main`; `cargo test` and
//! // `cargo run` get it from .cargo/config.toml.
//! let dev = Device::Cpu;
//! let mut rng = StdRng::seed_from_u64(0);
//! let model = ResNetCifar::new(ResNetCifarConfig::new(32, 10), &mut rng, &dev)?;
//! // A noisy training batch and a clean meta batch (4 images each, normalised CIFAR layout).
//! let img = |seed: usize| -> candle_core::Result<Tensor> {
//!     let v: Vec<f32> = (0..4 * 3 * 32 * 32)
//!         .map(|i| ((i * 7919 + seed) % 255) as f32 / 127.5 - 1.0)
//!         .collect();
//!     Tensor::from_vec(v, (4, 3, 32, 32), &dev)
//! };
//! let (x, y) = (img(1)?, Tensor::new(&[3u32, 1, 4, 1], &dev)?);
//! let (xm, ym) = (img(2)?, Tensor::new(&[5u32, 9, 2, 6], &dev)?);
//!
//! // dL_meta/dε through one virtual SGD step of size α = 0.1 (BN: batch statistics, running
//! // statistics untouched), then Ren et al.'s weights.
//! let theta = model.store().params();
//! let meta = l2rw_grad(&model, &theta, (&x, &y), (&xm, &ym), 0.1, None)?;
//! let w = l2rw_weights(&meta.grads[0])?;
//!
//! // The real step: Σ w_i ℓ_i, with running statistics updated.
//! let logits = model.forward(&theta, &x, &mut Ctx::train_no_rng(true))?;
//! let step_loss = loss::weighted_ce(&logits, &y, &w, loss::Reduction::Sum)?;
//! let mut opt = Sgd::new(0.9, false, 5e-4)?;
//! opt.step(model.store(), &step_loss.backward()?, 0.1)?;
//! assert!(opt.last_skipped().is_empty()); // every parameter got a gradient
//! # Ok(())
//! # }
//! ```

use crate::classifier::{Classifier, Ctx};
use crate::loss;
use crate::params::{ParamSet, ParamStore};
use candle_core::{backprop::GradStore, bail, DType, Device, Result, Tensor, Var};
use rand::rngs::StdRng;
use std::collections::BTreeMap;

/// Whether candle keeps the graph of gradients on this thread (second derivatives work).
///
/// Self-test: `d²(x⁴)/dx²` at `x = 1` must be 12. Without `CANDLE_GRAD_DO_NOT_DETACH` the first
/// gradient comes back detached and the second derivative is missing.
pub fn second_order_available() -> bool {
    let check = || -> Result<bool> {
        let x = Var::new(1f64, &Device::Cpu)?;
        let g = x.as_tensor().sqr()?.sqr()?.backward()?;
        let Some(dx) = g.get(x.as_tensor()) else {
            return Ok(false);
        };
        let Some(d2x) = dx.backward()?.get(x.as_tensor()).cloned() else {
            return Ok(false);
        };
        Ok((d2x.to_scalar::<f64>()? - 12.0).abs() < 1e-12)
    };
    check().unwrap_or(false)
}

/// `Ok` if [`second_order_available`], else an error explaining how to enable it.
pub fn require_second_order() -> Result<()> {
    if second_order_available() {
        return Ok(());
    }
    bail!(
        "second-order gradients are not available on this thread: candle detaches gradients \
         unless CANDLE_GRAD_DO_NOT_DETACH=1 is set before the thread's first backward() \
         (`cargo run`/`cargo test` get it from .cargo/config.toml; a binary must set it first \
         thing in main; rayon's pool threads detach once zoo_models::backprop::\
         start_detached_threads has run, so run meta-steps outside parallel loops). \
         Meta-gradients would be silently wrong without it."
    )
}

/// The result of a virtual SGD step ([`virtual_step`]).
#[derive(Debug, Clone)]
pub struct VirtualStep {
    /// `θ' = θ − α ∇θ loss`, attached to the graph (unless first-order).
    pub params: ParamSet,
    /// The inner loss value (attached to the graph).
    pub loss: Tensor,
    /// Entries of `θ` that are tracked but received no gradient (left unchanged in `θ'`).
    pub no_grad: Vec<String>,
    /// The zero-valued anchors `δ` the inner loss was evaluated at (`θ + δ`), by name.
    anchors: BTreeMap<String, Var>,
}

/// One virtual SGD step `θ' = θ − α ∇θ loss(θ)` that keeps the graph: `θ'` stays a differentiable
/// function of `θ` and of everything `loss` depends on. With `first_order`, `∇θ loss` is detached
/// (`θ'` then depends on `θ` with identity Jacobian and on nothing else through the gradient).
///
/// `loss` receives the parameter set to run forward with and must return a scalar. Entries of
/// `θ` that are not tracked (detached, e.g. frozen variables) are passed through unchanged.
/// Requires [`second_order_available`] when `first_order` is false, if anything is to be
/// differentiated through the result (checked by [`meta_gradient`] / [`unrolled_meta_gradient`]).
pub fn virtual_step<F>(theta: &ParamSet, lr: f64, first_order: bool, loss: F) -> Result<VirtualStep>
where
    F: FnOnce(&ParamSet) -> Result<Tensor>,
{
    virtual_step_impl(theta, lr, first_order, false, loss)
}

/// [`virtual_step`]; with `weights_only`, the inner forward and backward run under
/// `ops::WeightsOnlyGuard`, so `θ'` is exact as a function of the per-example weights but carries
/// no graph through `θ` beyond the identity (see [`meta_gradient`]).
fn virtual_step_impl<F>(
    theta: &ParamSet,
    lr: f64,
    first_order: bool,
    weights_only: bool,
    loss: F,
) -> Result<VirtualStep>
where
    F: FnOnce(&ParamSet) -> Result<Tensor>,
{
    if !lr.is_finite() {
        bail!("virtual step size must be finite, got {lr}")
    }
    let (anchored, anchors) = anchor(theta)?;
    let guard = crate::ops::WeightsOnlyGuard::new(weights_only);
    let l = loss(&anchored)?;
    if l.elem_count() != 1 {
        bail!("the inner loss must be a scalar, got shape {:?}", l.dims())
    }
    let grads = l.backward()?;
    drop(guard);
    let mut out = BTreeMap::new();
    let mut no_grad = Vec::new();
    for (name, t) in theta.iter() {
        let new = match anchors.get(name) {
            None => t.clone(),
            Some(d) => match grads.get(d.as_tensor()) {
                None => {
                    no_grad.push(name.clone());
                    t.clone()
                }
                Some(g) => {
                    let g = if first_order { g.detach() } else { g.clone() };
                    (t - (g * lr)?)?
                }
            },
        };
        out.insert(name.clone(), new);
    }
    Ok(VirtualStep {
        params: ParamSet::new(out),
        loss: l,
        no_grad,
        anchors,
    })
}

/// `θ + δ` with a zero variable `δ` for every tracked entry, so gradients w.r.t. `θ` can be read
/// from `δ`'s slot whether or not `θ` is itself a variable.
fn anchor(theta: &ParamSet) -> Result<(ParamSet, BTreeMap<String, Var>)> {
    let mut shifted = BTreeMap::new();
    let mut anchors = BTreeMap::new();
    for (name, t) in theta.iter() {
        if t.track_op() {
            let d = Var::zeros(t.shape(), t.dtype(), t.device())?;
            shifted.insert(name.clone(), (t + d.as_tensor())?);
            anchors.insert(name.clone(), d);
        } else {
            shifted.insert(name.clone(), t.clone());
        }
    }
    Ok((ParamSet::new(shifted), anchors))
}

/// The result of [`meta_gradient`].
#[derive(Debug, Clone)]
pub struct MetaGrad {
    /// `dL/d leaf` for each leaf passed in, same order and shapes, detached.
    pub grads: Vec<Tensor>,
    /// `L(θ')`.
    pub meta_loss: f64,
    /// `ℓ_i(θ)`, `(n,)`, detached.
    pub train_losses: Tensor,
    /// `w_i`, `(n,)`, detached.
    pub weights: Tensor,
}

/// The audited one-step meta-gradient (see the [module docs](self) for the maths and mechanism).
///
/// * `theta`: the parameters `θ` (usually `model.store().params()`).
/// * `per_example_loss(θ)`: `ℓ(θ)`, shape `(n,)` (forward with `update_stats: false`).
/// * `weights(ℓ)`: `w`, shape `(n,)`, from the **detached** losses (MWN's official code feeds
///   `cost.data` to the VNet): return `ε` for L2RW, `V_φ(ℓ)` for MWN.
/// * `meta_loss(θ')`: the scalar meta loss on the meta batch.
/// * `leaves`: the tensors to differentiate with respect to (`ε`'s tensor, or `φ`'s variables).
/// * `lr`: the virtual step size `α`.
///
/// The inner pass is *weights-only*: its backward builds `∇θ Σ w_i ℓ_i` from detached copies of
/// the forward tensors, so the outer backward follows the per-example weights only and never
/// re-enters the forward graph (no Hessian-through-θ terms, which `dL/dw` does not contain:
/// `∂g/∂w_i = ∇θ ℓ_i(θ)` at fixed θ). This is exact for leaves that reach `L` only through `w`,
/// and cut the L2RW step on ResNet-32 by about a third; a leaf that is one of `θ`'s tensors is
/// therefore rejected (use [`unrolled_meta_gradient`] for gradients w.r.t. `θ`).
///
/// Errors if second-order gradients are unavailable, if a leaf is one of `θ`'s tensors, or if the
/// meta loss does not depend on a leaf (which would otherwise come back as a silent zero).
pub fn meta_gradient<FL, FW, FM>(
    theta: &ParamSet,
    per_example_loss: FL,
    weights: FW,
    meta_loss: FM,
    leaves: &[&Tensor],
    lr: f64,
) -> Result<MetaGrad>
where
    FL: FnOnce(&ParamSet) -> Result<Tensor>,
    FW: FnOnce(&Tensor) -> Result<Tensor>,
    FM: FnOnce(&ParamSet) -> Result<Tensor>,
{
    Ok(meta_gradient_impl(theta, per_example_loss, weights, meta_loss, leaves, lr)?.0)
}

/// [`meta_gradient`], also returning the anchors `δ` of the inner forward at `θ + δ`.
fn meta_gradient_impl<FL, FW, FM>(
    theta: &ParamSet,
    per_example_loss: FL,
    weights: FW,
    meta_loss: FM,
    leaves: &[&Tensor],
    lr: f64,
) -> Result<(MetaGrad, BTreeMap<String, Var>)>
where
    FL: FnOnce(&ParamSet) -> Result<Tensor>,
    FW: FnOnce(&Tensor) -> Result<Tensor>,
    FM: FnOnce(&ParamSet) -> Result<Tensor>,
{
    require_second_order()?;
    for (i, leaf) in leaves.iter().enumerate() {
        if let Some((name, _)) = theta.iter().find(|(_, t)| t.id() == leaf.id()) {
            bail!(
                "leaf {i} is the parameter `{name}`: meta_gradient differentiates w.r.t. what \
                 reaches the loss through the weights only; use unrolled_meta_gradient for θ"
            )
        }
    }
    let mut saved: Option<(Tensor, Tensor)> = None;
    // Weights-only inner pass: exact for the leaves, which reach L only through w.
    let step = virtual_step_impl(theta, lr, false, true, |p| {
        let l = per_example_loss(p)?;
        let n = l.dims1().map_err(|_| {
            candle_core::Error::Msg(format!(
                "per-example loss must have shape (n,), got {:?}",
                l.dims()
            ))
        })?;
        let w = weights(&l.detach())?;
        if w.dims() != [n] {
            bail!("weights must have shape ({n},), got {:?}", w.dims())
        }
        let w = w.to_dtype(l.dtype())?;
        saved = Some((l.detach(), w.detach()));
        (l * w)?.sum_all()? / n.max(1) as f64
    })?;
    let (train_losses, w) = saved.expect("inner loss closure ran");
    let meta = meta_loss(&step.params)?;
    let grads = backward_scalar(&meta, "meta loss")?;
    let mut out = Vec::with_capacity(leaves.len());
    for (i, leaf) in leaves.iter().enumerate() {
        match grads.get(leaf) {
            Some(g) => out.push(g.detach()),
            None => bail!(
                "the meta loss has no gradient w.r.t. leaf {i} (shape {:?}): it must be a variable \
                 that the weights depend on",
                leaf.dims()
            ),
        }
    }
    Ok((
        MetaGrad {
            grads: out,
            meta_loss: scalar(&meta)?,
            train_losses,
            weights: w,
        },
        step.anchors,
    ))
}

/// The outer backward: its gradients are not differentiated again, so it runs detached
/// ([`crate::backprop::backward`]) when the worker is running.
fn backward_scalar(t: &Tensor, what: &str) -> Result<GradStore> {
    if t.elem_count() != 1 {
        bail!("the {what} must be a scalar, got shape {:?}", t.dims())
    }
    crate::backprop::backward(t)
}

fn scalar(t: &Tensor) -> Result<f64> {
    crate::readout::vec_f64(t)?[..]
        .first()
        .copied()
        .ok_or_else(|| candle_core::Error::Msg("empty loss".into()))
}

/// The result of [`unrolled_meta_gradient`].
#[derive(Debug, Clone)]
pub struct UnrolledGrad {
    /// `dL(θ'_k)/dθ` for every tracked entry of `θ` that the meta loss depends on, detached.
    pub grads: BTreeMap<String, Tensor>,
    /// `dL/d leaf` for each extra leaf, detached.
    pub leaf_grads: Vec<Tensor>,
    /// `L(θ'_k)`.
    pub meta_loss: f64,
    /// The inner losses `ℓ_j(θ'_j)`, `j = 0..k`.
    pub inner_losses: Vec<f64>,
}

/// `k` virtual SGD steps `θ'_{j+1} = θ'_j − α ∇ℓ_j(θ'_j)` from `θ'_0 = θ`, then the gradient of
/// `L(θ'_k)` w.r.t. `θ` through all steps (MLNT's meta-gradient), plus w.r.t. any extra `leaves`
/// the inner or meta losses depend on.
///
/// * `inner_loss(j, θ'_j)`: the scalar loss of step `j` (e.g. CE on synthetic noisy labels).
/// * `meta_loss(θ'_k)`: the scalar meta loss (e.g. MLNT's consistency KL to the teacher).
/// * `first_order`: drop the second-order terms (`dθ'_{j+1}/dθ'_j = I`; the result is
///   `∇L(θ'_k)`), as first-order MAML. Cheaper, and usable without `CANDLE_GRAD_DO_NOT_DETACH`.
///
/// The exact version costs more than `k` plain steps: the backward of step `j` also runs through
/// the graphs of steps `0..j` back to `θ`, so the cost grows as `k²` (MLNT uses `k = 1`).
pub fn unrolled_meta_gradient<FI, FM>(
    theta: &ParamSet,
    k: usize,
    lr: f64,
    first_order: bool,
    mut inner_loss: FI,
    meta_loss: FM,
    leaves: &[&Tensor],
) -> Result<UnrolledGrad>
where
    FI: FnMut(usize, &ParamSet) -> Result<Tensor>,
    FM: FnOnce(&ParamSet) -> Result<Tensor>,
{
    if !first_order {
        require_second_order()?;
    }
    let (anchored, anchors) = anchor(theta)?;
    let mut p = anchored;
    let mut inner_losses = Vec::with_capacity(k);
    for j in 0..k {
        let step = virtual_step(&p, lr, first_order, |q| inner_loss(j, q))?;
        inner_losses.push(scalar(&step.loss)?);
        p = step.params;
    }
    let meta = meta_loss(&p)?;
    let g = backward_scalar(&meta, "meta loss")?;
    let mut grads = BTreeMap::new();
    for (name, d) in &anchors {
        if let Some(t) = g.get(d.as_tensor()) {
            grads.insert(name.clone(), t.detach());
        }
    }
    if grads.is_empty() && !anchors.is_empty() {
        bail!("the meta loss does not depend on any parameter: was θ detached?")
    }
    let mut leaf_grads = Vec::with_capacity(leaves.len());
    for (i, leaf) in leaves.iter().enumerate() {
        match g.get(leaf) {
            Some(t) => leaf_grads.push(t.detach()),
            None => bail!(
                "the meta loss has no gradient w.r.t. leaf {i} (shape {:?})",
                leaf.dims()
            ),
        }
    }
    Ok(UnrolledGrad {
        grads,
        leaf_grads,
        meta_loss: scalar(&meta)?,
        inner_losses,
    })
}

/// A [`GradStore`] for `store`'s variables from gradients by name (e.g.
/// [`UnrolledGrad::grads`]), for [`Optimizer::step`](crate::optim::Optimizer::step). Gradients
/// are converted to each variable's dtype; names not in the store are an error.
pub fn to_grad_store(store: &ParamStore, grads: &BTreeMap<String, Tensor>) -> Result<GradStore> {
    let mut gs = GradStore::default();
    for (name, g) in grads {
        let v = store.var(name)?;
        gs.insert(v.as_tensor(), g.detach().to_dtype(v.dtype())?);
    }
    Ok(gs)
}

/// A [`GradStore`] holding `grads[i]` for `leaves[i]` (e.g. [`MetaGrad::grads`] for the VNet's
/// variables), for [`Optimizer::step`](crate::optim::Optimizer::step) on the leaves' store.
pub fn leaf_grad_store(leaves: &[&Tensor], grads: &[Tensor]) -> Result<GradStore> {
    if leaves.len() != grads.len() {
        bail!("{} leaves but {} gradients", leaves.len(), grads.len())
    }
    let mut gs = GradStore::default();
    for (l, g) in leaves.iter().zip(grads) {
        if l.dims() != g.dims() {
            bail!(
                "gradient shape {:?} does not match leaf {:?}",
                g.dims(),
                l.dims()
            )
        }
        gs.insert(l, g.detach());
    }
    Ok(gs)
}

/// Forward context of a virtual step: batch statistics, running statistics untouched.
fn virtual_ctx(rng: Option<&mut StdRng>) -> Ctx<'_> {
    Ctx {
        train: true,
        update_stats: false,
        rng,
    }
}

/// [`meta_gradient`] for a [`Classifier`] with cross-entropy: `ℓ_i` is the per-example CE of
/// `model` on `(x, y)` and `L` the mean CE on `(x_meta, y_meta)`, both in training mode without
/// running-statistics updates (dropout masks from `rng`, if the model has dropout).
#[allow(clippy::too_many_arguments)]
pub fn classifier_meta_gradient<FW>(
    model: &dyn Classifier,
    theta: &ParamSet,
    batch: (&Tensor, &Tensor),
    meta_batch: (&Tensor, &Tensor),
    weights: FW,
    leaves: &[&Tensor],
    lr: f64,
    rng: Option<&mut StdRng>,
) -> Result<MetaGrad>
where
    FW: FnOnce(&Tensor) -> Result<Tensor>,
{
    let (g, _) = classifier_meta_gradient_impl(
        model, theta, batch, meta_batch, weights, leaves, lr, rng, false,
    )?;
    Ok(g)
}

/// The forward at `θ` on the training batch that a meta-gradient started from, kept for the
/// real step on the same batch (see [`l2rw_grad_reusing`]): L2RW's real step (Ren et al.,
/// Alg. 1, line 12) is at the same `θ` and batch, so its forward is this one.
pub struct InnerForward {
    logits: Tensor,
    anchors: BTreeMap<String, Var>,
}

impl InnerForward {
    /// The logits at `θ` (training mode), attached to the forward's graph.
    pub fn logits(&self) -> &Tensor {
        &self.logits
    }

    /// `∂loss/∂θ` for a `loss` built from [`Self::logits`] (first order, detached), as a
    /// [`GradStore`] for `store`'s variables ([`Optimizer::step`](crate::optim::Optimizer::step)).
    /// `θ` may be any tensors: the gradients are read at the forward's zero-valued anchors and
    /// matched to `store` by name.
    pub fn grads(&self, store: &ParamStore, loss: &Tensor) -> Result<GradStore> {
        let g = backward_scalar(loss, "real-step loss")?;
        let by_name: BTreeMap<String, Tensor> = self
            .anchors
            .iter()
            .filter_map(|(name, d)| g.get(d.as_tensor()).map(|t| (name.clone(), t.clone())))
            .collect();
        to_grad_store(store, &by_name)
    }
}

/// [`classifier_meta_gradient`]; with `real_step`, the inner forward updates BatchNorm's running
/// statistics (it is then the real step's forward) and is returned.
#[allow(clippy::too_many_arguments)]
fn classifier_meta_gradient_impl<FW>(
    model: &dyn Classifier,
    theta: &ParamSet,
    (x, y): (&Tensor, &Tensor),
    (x_meta, y_meta): (&Tensor, &Tensor),
    weights: FW,
    leaves: &[&Tensor],
    lr: f64,
    rng: Option<&mut StdRng>,
    real_step: bool,
) -> Result<(MetaGrad, Option<InnerForward>)>
where
    FW: FnOnce(&Tensor) -> Result<Tensor>,
{
    // Both forwards draw dropout masks from the same generator, one after the other.
    let rng = std::cell::RefCell::new(rng);
    let logits = std::cell::RefCell::new(None);
    let (g, anchors) = meta_gradient_impl(
        theta,
        |p| {
            let mut r = rng.borrow_mut();
            let mut ctx = virtual_ctx(r.as_deref_mut());
            ctx.update_stats = real_step;
            let z = model.forward(p, x, &mut ctx)?;
            let l = loss::per_example_ce(&z, y)?;
            if real_step {
                *logits.borrow_mut() = Some(z);
            }
            Ok(l)
        },
        weights,
        |p| {
            let mut r = rng.borrow_mut();
            let z = model.forward(p, x_meta, &mut virtual_ctx(r.as_deref_mut()))?;
            loss::cross_entropy(&z, y_meta, loss::Reduction::Mean)
        },
        leaves,
        lr,
    )?;
    let inner = logits
        .into_inner()
        .map(|logits| InnerForward { logits, anchors });
    Ok((g, inner))
}

/// Learning to Reweight (Ren et al. 2018, Alg. 1, lines 3–10): `ε = 0` per example, one virtual
/// step of `α`, and `dL_meta/dε`. Returns the [`MetaGrad`] whose `grads[0]` is `dL/dε`, `(n,)`;
/// turn it into example weights with [`l2rw_weights`].
pub fn l2rw_grad(
    model: &dyn Classifier,
    theta: &ParamSet,
    batch: (&Tensor, &Tensor),
    meta_batch: (&Tensor, &Tensor),
    lr: f64,
    rng: Option<&mut StdRng>,
) -> Result<MetaGrad> {
    Ok(l2rw_grad_impl(model, theta, batch, meta_batch, lr, rng, false)?.0)
}

/// [`l2rw_grad`] whose inner forward doubles as the real step's (one forward fewer per training
/// step, about a quarter of a plain step): that forward updates BatchNorm's running statistics,
/// as the real step's would, and is returned. Take the real step from it and do not run another
/// forward on this batch, or the running statistics are updated twice:
///
/// ```no_run
/// # use candle_core::Tensor;
/// # use zoo_models::{loss, meta, optim::{Optimizer, Sgd}, Classifier};
/// # fn step(model: &dyn Classifier, x: &Tensor, y: &Tensor, xm: &Tensor, ym: &Tensor,
/// #         opt: &mut Sgd) -> candle_core::Result<()> {
/// let theta = model.store().params();
/// let (meta, inner) = meta::l2rw_grad_reusing(model, &theta, (x, y), (xm, ym), 0.1, None)?;
/// let w = meta::l2rw_weights(&meta.grads[0])?;
/// let real = loss::weighted_ce(inner.logits(), y, &w, loss::Reduction::Sum)?;
/// opt.step(model.store(), &inner.grads(model.store(), &real)?, 0.1)?;
/// # Ok(()) }
/// ```
pub fn l2rw_grad_reusing(
    model: &dyn Classifier,
    theta: &ParamSet,
    batch: (&Tensor, &Tensor),
    meta_batch: (&Tensor, &Tensor),
    lr: f64,
    rng: Option<&mut StdRng>,
) -> Result<(MetaGrad, InnerForward)> {
    let (g, inner) = l2rw_grad_impl(model, theta, batch, meta_batch, lr, rng, true)?;
    let inner = inner.ok_or_else(|| candle_core::Error::Msg("inner forward not kept".into()))?;
    Ok((g, inner))
}

fn l2rw_grad_impl(
    model: &dyn Classifier,
    theta: &ParamSet,
    batch: (&Tensor, &Tensor),
    meta_batch: (&Tensor, &Tensor),
    lr: f64,
    rng: Option<&mut StdRng>,
    real_step: bool,
) -> Result<(MetaGrad, Option<InnerForward>)> {
    let n = batch.1.dims1()?;
    let dtype = theta
        .iter()
        .next()
        .map(|(_, t)| t.dtype())
        .unwrap_or(DType::F32);
    let eps = Var::zeros(n, dtype, batch.0.device())?;
    classifier_meta_gradient_impl(
        model,
        theta,
        batch,
        meta_batch,
        |_| Ok(eps.as_tensor().clone()),
        &[eps.as_tensor()],
        lr,
        rng,
        real_step,
    )
}

/// Meta-Weight-Net (Shu et al. 2019, Alg. 1, steps 5–6): weights `w_i = V_φ(ℓ_i)` from the
/// library's [`VNet`](crate::models::VNet) with its current parameters, one virtual step of `α`,
/// and `dL_meta/dφ` for every VNet variable (returned in `grads`, in the order of
/// `vnet.store().vars()`, i.e. by name). For the VNet's optimiser:
/// `leaf_grad_store(&vars, &out.grads)` with `vars` the tensors of `vnet.store().vars()`
/// ([`leaf_grad_store`]).
pub fn mwn_grad(
    model: &dyn Classifier,
    theta: &ParamSet,
    vnet: &crate::models::VNet,
    batch: (&Tensor, &Tensor),
    meta_batch: (&Tensor, &Tensor),
    lr: f64,
    rng: Option<&mut StdRng>,
) -> Result<MetaGrad> {
    let phi = vnet.store().params();
    let leaves: Vec<&Tensor> = vnet
        .store()
        .vars()
        .values()
        .map(|v| v.as_tensor())
        .collect();
    classifier_meta_gradient(
        model,
        theta,
        batch,
        meta_batch,
        |l| {
            let l = l.to_dtype(
                phi.iter()
                    .next()
                    .map(|(_, t)| t.dtype())
                    .unwrap_or(l.dtype()),
            )?;
            vnet.forward(&phi, &l.unsqueeze(1)?)?.squeeze(1)
        },
        &leaves,
        lr,
        rng,
    )
}

/// L2RW's example weights from `dL/dε` (Ren et al. 2018, Alg. 1, lines 11–12):
/// `w̃ = max(−dL/dε, 0)`, `w = w̃ / Σ w̃` (all zeros when `Σ w̃ = 0`, as in the official code).
/// The real step then minimises `Σ_i w_i ℓ_i` (a sum: the weights are already normalised).
pub fn l2rw_weights(grad_eps: &Tensor) -> Result<Tensor> {
    let w = grad_eps.neg()?.relu()?.detach();
    let s = scalar(&w.sum_all()?)?;
    if s > 0.0 {
        w / s
    } else {
        Ok(w)
    }
}
