//! Meta-Weight-Net's step, as a [`StepRule`] of the reweighting core's
//! [`ReweightTask`](crate::reweight::ReweightTask) training loop.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{bail, ensure, Context, Result};
use candle_core::{DType, Tensor};
use rand::rngs::StdRng;
use zoo_models::loss::{self, Reduction};
use zoo_models::meta::{classifier_meta_gradient, leaf_grad_store, InnerForward, MetaGrad};
use zoo_models::models::VNet;
use zoo_models::optim::{Adam, Optimizer, Sgd};
use zoo_models::readout;
use zoo_models::{Classifier, ParamSet};

use super::config::{MwnSettings, Normalise, VnetOptim};
use crate::reweight::{check_meta_step, RuleStep, StepRule};
use crate::runner::Metrics;

/// Per-example weights `w` for the mean-reduced loss `(1/n) Σ_i w_i ℓ_i` from VNet outputs
/// `v = V_φ(ℓ)`, `(n,)`: under [`Normalise::Sum`] `w = n·v/Σv` (so the loss is `Σ v ℓ / Σ v`;
/// `w = v` when `Σ v = 0`, as the authors' script), under [`Normalise::Mean`] `w = v`.
/// Differentiable in `v` (the meta step differentiates through it).
pub fn normalise_vnet_weights(v: &Tensor, normalise: Normalise) -> Result<Tensor> {
    let n = v.dims1().context("VNet weights must have shape (n,)")?;
    Ok(match normalise {
        Normalise::Mean => v.clone(),
        Normalise::Sum => {
            let s = v.sum_all()?;
            let sv = readout::scalar_f64(&s)?;
            if sv == 0.0 {
                v.clone()
            } else {
                (v.broadcast_div(&s)? * n as f64)?
            }
        }
    })
}

/// `V_φ(ℓ)` for per-example losses `(n,)` with VNet parameters `phi` (any dtype `phi` holds),
/// normalised by [`normalise_vnet_weights`].
pub fn vnet_weights(
    vnet: &VNet,
    phi: &ParamSet,
    losses: &Tensor,
    normalise: Normalise,
) -> Result<Tensor> {
    let dtype = phi
        .iter()
        .next()
        .map(|(_, t)| t.dtype())
        .unwrap_or(losses.dtype());
    let v = vnet
        .forward(phi, &losses.to_dtype(dtype)?.unsqueeze(1)?)?
        .squeeze(1)?;
    normalise_vnet_weights(&v, normalise)
}

/// The weighting side of an MWN meta step: the VNet, the parameters `φ` it runs with, the
/// tensors of `φ` to differentiate, and how its outputs are normalised.
#[derive(Clone, Copy)]
pub struct Weighting<'a> {
    /// The weighting network.
    pub vnet: &'a VNet,
    /// Its parameters.
    pub phi: &'a ParamSet,
    /// The tensors of `phi` to differentiate (e.g. the VNet's variables).
    pub leaves: &'a [&'a Tensor],
    /// Normalisation of the weights.
    pub normalise: Normalise,
}

/// MWN's meta-gradient (Shu et al. 2019, Alg. 1, steps 5–6) with the chosen normalisation: the
/// virtual step `θ' = θ − α ∇θ (1/n) Σ w_i ℓ_i(θ)` with `w = vnet_weights(V_φ(ℓ(θ)))` (the VNet
/// sees the detached losses, as the authors' `vnet(cost_v.data)`), the mean CE of the meta batch
/// at `θ'`, and `dL_meta/d leaf` for `leaves` (the tensors of `phi` to differentiate, e.g. the
/// VNet's variables). The core's [`classifier_meta_gradient`] does the double backward;
/// `zoo_models::meta::mwn_grad` is the [`Normalise::Mean`] case with the store's parameters.
pub fn mwn_meta_gradient(
    model: &dyn Classifier,
    theta: &ParamSet,
    w: &Weighting<'_>,
    batch: (&Tensor, &Tensor),
    meta_batch: (&Tensor, &Tensor),
    lr: f64,
    rng: Option<&mut StdRng>,
) -> Result<MetaGrad> {
    let Weighting {
        vnet,
        phi,
        leaves,
        normalise,
    } = *w;
    Ok(classifier_meta_gradient(
        model,
        theta,
        batch,
        meta_batch,
        |l| {
            vnet_weights(vnet, phi, l, normalise)
                .map_err(|e| candle_core::Error::Msg(format!("{e:#}")))
        },
        leaves,
        lr,
        rng,
    )?)
}

enum VnetOpt {
    Sgd(Sgd),
    Adam(Adam),
}

impl VnetOpt {
    fn get(&mut self) -> &mut dyn Optimizer {
        match self {
            VnetOpt::Sgd(o) => o,
            VnetOpt::Adam(o) => o,
        }
    }
    fn get_ref(&self) -> &dyn Optimizer {
        match self {
            VnetOpt::Sgd(o) => o,
            VnetOpt::Adam(o) => o,
        }
    }
}

/// Meta-Weight-Net as a [`StepRule`]: every `meta_every`-th step a meta step updates the VNet
/// (virtual step with the current VNet's weights, meta loss on a clean meta batch, one
/// optimiser step on `φ`); every step the real loss is `(1/n) Σ w_i ℓ_i` with `w` from the
/// (updated) VNet on the real forward's detached losses, as the authors' `w_new = vnet(cost_v)`
/// under `no_grad`.
pub struct MwnRule {
    vnet: Arc<VNet>,
    opt: VnetOpt,
    lr: f64,
    normalise: Normalise,
    meta_every: usize,
    meta_loss_sum: f64,
    meta_steps: usize,
    raw_sum: f64,
    raw_n: usize,
}

impl MwnRule {
    /// A rule training `vnet` (shared: the caller keeps a handle to plot the learned function).
    pub fn new(vnet: Arc<VNet>, s: &MwnSettings) -> Result<Self> {
        let (opt, lr) = match s.optim {
            VnetOptim::Sgd {
                lr,
                momentum,
                nesterov,
                weight_decay,
            } => (
                VnetOpt::Sgd(Sgd::new(momentum, nesterov, weight_decay)?),
                lr,
            ),
            VnetOptim::Adam { lr, weight_decay } => (VnetOpt::Adam(Adam::new(weight_decay)), lr),
        };
        ensure!(s.meta_every >= 1, "meta_every must be at least 1");
        Ok(Self {
            vnet,
            opt,
            lr,
            normalise: s.normalise,
            meta_every: s.meta_every,
            meta_loss_sum: 0.0,
            meta_steps: 0,
            raw_sum: 0.0,
            raw_n: 0,
        })
    }
}

impl StepRule for MwnRule {
    fn prepare(&mut self, mut s: RuleStep<'_>) -> Result<Option<InnerForward>> {
        if !s.step.is_multiple_of(self.meta_every as u64) {
            return Ok(None);
        }
        let (xm, ym) = s.draw_meta()?;
        let phi = self.vnet.store().params();
        let vars = self.vnet.store().vars();
        let leaves: Vec<&Tensor> = vars.values().map(|v| v.as_tensor()).collect();
        let w = Weighting {
            vnet: &self.vnet,
            phi: &phi,
            leaves: &leaves,
            normalise: self.normalise,
        };
        let batch = (s.images, s.labels);
        let g = mwn_meta_gradient(s.model, s.params, &w, batch, (&xm, &ym), s.lr, Some(s.rng))?;
        check_meta_step(s.monitor, "MWN", g.meta_loss, &g.grads)?;
        let gs = leaf_grad_store(&leaves, &g.grads)?;
        let lr = self.lr;
        let opt = self.opt.get();
        opt.step(self.vnet.store(), &gs, lr)?;
        if let Some(k) = opt.last_skipped().first() {
            bail!("VNet parameter {k} received no meta-gradient");
        }
        self.meta_loss_sum += g.meta_loss;
        self.meta_steps += 1;
        Ok(None)
    }

    fn loss(&mut self, logits: &Tensor, labels: &Tensor) -> Result<(Tensor, Option<Tensor>)> {
        let ell = loss::per_example_ce(logits, labels)?;
        let phi = self.vnet.store().params();
        let v = self
            .vnet
            .forward(&phi, &ell.detach().to_dtype(DType::F32)?.unsqueeze(1)?)?
            .squeeze(1)?
            .detach();
        self.raw_sum += readout::scalar_f64(&v.sum_all()?)?;
        self.raw_n += v.elem_count();
        let w = normalise_vnet_weights(&v, self.normalise)?.to_dtype(ell.dtype())?;
        let l = loss::weighted_ce(logits, labels, &w, Reduction::Mean)?;
        let s = readout::scalar_f64(&v.sum_all()?)?;
        let diag = if s > 0.0 { (v / s)? } else { v };
        Ok((l, Some(diag)))
    }

    fn take_metrics(&mut self, _round_steps: usize) -> Metrics {
        let mut m = Metrics::new();
        if self.meta_steps > 0 {
            m.insert("meta_loss", self.meta_loss_sum / self.meta_steps as f64);
            m.insert("meta_steps", self.meta_steps as f64);
        }
        if self.raw_n > 0 {
            m.insert("vnet_mean_output", self.raw_sum / self.raw_n as f64);
        }
        self.meta_loss_sum = 0.0;
        self.meta_steps = 0;
        self.raw_sum = 0.0;
        self.raw_n = 0;
        m
    }

    fn state(&self) -> Result<BTreeMap<String, Tensor>> {
        let mut out = BTreeMap::new();
        for (k, v) in self.vnet.store().state_dict()? {
            out.insert(format!("vnet.{k}"), v);
        }
        for (k, v) in self.opt.get_ref().state() {
            out.insert(format!("vnet_optim.{k}"), v);
        }
        Ok(out)
    }

    fn restore(&mut self, state: &BTreeMap<String, Tensor>) -> Result<()> {
        let (mut net, mut opt) = (BTreeMap::new(), BTreeMap::new());
        for (k, v) in state {
            if let Some(k) = k.strip_prefix("vnet.") {
                net.insert(k.to_string(), v.clone());
            } else if let Some(k) = k.strip_prefix("vnet_optim.") {
                opt.insert(k.to_string(), v.clone());
            } else {
                bail!("unexpected tensor {k:?} in an MWN checkpoint");
            }
        }
        self.vnet.store().load_state_dict(&net)?;
        self.opt.get().load_state(&opt)?;
        Ok(())
    }
}

/// The learned weighting function: `V_φ(ℓ)` at `points` losses evenly spaced on `[0, max]`.
pub fn weighting_function(vnet: &VNet, max: f64, points: usize) -> Result<Vec<(f64, f64)>> {
    ensure!(
        points >= 2 && max > 0.0,
        "need at least 2 points on a positive range"
    );
    let xs: Vec<f32> = (0..points)
        .map(|i| (max * i as f64 / (points - 1) as f64) as f32)
        .collect();
    let dev = vnet
        .store()
        .vars()
        .values()
        .next()
        .map(|v| v.device().clone())
        .context("VNet has no parameters")?;
    let l = Tensor::from_vec(xs.clone(), (points, 1), &dev)?;
    let w: Vec<f32> = vnet
        .forward(&vnet.store().params(), &l)?
        .squeeze(1)?
        .to_vec1()?;
    Ok(xs
        .iter()
        .zip(&w)
        .map(|(&x, &y)| (x as f64, y as f64))
        .collect())
}
