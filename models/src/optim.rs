//! Optimisers with PyTorch's exact update rules, and learning-rate schedules.
//!
//! An optimiser updates the *trainable* variables of a [`ParamStore`] in place (`Var::set` with a
//! detached tensor) from a [`GradStore`]. The learning rate is passed to every
//! [`Optimizer::step`], so a schedule is just a function of the epoch or step
//! ([`LrSchedule::lr_at`]).
//!
//! A variable without a gradient is skipped (as PyTorch does for `p.grad is None`) but never
//! silently: its name is recorded in [`Optimizer::last_skipped`] and logged at `debug` level, so
//! a test or the runner can assert that every parameter received a gradient (candle drops
//! gradients silently through ops without a backward pass).

use crate::params::ParamStore;
use candle_core::{backprop::GradStore, bail, Device, Result, Tensor, Var};
use std::collections::BTreeMap;

/// An optimiser over a [`ParamStore`]'s trainable variables.
pub trait Optimizer {
    /// One update of every trainable variable that has a gradient in `grads`, with learning rate
    /// `lr`. Variables without a gradient are skipped and listed in [`last_skipped`](Self::last_skipped).
    fn step(&mut self, store: &ParamStore, grads: &GradStore, lr: f64) -> Result<()>;

    /// Names of the trainable variables the last [`step`](Self::step) skipped for lack of a gradient.
    fn last_skipped(&self) -> &[String];

    /// The optimiser's state as named tensors (PyTorch's names, `"<kind>.<param name>"`, e.g.
    /// `"momentum_buffer.fc.weight"`, `"exp_avg.fc.weight"`, `"step.fc.weight"`), for checkpoints.
    /// The tensors may share storage with buffers that later steps update in place: serialise
    /// them at once or `copy()` them to keep a snapshot.
    fn state(&self) -> BTreeMap<String, Tensor>;

    /// Restores a state written by [`state`](Self::state). Unknown keys are an error.
    fn load_state(&mut self, state: &BTreeMap<String, Tensor>) -> Result<()>;
}

fn check_lr(lr: f64) -> Result<()> {
    if !(lr.is_finite() && lr >= 0.0) {
        bail!("learning rate must be finite and >= 0, got {lr}")
    }
    Ok(())
}

/// The trainable variables with their (detached) gradients, plus the names without one.
type WithGrads = (Vec<(String, Var, Tensor)>, Vec<String>);

fn collect(store: &ParamStore, grads: &GradStore) -> Result<WithGrads> {
    let mut with = Vec::new();
    let mut skipped = Vec::new();
    for (name, var) in store.trainable_vars() {
        match grads.get(var.as_tensor()) {
            Some(g) => {
                if g.dims() != var.dims() {
                    bail!(
                        "gradient of `{name}` has shape {:?}, the variable {:?}",
                        g.dims(),
                        var.dims()
                    )
                }
                let g = g.detach().to_dtype(var.dtype())?;
                with.push((name, var, g))
            }
            None => skipped.push(name),
        }
    }
    if !skipped.is_empty() {
        tracing::debug!(
            ?skipped,
            "optimiser step: variables without a gradient were not updated"
        );
    }
    Ok((with, skipped))
}

fn split_key(key: &str) -> Result<(&str, &str)> {
    match key.split_once('.') {
        Some(kv) => Ok(kv),
        None => bail!("optimiser state key `{key}` is not `<kind>.<param>`"),
    }
}

fn scalar_state(v: f64) -> Result<Tensor> {
    Tensor::new(v, &Device::Cpu)
}

fn read_scalar(t: &Tensor) -> Result<f64> {
    crate::readout::to_host_f64(t)?
        .flatten_all()?
        .to_vec1::<f64>()?
        .first()
        .copied()
        .ok_or_else(|| candle_core::Error::Msg("empty scalar in optimiser state".into()))
}

/// Stochastic gradient descent, PyTorch's `torch.optim.SGD` rule:
///
/// ```text
/// g ← ∇θ + weight_decay·θ                     (coupled weight decay)
/// b ← g                     on the first step
/// b ← μ·b + (1 − dampening)·g   afterwards
/// g ← g + μ·b  if nesterov, else g ← b          (only when μ ≠ 0)
/// θ ← θ − lr·g
/// ```
#[derive(Debug, Clone, Default)]
pub struct Sgd {
    /// Momentum μ (0: plain SGD).
    pub momentum: f64,
    /// Dampening of the gradient in the momentum buffer (PyTorch's default 0).
    pub dampening: f64,
    /// Nesterov momentum (requires `momentum > 0` and `dampening == 0`, as in PyTorch).
    pub nesterov: bool,
    /// L2 penalty added to the gradient.
    pub weight_decay: f64,
    buffers: BTreeMap<String, Tensor>,
    skipped: Vec<String>,
}

impl Sgd {
    /// SGD with momentum, optional Nesterov, coupled weight decay and no dampening.
    pub fn new(momentum: f64, nesterov: bool, weight_decay: f64) -> Result<Self> {
        let s = Self {
            momentum,
            nesterov,
            weight_decay,
            ..Default::default()
        };
        s.validate()?;
        Ok(s)
    }

    fn validate(&self) -> Result<()> {
        if !(self.momentum >= 0.0 && self.momentum.is_finite()) {
            bail!("SGD momentum must be >= 0, got {}", self.momentum)
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            bail!("SGD weight decay must be >= 0, got {}", self.weight_decay)
        }
        if self.nesterov && (self.momentum <= 0.0 || self.dampening != 0.0) {
            bail!("Nesterov momentum requires momentum > 0 and zero dampening")
        }
        Ok(())
    }
}

impl Sgd {
    /// The same update as the tensor-op path of [`Optimizer::step`], bit for bit, written into
    /// the variable and the momentum buffer without temporaries (CPU fast path).
    fn step_in_place(&mut self, name: String, theta: &Tensor, g: &Tensor, lr: f64) -> Result<()> {
        use crate::ops::sgd::{update_momentum, update_param, SgdStep};
        let h = SgdStep {
            lr,
            momentum: self.momentum,
            dampening: self.dampening,
            weight_decay: self.weight_decay,
            nesterov: self.nesterov,
        };
        if self.momentum == 0.0 {
            return update_param(theta, g, None, h);
        }
        let buf = match self.buffers.get(&name) {
            Some(b) => {
                update_momentum(b, g, theta, h)?;
                b.clone()
            }
            // PyTorch's first step: the buffer is the (decayed) gradient itself, an owned copy
            // because later steps write into it.
            None => {
                let b = if self.weight_decay != 0.0 {
                    (g + (theta * self.weight_decay)?)?
                } else {
                    g.copy()?
                };
                self.buffers.insert(name, b.clone());
                b
            }
        };
        update_param(theta, g, Some(&buf), h)
    }
}

impl Optimizer for Sgd {
    fn step(&mut self, store: &ParamStore, grads: &GradStore, lr: f64) -> Result<()> {
        check_lr(lr)?;
        self.validate()?;
        let (with, skipped) = collect(store, grads)?;
        for (name, var, g) in with {
            let theta = var.as_detached_tensor();
            if crate::ops::sgd::applicable(&theta, &g, self.buffers.get(&name)) {
                self.step_in_place(name, &theta, &g, lr)?;
                continue;
            }
            let mut g = if self.weight_decay != 0.0 {
                (g + (&theta * self.weight_decay)?)?
            } else {
                g
            };
            if self.momentum != 0.0 {
                let buf = match self.buffers.get(&name) {
                    None => g.clone(),
                    Some(b) => ((b * self.momentum)? + (&g * (1.0 - self.dampening))?)?,
                };
                g = if self.nesterov {
                    (g + (&buf * self.momentum)?)?
                } else {
                    buf.clone()
                };
                self.buffers.insert(name, buf);
            }
            var.set(&(theta - (g * lr)?)?)?;
        }
        self.skipped = skipped;
        Ok(())
    }

    fn last_skipped(&self) -> &[String] {
        &self.skipped
    }

    fn state(&self) -> BTreeMap<String, Tensor> {
        // Shares storage with the live buffers, which later CPU steps update in place: callers
        // serialise it at once (checkpoints) or `copy()` it to keep a snapshot.
        self.buffers
            .iter()
            .map(|(n, t)| (format!("momentum_buffer.{n}"), t.clone()))
            .collect()
    }

    fn load_state(&mut self, state: &BTreeMap<String, Tensor>) -> Result<()> {
        let mut buffers = BTreeMap::new();
        for (k, t) in state {
            match split_key(k)? {
                ("momentum_buffer", n) => {
                    // An owned copy: later steps write into it.
                    buffers.insert(n.to_string(), t.detach().copy()?);
                }
                _ => bail!("unexpected key `{k}` in SGD state"),
            }
        }
        self.buffers = buffers;
        Ok(())
    }
}

/// Adam (Kingma & Ba 2015) with PyTorch's rules. With `decoupled = false` (`torch.optim.Adam`),
/// weight decay is added to the gradient; with `decoupled = true` (`torch.optim.AdamW`,
/// Loshchilov & Hutter 2019) the parameter is first shrunk by `θ ← θ·(1 − lr·wd)`. Then
///
/// ```text
/// m ← β1·m + (1 − β1)·g,   v ← β2·v + (1 − β2)·g²,   t ← t + 1
/// θ ← θ − lr/(1 − β1^t) · m / (√v / √(1 − β2^t) + eps)
/// ```
///
/// `t` is counted per parameter, so a parameter skipped for lack of gradient keeps its own count.
#[derive(Debug, Clone)]
pub struct Adam {
    /// β1 (default 0.9).
    pub beta1: f64,
    /// β2 (default 0.999).
    pub beta2: f64,
    /// ε in the denominator (default 1e-8).
    pub eps: f64,
    /// Weight decay (L2 in Adam, decoupled in AdamW).
    pub weight_decay: f64,
    /// AdamW's decoupled weight decay.
    pub decoupled: bool,
    exp_avg: BTreeMap<String, Tensor>,
    exp_avg_sq: BTreeMap<String, Tensor>,
    steps: BTreeMap<String, u64>,
    skipped: Vec<String>,
}

impl Adam {
    /// `torch.optim.Adam(betas=(0.9, 0.999), eps=1e-8, weight_decay)`.
    pub fn new(weight_decay: f64) -> Self {
        Self::with_config(0.9, 0.999, 1e-8, weight_decay, false)
    }

    /// Adam configured as `torch.optim.AdamW(betas=(0.9, 0.999), eps=1e-8, weight_decay)`.
    pub fn adamw(weight_decay: f64) -> Self {
        Self::with_config(0.9, 0.999, 1e-8, weight_decay, true)
    }

    /// Every hyper-parameter explicit.
    pub fn with_config(
        beta1: f64,
        beta2: f64,
        eps: f64,
        weight_decay: f64,
        decoupled: bool,
    ) -> Self {
        Self {
            beta1,
            beta2,
            eps,
            weight_decay,
            decoupled,
            exp_avg: BTreeMap::new(),
            exp_avg_sq: BTreeMap::new(),
            steps: BTreeMap::new(),
            skipped: Vec::new(),
        }
    }

    fn validate(&self) -> Result<()> {
        if !(0.0..1.0).contains(&self.beta1) || !(0.0..1.0).contains(&self.beta2) {
            bail!(
                "Adam betas must be in [0, 1), got ({}, {})",
                self.beta1,
                self.beta2
            )
        }
        let eps_ok = self.eps > 0.0 && self.eps.is_finite();
        let wd_ok = self.weight_decay >= 0.0 && self.weight_decay.is_finite();
        if !(eps_ok && wd_ok) {
            bail!("Adam needs eps > 0 and weight decay >= 0")
        }
        Ok(())
    }
}

/// `torch.optim.AdamW`: [`Adam`] with decoupled weight decay (`θ ← θ·(1 − lr·wd)` before the
/// Adam update).
#[derive(Debug, Clone)]
pub struct AdamW(pub Adam);

impl AdamW {
    /// `torch.optim.AdamW(betas=(0.9, 0.999), eps=1e-8, weight_decay)` (PyTorch's default wd is 0.01).
    pub fn new(weight_decay: f64) -> Self {
        Self(Adam::adamw(weight_decay))
    }
}

impl Optimizer for AdamW {
    fn step(&mut self, store: &ParamStore, grads: &GradStore, lr: f64) -> Result<()> {
        if !self.0.decoupled {
            bail!("AdamW wraps an Adam with decoupled = false")
        }
        self.0.step(store, grads, lr)
    }
    fn last_skipped(&self) -> &[String] {
        self.0.last_skipped()
    }
    fn state(&self) -> BTreeMap<String, Tensor> {
        self.0.state()
    }
    fn load_state(&mut self, state: &BTreeMap<String, Tensor>) -> Result<()> {
        self.0.load_state(state)
    }
}

impl Optimizer for Adam {
    fn step(&mut self, store: &ParamStore, grads: &GradStore, lr: f64) -> Result<()> {
        check_lr(lr)?;
        self.validate()?;
        let (with, skipped) = collect(store, grads)?;
        for (name, var, g) in with {
            let mut theta = var.as_detached_tensor();
            let g = if self.weight_decay != 0.0 && !self.decoupled {
                (g + (&theta * self.weight_decay)?)?
            } else {
                g
            };
            if self.weight_decay != 0.0 && self.decoupled {
                theta = (theta * (1.0 - lr * self.weight_decay))?;
            }
            let m = match self.exp_avg.get(&name) {
                Some(m) => ((m * self.beta1)? + (&g * (1.0 - self.beta1))?)?,
                None => (&g * (1.0 - self.beta1))?,
            };
            let g2 = g.sqr()?;
            let v = match self.exp_avg_sq.get(&name) {
                Some(v) => ((v * self.beta2)? + (&g2 * (1.0 - self.beta2))?)?,
                None => (&g2 * (1.0 - self.beta2))?,
            };
            let t = self.steps.get(&name).copied().unwrap_or(0) + 1;
            let bc1 = 1.0 - self.beta1.powi(t as i32);
            let bc2 = 1.0 - self.beta2.powi(t as i32);
            let denom = ((v.sqrt()? / bc2.sqrt())? + self.eps)?;
            let update = ((&m / denom)? * (lr / bc1))?;
            var.set(&(theta - update)?)?;
            self.exp_avg.insert(name.clone(), m);
            self.exp_avg_sq.insert(name.clone(), v);
            self.steps.insert(name, t);
        }
        self.skipped = skipped;
        Ok(())
    }

    fn last_skipped(&self) -> &[String] {
        &self.skipped
    }

    fn state(&self) -> BTreeMap<String, Tensor> {
        let mut out = BTreeMap::new();
        for (n, t) in &self.exp_avg {
            out.insert(format!("exp_avg.{n}"), t.clone());
        }
        for (n, t) in &self.exp_avg_sq {
            out.insert(format!("exp_avg_sq.{n}"), t.clone());
        }
        for (n, &s) in &self.steps {
            if let Ok(t) = scalar_state(s as f64) {
                out.insert(format!("step.{n}"), t);
            }
        }
        out
    }

    fn load_state(&mut self, state: &BTreeMap<String, Tensor>) -> Result<()> {
        let (mut m, mut v, mut s) = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
        for (k, t) in state {
            match split_key(k)? {
                ("exp_avg", n) => {
                    m.insert(n.to_string(), t.detach());
                }
                ("exp_avg_sq", n) => {
                    v.insert(n.to_string(), t.detach());
                }
                ("step", n) => {
                    let x = read_scalar(t)?;
                    if !(x >= 0.0 && x.fract() == 0.0) {
                        bail!("Adam state `{k}` is not a step count: {x}")
                    }
                    s.insert(n.to_string(), x as u64);
                }
                _ => bail!("unexpected key `{k}` in Adam state"),
            }
        }
        if m.keys().ne(v.keys()) || m.keys().ne(s.keys()) {
            bail!("Adam state is inconsistent: exp_avg, exp_avg_sq and step name different parameters")
        }
        self.exp_avg = m;
        self.exp_avg_sq = v;
        self.steps = s;
        Ok(())
    }
}

/// A learning-rate schedule, evaluated at an epoch or step index `t` (starting at 0).
#[derive(Debug, Clone, PartialEq)]
pub enum LrSchedule {
    /// `lr`.
    Constant(f64),
    /// `base · gamma^k`, k = number of milestones `<= t` (PyTorch's `MultiStepLR`).
    MultiStep {
        /// Initial learning rate.
        base: f64,
        /// Indices at which the rate is multiplied by `gamma`.
        milestones: Vec<usize>,
        /// Decay factor.
        gamma: f64,
    },
    /// `min + (base − min)·(1 + cos(π·t/total))/2` for `t <= total`, then `min`
    /// (PyTorch's `CosineAnnealingLR` with `T_max = total`, `eta_min = min`).
    Cosine {
        /// Initial learning rate.
        base: f64,
        /// Length of the half cosine.
        total: usize,
        /// Final learning rate.
        min: f64,
    },
    /// Linear warm-up: `then.lr_at(t) · (t + 1)/steps` for `t < steps`, then `then.lr_at(t)`.
    /// `then` is indexed by the same global `t` (its milestones are not shifted).
    /// With epochs and `steps = 5` this is the CIFAR long-tail recipe (LDAM, Cao et al. 2019).
    Warmup {
        /// Length of the warm-up.
        steps: usize,
        /// The schedule warmed into.
        then: Box<LrSchedule>,
    },
}

impl LrSchedule {
    /// The learning rate at epoch or step `t`.
    pub fn lr_at(&self, t: usize) -> f64 {
        match self {
            LrSchedule::Constant(lr) => *lr,
            LrSchedule::MultiStep {
                base,
                milestones,
                gamma,
            } => {
                let k = milestones.iter().filter(|&&m| m <= t).count();
                base * gamma.powi(k as i32)
            }
            LrSchedule::Cosine { base, total, min } => {
                if *total == 0 || t >= *total {
                    *min
                } else {
                    let c = (std::f64::consts::PI * t as f64 / *total as f64).cos();
                    min + (base - min) * (1.0 + c) / 2.0
                }
            }
            LrSchedule::Warmup { steps, then } => {
                let lr = then.lr_at(t);
                if t < *steps {
                    lr * (t + 1) as f64 / *steps as f64
                } else {
                    lr
                }
            }
        }
    }

    /// Rejects negative or non-finite rates, decreasing milestones and `gamma <= 0`.
    pub fn validate(&self) -> Result<()> {
        let ok = |x: f64| x.is_finite() && x >= 0.0;
        match self {
            LrSchedule::Constant(lr) if !ok(*lr) => bail!("learning rate must be >= 0, got {lr}"),
            LrSchedule::MultiStep {
                base,
                milestones,
                gamma,
            } => {
                let gamma_ok = gamma.is_finite() && *gamma > 0.0;
                if !(ok(*base) && gamma_ok) {
                    bail!("multistep schedule needs base >= 0 and gamma > 0 (base {base}, gamma {gamma})")
                }
                if milestones.windows(2).any(|w| w[0] > w[1]) {
                    bail!("multistep milestones must be increasing, got {milestones:?}")
                }
            }
            LrSchedule::Cosine { base, min, .. } if !ok(*base) || !ok(*min) => {
                bail!("cosine schedule needs base, min >= 0 (base {base}, min {min})")
            }
            LrSchedule::Warmup { then, .. } => then.validate()?,
            _ => {}
        }
        Ok(())
    }
}
