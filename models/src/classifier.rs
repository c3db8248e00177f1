//! The [`Classifier`] trait every zoo model implements, and the forward context [`Ctx`].
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use rand::{rngs::StdRng, SeedableRng};
//! use zoo_models::prelude::*;
//!
//! let mut rng = StdRng::seed_from_u64(0);
//! let net = ResNetCifar::new(ResNetCifarConfig::new(32, 10), &mut rng, &Device::Cpu)?;
//! let x = Tensor::zeros((2, 3, 32, 32), DType::F32, &Device::Cpu)?;
//! // A real training forward: batch statistics, running statistics updated.
//! let logits = net.forward(&net.store().params(), &x, &mut Ctx::train(&mut rng))?;
//! assert_eq!(logits.dims(), &[2, 10]);
//! // The same network evaluated at virtual parameters θ' = θ − 0.01·θ; the variables and the
//! // running statistics are left alone.
//! let virt = net.store().params().map(|_, t| t.affine(0.99, 0.0))?;
//! let feats = net.features(&virt, &x, &mut Ctx::virtual_train(&mut rng))?;
//! assert_eq!(feats.dims(), &[2, net.feature_dim()]);
//! # Ok::<(), candle_core::Error>(())
//! ```

use crate::params::{ParamSet, ParamStore};
use candle_core::{Result, Tensor};
use rand::rngs::StdRng;

/// Per-call forward settings.
///
/// * `train`: BatchNorm uses batch statistics and dropout is active.
/// * `update_stats`: BatchNorm running statistics are updated (only meaningful with `train`).
///   Set it on real optimisation steps only; virtual (meta) forwards leave it `false` so the
///   running statistics are those of the real trajectory.
/// * `rng`: source of dropout masks. Required when `train` is set and the model has dropout.
pub struct Ctx<'a> {
    /// Training-mode forward (batch statistics, dropout).
    pub train: bool,
    /// Update BatchNorm running statistics in this forward.
    pub update_stats: bool,
    /// Seeded generator for dropout masks.
    pub rng: Option<&'a mut StdRng>,
}

impl<'a> Ctx<'a> {
    /// Evaluation: running statistics, no dropout, nothing updated.
    pub fn eval() -> Ctx<'static> {
        Ctx {
            train: false,
            update_stats: false,
            rng: None,
        }
    }

    /// A real training step: batch statistics, running statistics updated, dropout from `rng`.
    pub fn train(rng: &'a mut StdRng) -> Self {
        Ctx {
            train: true,
            update_stats: true,
            rng: Some(rng),
        }
    }

    /// A virtual (meta) training forward: batch statistics, running statistics untouched.
    pub fn virtual_train(rng: &'a mut StdRng) -> Self {
        Ctx {
            train: true,
            update_stats: false,
            rng: Some(rng),
        }
    }

    /// Training mode without dropout randomness (for models without dropout), running
    /// statistics updated only if `update_stats`.
    pub fn train_no_rng(update_stats: bool) -> Ctx<'static> {
        Ctx {
            train: true,
            update_stats,
            rng: None,
        }
    }

    /// Reborrows this context for a nested call.
    pub fn reborrow(&mut self) -> Ctx<'_> {
        Ctx {
            train: self.train,
            update_stats: self.update_stats,
            rng: self.rng.as_deref_mut(),
        }
    }
}

/// An image (or vector) classifier with functional parameters.
///
/// `forward(p, x) = logits(p, features(p, x))`: the penultimate features and the final linear
/// layer are separate so decoupled training (cRT, τ-norm, LWS, NCM) can reuse the backbone.
/// Every method takes the parameters explicitly, so the same model runs with its own variables
/// (`store().params()`) or with a virtual set `θ − α∇θL`.
pub trait Classifier: Send + Sync {
    /// The model's variables and buffers.
    fn store(&self) -> &ParamStore;

    /// Penultimate features, `(batch, feature_dim)`.
    fn features(&self, p: &ParamSet, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor>;

    /// Names of the final linear layer's weight and (optional) bias, e.g. `("fc.weight", Some("fc.bias"))`.
    fn head(&self) -> (&str, Option<&str>);

    /// The final linear layer applied to features: `(batch, num_classes)`.
    fn logits(&self, p: &ParamSet, feats: &Tensor) -> Result<Tensor> {
        let (w, b) = self.head();
        let b = match b {
            Some(b) => Some(p.get(b)?),
            None => None,
        };
        crate::ops::linear(feats, p.get(w)?, b)
    }

    /// Logits for input `x`.
    fn forward(&self, p: &ParamSet, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        let f = self.features(p, x, ctx)?;
        self.logits(p, &f)
    }

    /// Number of output classes.
    fn num_classes(&self) -> usize;

    /// Width of the penultimate features.
    fn feature_dim(&self) -> usize;

    /// Constraints to apply after each optimiser step (e.g. the MLP's max-norm). Default: none.
    fn apply_constraints(&self) -> Result<()> {
        Ok(())
    }

    /// Re-initialises the final linear layer with PyTorch's `nn.Linear` default (as cRT does when
    /// it retrains the classifier from scratch), drawing from `rng`.
    fn reset_head(&self, rng: &mut rand::rngs::StdRng) -> Result<()> {
        let (w, b) = self.head();
        let wv = self.store().var(w)?;
        let fan_in = wv.dims().get(1).copied().unwrap_or(1);
        let new_w =
            crate::init::Init::PytorchDefault.tensor(wv.dims(), wv.dtype(), wv.device(), rng)?;
        wv.set(&new_w)?;
        if let Some(b) = b {
            let bv = self.store().var(b)?;
            let new_b = crate::init::Init::bias_default(fan_in).tensor(
                bv.dims(),
                bv.dtype(),
                bv.device(),
                rng,
            )?;
            bv.set(&new_b)?;
        }
        Ok(())
    }
}
