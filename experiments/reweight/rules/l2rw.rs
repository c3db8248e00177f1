//! Learning to Reweight (Ren et al. 2018) as a step rule: each step takes one virtual SGD step on
//! `Σ ε_i ℓ_i` from `ε = 0`, measures a clean meta batch's loss after it, and weights example `i`
//! by `max(−∂L_meta/∂ε_i, 0)` normalised to sum 1. The meta-gradient is the audited
//! [`zoo_models::meta::l2rw_grad`].

use anyhow::{bail, Context, Result};
use candle_core::Tensor;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use zoo_models::loss::{self, Reduction};
use zoo_models::meta::{l2rw_grad, l2rw_grad_reusing, InnerForward};
use zoo_models::{Classifier, ParamSet};

use crate::reweight::rule::{check_meta_step, RuleStep, StepRule};
use crate::runner::Metrics;

/// What the real step does when every L2RW weight of a batch is zero (no example's gradient
/// points towards lower meta loss).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum AllZero {
    /// Keep the zero weights, as the official code does (`w / (Σw + [Σw = 0])`): the batch
    /// contributes a zero gradient; SGD momentum still moves the weights.
    ZeroStep,
    /// Fall back to uniform weights `1/n` (a plain step).
    Uniform,
}

/// L2RW weights of one batch.
#[derive(Debug, Clone)]
pub struct ExampleWeights {
    /// `(n,)`, non-negative, summing to 1 (or all zero under [`AllZero::ZeroStep`]).
    pub weights: Tensor,
    /// Whether `max(−∂L/∂ε, 0)` was zero for every example (the guard applied).
    pub all_zero: bool,
    /// Meta loss at `θ'` (after the virtual step).
    pub meta_loss: f64,
}

/// Ren et al.'s weights from `∂L_meta/∂ε` (Alg. 1, lines 11–12): `w̃ = max(−∂L/∂ε, 0)`,
/// `w = w̃ / Σ w̃`. When `Σ w̃ = 0` the official code keeps `w = 0` (it divides by
/// `Σ w̃ + [Σ w̃ = 0]`); [`AllZero::Uniform`] uses `1/n` instead. Returns `(w, all_zero)`.
pub fn normalised_weights(grad_eps: &Tensor, guard: AllZero) -> Result<(Tensor, bool)> {
    let n = grad_eps.dims1().context("∂L/∂ε must have shape (n,)")?;
    let g: Vec<f64> = zoo_models::readout::vec_f64(grad_eps)?;
    if let Some(bad) = g.iter().find(|x| !x.is_finite()) {
        bail!("non-finite meta-gradient ∂L/∂ε = {bad}");
    }
    let w: Vec<f64> = g.iter().map(|&x| (-x).max(0.0)).collect();
    let s: f64 = w.iter().sum();
    let (w, zero) = if s > 0.0 {
        (w.iter().map(|x| x / s).collect(), false)
    } else {
        match guard {
            AllZero::ZeroStep => (vec![0.0; n], true),
            AllZero::Uniform => (vec![1.0 / n.max(1) as f64; n], true),
        }
    };
    let t = Tensor::from_vec(w, n, grad_eps.device())?.to_dtype(grad_eps.dtype())?;
    Ok((t, zero))
}

/// One L2RW weighting (Alg. 1, lines 3–12): `ε = 0`, a virtual SGD step of size `alpha` on
/// `Σ ε_i ℓ_i`, the meta loss on `(x_meta, y_meta)` at `θ'`, and [`normalised_weights`] of
/// `∂L_meta/∂ε`. Uses the audited [`zoo_models::meta::l2rw_grad`].
pub fn l2rw_example_weights(
    model: &dyn Classifier,
    theta: &ParamSet,
    batch: (&Tensor, &Tensor),
    meta: (&Tensor, &Tensor),
    alpha: f64,
    guard: AllZero,
    rng: Option<&mut StdRng>,
) -> Result<ExampleWeights> {
    let g = l2rw_grad(model, theta, batch, meta, alpha, rng)?;
    let (weights, all_zero) = normalised_weights(&g.grads[0], guard)?;
    Ok(ExampleWeights {
        weights,
        all_zero,
        meta_loss: g.meta_loss,
    })
}

/// L2RW as a [`StepRule`]: the meta step runs the forward pass at `θ` that the real step reuses
/// (`l2rw_grad_reusing`), and the real loss is `Σ w_i ℓ_i`.
pub struct L2rw {
    guard: AllZero,
    weights: Option<Tensor>,
    zero_steps: usize,
    meta_loss_sum: f64,
}

impl L2rw {
    /// The rule with `guard` for all-zero batches.
    pub fn new(guard: AllZero) -> Self {
        Self {
            guard,
            weights: None,
            zero_steps: 0,
            meta_loss_sum: 0.0,
        }
    }
}

impl StepRule for L2rw {
    fn prepare(&mut self, mut s: RuleStep<'_>) -> Result<Option<InnerForward>> {
        let meta = s.draw_meta()?;
        let (g, fwd) = l2rw_grad_reusing(
            s.model,
            s.params,
            (s.images, s.labels),
            (&meta.0, &meta.1),
            s.lr,
            Some(&mut *s.rng),
        )?;
        check_meta_step(s.monitor, "L2RW", g.meta_loss, &g.grads[..1])?;
        let (w, all_zero) = normalised_weights(&g.grads[0], self.guard)?;
        self.zero_steps += usize::from(all_zero);
        self.meta_loss_sum += g.meta_loss;
        self.weights = Some(w);
        Ok(Some(fwd))
    }

    fn loss(&mut self, logits: &Tensor, labels: &Tensor) -> Result<(Tensor, Option<Tensor>)> {
        let w = self.weights.take().context("L2RW: loss before prepare")?;
        let l = loss::weighted_ce(logits, labels, &w.to_dtype(logits.dtype())?, Reduction::Sum)?;
        Ok((l, Some(w)))
    }

    fn take_metrics(&mut self, round_steps: usize) -> Metrics {
        let m = Metrics::new()
            .with("all_zero_steps", self.zero_steps as f64)
            .with("meta_loss", self.meta_loss_sum / round_steps as f64);
        self.zero_steps = 0;
        self.meta_loss_sum = 0.0;
        m
    }
}
