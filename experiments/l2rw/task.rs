//! The L2RW example weights and the step-based training task shared by the MNIST and CIFAR
//! experiments (one [`EpochTask`] "epoch" is a round of `OptConfig::round_steps` steps).
//!
//! [`ReweightTask`] is also the training loop of the `mwn` binary: a [`StepRule`] replaces the
//! built-in [`Method`]s with another loss or a meta-learned weighting (Meta-Weight-Net), on the
//! same data stream, meta batches, schedule, evaluation and checkpoints.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use rand::rngs::StdRng;
use rand::seq::index::sample;
use rand_distr::{Distribution, StandardNormal};
use zoo_data::augment::Augment;
use zoo_data::{make_batch, ImageDataset, Loader, Normalize};
use zoo_models::loss::{self, Reduction};
use zoo_models::meta::{l2rw_grad, l2rw_grad_reusing, InnerForward};
use zoo_models::metrics::Predictions;
use zoo_models::optim::{LrSchedule, Optimizer, Sgd};
use zoo_models::{Classifier, Ctx, ParamSet};

use super::config::{AllZero, Method, OptConfig};
use crate::runner::{EpochTask, Metrics, StepMonitor, TaskState};

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
    let g: Vec<f64> = grad_eps.to_dtype(DType::F64)?.to_vec1()?;
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

/// Inverse-frequency class weights `N / (C·n_c)` (0 for empty classes), mean weight 1 per example.
pub fn proportional_class_weights(counts: &[usize]) -> Vec<f64> {
    let n: usize = counts.iter().sum();
    let c = counts.iter().filter(|&&k| k > 0).count().max(1);
    counts
        .iter()
        .map(|&k| {
            if k == 0 {
                0.0
            } else {
                n as f64 / (c * k) as f64
            }
        })
        .collect()
}

/// What a [`StepRule`] sees before the real step of one training batch.
pub struct RuleStep<'s> {
    /// The classifier being trained.
    pub model: &'s dyn Classifier,
    /// Its current parameters `θ`.
    pub params: &'s ParamSet,
    /// The batch's normalised (and augmented) images.
    pub images: &'s Tensor,
    /// The batch's labels as trained on.
    pub labels: &'s Tensor,
    /// The learning rate of this step (also a virtual step size).
    pub lr: f64,
    /// Global step (0-based), for rules that act every k-th step.
    pub step: u64,
}

/// A training rule that replaces [`ReweightTask`]'s built-in methods: an optional update before
/// the real step (e.g. Meta-Weight-Net's meta step) and the real step's loss. Install with
/// [`ReweightTask::with_rule`].
pub trait StepRule {
    /// Called before the real step's forward pass. `meta_batch` draws a clean meta batch
    /// (`OptConfig::meta_batch` examples of the meta set, or all of it).
    fn prepare(
        &mut self,
        _step: RuleStep<'_>,
        _meta_batch: &mut dyn FnMut(&mut StdRng) -> Result<(Tensor, Tensor)>,
        _rng: &mut StdRng,
        _monitor: &StepMonitor,
    ) -> Result<()> {
        Ok(())
    }

    /// The real step's loss from its logits (training mode, running statistics updated), and
    /// optionally the example weights it used, normalised to sum 1 (for the flagged/other
    /// weight diagnostics).
    fn loss(&mut self, logits: &Tensor, labels: &Tensor) -> Result<(Tensor, Option<Tensor>)>;

    /// Diagnostics accumulated since the last call (logged with the round's training metrics).
    fn take_metrics(&mut self) -> Metrics {
        Metrics::new()
    }

    /// State to checkpoint (e.g. a weighting network and its optimiser), by name.
    fn state(&self) -> Result<BTreeMap<String, Tensor>> {
        Ok(BTreeMap::new())
    }

    /// Restores what [`StepRule::state`] returned.
    fn restore(&mut self, state: &BTreeMap<String, Tensor>) -> Result<()> {
        if let Some(k) = state.keys().next() {
            bail!("unexpected rule state {k:?} in a checkpoint");
        }
        Ok(())
    }
}

/// A clean meta batch: `k` rows of `meta` drawn without replacement (all rows when `k` is `None`
/// or at least the set's size).
fn draw_meta_batch(
    meta: &ImageDataset,
    k: Option<usize>,
    norm: &Normalize,
    device: &Device,
    rng: &mut StdRng,
) -> Result<(Tensor, Tensor)> {
    let m = meta.len();
    let idx: Vec<usize> = match k {
        Some(k) if k < m => {
            let mut v = sample(rng, m, k).into_vec();
            v.sort_unstable();
            v
        }
        _ => (0..m).collect(),
    };
    let b = make_batch(meta, &idx, norm, None, device)?;
    Ok((b.images, b.labels))
}

/// Training data of a task: the (possibly corrupted) training set, a per-row flag for the rows of
/// interest (minority class or corrupted label, for weight diagnostics), the clean meta set and
/// the test set.
pub struct TaskData<'a> {
    /// Training set (labels as trained on).
    pub train: &'a ImageDataset,
    /// `flagged[i]`: row `i` is a minority-class or corrupted-label example.
    pub flagged: &'a [bool],
    /// Clean meta set.
    pub meta: &'a ImageDataset,
    /// Test set.
    pub test: &'a ImageDataset,
    /// Per-channel normalisation.
    pub norm: Normalize,
    /// Training augmentation.
    pub augment: Augment,
}

/// Trains a classifier with one [`Method`] for `opt.steps` steps.
pub struct ReweightTask<'a> {
    model: Box<dyn Classifier + 'a>,
    method: Method,
    guard: AllZero,
    opt: OptConfig,
    sgd: Sgd,
    schedule: LrSchedule,
    data: TaskData<'a>,
    sampler_loader: Loader<'a>,
    test: Loader<'a>,
    class_weights: Vec<f32>,
    /// Position in the training stream: loader epoch and batches consumed in it.
    data_epoch: usize,
    data_pos: usize,
    order: Vec<usize>,
    device: Device,
    rule: Option<Box<dyn StepRule + 'a>>,
}

impl<'a> ReweightTask<'a> {
    /// A task for `method` on `data`; `model` must be freshly initialised.
    pub fn new(
        model: Box<dyn Classifier + 'a>,
        method: Method,
        guard: AllZero,
        opt: &OptConfig,
        data: TaskData<'a>,
        seed: u64,
    ) -> Result<Self> {
        let device = model.store().device().clone();
        let train = data.train;
        let nc = train.num_classes;
        let sampler: Box<dyn zoo_data::sampler::Sampler + 'a> = match method {
            Method::Resample => Box::new(zoo_data::sampler::ClassBalanced::new(&train.labels, nc)?),
            _ => Box::new(zoo_data::sampler::InstanceBalanced { n: train.len() }),
        };
        if train.len() < opt.batch_size {
            bail!(
                "{} training images, fewer than one batch of {}",
                train.len(),
                opt.batch_size
            );
        }
        let sampler_loader = Loader::new(
            train,
            opt.batch_size,
            data.norm.clone(),
            Augment::None,
            sampler,
            seed,
            &device,
        )?;
        let test = Loader::new(
            data.test,
            500,
            data.norm.clone(),
            Augment::None,
            Box::new(zoo_data::sampler::Sequential { n: data.test.len() }),
            0,
            &device,
        )?;
        let class_weights = proportional_class_weights(&train.class_counts())
            .iter()
            .map(|&w| w as f32)
            .collect();
        let schedule = LrSchedule::MultiStep {
            base: opt.lr,
            milestones: opt.milestones.clone(),
            gamma: opt.gamma,
        };
        schedule.validate()?;
        let mut t = Self {
            model,
            method,
            guard,
            opt: opt.clone(),
            sgd: Sgd::new(opt.momentum, false, opt.weight_decay)?,
            schedule,
            data,
            sampler_loader,
            test,
            class_weights,
            data_epoch: 0,
            data_pos: 0,
            order: Vec::new(),
            device,
            rule: None,
        };
        t.order = t.sampler_loader.epoch(0).order().to_vec();
        Ok(t)
    }

    /// Trains with `rule` instead of the built-in weighting: the task must have been created with
    /// [`Method::Plain`] (uniform sampling, no built-in weights).
    pub fn with_rule(mut self, rule: Box<dyn StepRule + 'a>) -> Result<Self> {
        if self.method != Method::Plain {
            bail!(
                "a step rule replaces the built-in method: create the task with plain, not {}",
                self.method
            );
        }
        self.rule = Some(rule);
        Ok(self)
    }

    /// The trained model.
    pub fn model(&self) -> &dyn Classifier {
        self.model.as_ref()
    }

    /// Next batch's rows (full batches only; a new sampler epoch when the current one runs out).
    fn next_rows(&mut self) -> Vec<usize> {
        let b = self.opt.batch_size;
        if self.data_pos + b > self.order.len() {
            self.data_epoch += 1;
            self.data_pos = 0;
            self.order = self.sampler_loader.epoch(self.data_epoch).order().to_vec();
        }
        let rows = self.order[self.data_pos..self.data_pos + b].to_vec();
        self.data_pos += b;
        rows
    }

    fn meta_batch(&self, rng: &mut StdRng) -> Result<(Tensor, Tensor)> {
        draw_meta_batch(
            self.data.meta,
            self.opt.meta_batch,
            &self.data.norm,
            &self.device,
            rng,
        )
    }
}

impl EpochTask for ReweightTask<'_> {
    fn train_epoch(
        &mut self,
        _epoch: usize,
        rng: &mut StdRng,
        monitor: &mut StepMonitor,
    ) -> Result<Metrics> {
        let steps = self.opt.round_steps();
        let (mut loss_sum, mut errors, mut seen) = (0.0, 0usize, 0usize);
        let (mut w_flag, mut n_flag, mut w_rest, mut n_rest, mut zero_steps) =
            (0.0, 0usize, 0.0, 0usize, 0usize);
        // Effective sample size (Σw)²/Σw² as a fraction of the batch, and the fraction of
        // examples with a positive weight, summed over weighted steps.
        let (mut ess_sum, mut pos_sum, mut weighted_steps) = (0.0, 0.0, 0usize);
        let mut meta_loss_sum = 0.0;
        let t0 = Instant::now();
        for _ in 0..steps {
            let step = monitor.global_step();
            let lr = self.schedule.lr_at(step as usize);
            let rows = self.next_rows();
            let aug = match self.data.augment {
                Augment::None => None,
                a => Some(rows.iter().map(|_| a.sample(rng)).collect::<Vec<_>>()),
            };
            let batch = make_batch(
                self.data.train,
                &rows,
                &self.data.norm,
                aug.as_deref(),
                &self.device,
            )?;
            let n = rows.len();
            let params = self.model.store().params();
            let warming_up = (step as usize) < self.opt.warmup_steps;
            // L2RW's meta-step forward at θ on this batch, reused as the real step's forward.
            let mut inner: Option<InnerForward> = None;
            let weights: Option<Tensor> = match self.method {
                Method::L2rw if warming_up => None,
                Method::Plain | Method::Resample => None,
                Method::Proportional => {
                    // Inverse class frequency, normalised over the batch (as L2RW's weights are):
                    // unnormalised, one minority example at 0.995 carries 100× a plain example's
                    // gradient and SGD with momentum diverges.
                    let y = batch.labels.to_vec1::<u32>()?;
                    let w: Vec<f32> = y.iter().map(|&c| self.class_weights[c as usize]).collect();
                    let s: f32 = w.iter().sum::<f32>().max(f32::MIN_POSITIVE);
                    let w: Vec<f32> = w.iter().map(|x| x / s).collect();
                    Some(Tensor::from_vec(w, n, &self.device)?)
                }
                Method::Random => {
                    let w: Vec<f64> = (0..n)
                        .map(|_| StandardNormal.sample(rng))
                        .map(|x: f64| x.abs())
                        .collect();
                    let s: f64 = w.iter().sum::<f64>().max(f64::MIN_POSITIVE);
                    let w: Vec<f32> = w.iter().map(|x| (x / s) as f32).collect();
                    Some(Tensor::from_vec(w, n, &self.device)?)
                }
                Method::L2rw => {
                    let meta = self.meta_batch(rng)?;
                    let (g, fwd) = l2rw_grad_reusing(
                        self.model.as_ref(),
                        &params,
                        (&batch.images, &batch.labels),
                        (&meta.0, &meta.1),
                        lr,
                        Some(&mut *rng),
                    )?;
                    inner = Some(fwd);
                    // A diverging run shows up here first: fail as the runner's NaN guard does,
                    // with the step number, before the weights are formed.
                    monitor.check("L2RW meta loss", g.meta_loss)?;
                    let norm2 = g.grads[0]
                        .sqr()?
                        .sum_all()?
                        .to_dtype(DType::F64)?
                        .to_scalar::<f64>()?;
                    monitor.check("L2RW meta-gradient ∂L/∂ε", norm2)?;
                    let (w, all_zero) = normalised_weights(&g.grads[0], self.guard)?;
                    zero_steps += usize::from(all_zero);
                    meta_loss_sum += g.meta_loss;
                    Some(w)
                }
            };
            let rule = if warming_up { None } else { self.rule.as_mut() };
            if let Some(rule) = rule {
                let (meta_set, k, norm, dev) = (
                    self.data.meta,
                    self.opt.meta_batch,
                    &self.data.norm,
                    &self.device,
                );
                let mut draw = |r: &mut StdRng| draw_meta_batch(meta_set, k, norm, dev, r);
                let rule_step = RuleStep {
                    model: self.model.as_ref(),
                    params: &params,
                    images: &batch.images,
                    labels: &batch.labels,
                    lr,
                    step,
                };
                rule.prepare(rule_step, &mut draw, rng, &*monitor)?;
            }
            let rule = if warming_up { None } else { self.rule.as_mut() };
            // (A rule needs Method::Plain, so it never meets an L2RW inner forward.)
            let logits = match &inner {
                Some(f) => f.logits().clone(),
                None => self
                    .model
                    .forward(&params, &batch.images, &mut Ctx::train(rng))?,
            };
            let (loss, weights) = match (rule, &weights) {
                (Some(rule), _) => rule.loss(&logits, &batch.labels)?,
                (None, None) => (
                    loss::cross_entropy(&logits, &batch.labels, Reduction::Mean)?,
                    None,
                ),
                (None, Some(w)) => (
                    loss::weighted_ce(
                        &logits,
                        &batch.labels,
                        &w.to_dtype(logits.dtype())?,
                        Reduction::Sum,
                    )?,
                    weights.clone(),
                ),
            };
            if let Some(w) = &weights {
                // Diagnostics: mean weight of flagged vs other rows, relative to uniform (1/n).
                let wv: Vec<f32> = w.to_dtype(DType::F32)?.to_vec1()?;
                let (s1, s2) = wv.iter().fold((0.0, 0.0), |(a, b), &x| {
                    (a + x as f64, b + (x as f64) * (x as f64))
                });
                if s2 > 0.0 {
                    ess_sum += s1 * s1 / s2 / n as f64;
                    pos_sum += wv.iter().filter(|&&x| x > 0.0).count() as f64 / n as f64;
                    weighted_steps += 1;
                }
                for (&r, &wi) in rows.iter().zip(&wv) {
                    let rel = wi as f64 * n as f64;
                    if self.data.flagged[r] {
                        w_flag += rel;
                        n_flag += 1;
                    } else {
                        w_rest += rel;
                        n_rest += 1;
                    }
                }
            }
            let l = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            monitor.step(l)?;
            let grads = match &inner {
                Some(f) => f.grads(self.model.store(), &loss)?,
                None => zoo_models::backprop::backward(&loss)?,
            };
            self.sgd.step(self.model.store(), &grads, lr)?;
            loss_sum += l;
            errors += zoo_models::metrics::error_count(&logits.detach(), &batch.labels)?;
            seen += n;
        }
        let secs = t0.elapsed().as_secs_f64();
        let mut m = Metrics::new()
            .with("loss", loss_sum / steps as f64)
            .with("error", errors as f64 / seen.max(1) as f64)
            .with("step_ms", 1e3 * secs / steps as f64);
        if n_flag + n_rest > 0 {
            m.insert(
                "weight_flagged",
                if n_flag > 0 {
                    w_flag / n_flag as f64
                } else {
                    f64::NAN
                },
            );
            m.insert(
                "weight_other",
                if n_rest > 0 {
                    w_rest / n_rest as f64
                } else {
                    f64::NAN
                },
            );
            m.insert("flagged_seen", n_flag as f64);
        }
        if weighted_steps > 0 {
            m.insert("weight_ess", ess_sum / weighted_steps as f64);
            m.insert("weight_positive", pos_sum / weighted_steps as f64);
        }
        if self.method == Method::L2rw {
            m.insert("all_zero_steps", zero_steps as f64);
            m.insert("meta_loss", meta_loss_sum / steps as f64);
        }
        if let Some(rule) = self.rule.as_mut() {
            for (k, v) in rule.take_metrics().iter() {
                m.insert(k, v);
            }
        }
        // A flagged row never seen this round leaves a NaN, which the runner would reject.
        if m.get("weight_flagged").is_some_and(f64::is_nan) {
            m.insert("weight_flagged", 0.0);
        }
        Ok(m)
    }

    fn evaluate(&mut self, _epoch: usize) -> Result<Metrics> {
        let params = self.model.store().params();
        let mut p = Predictions::new(self.model.num_classes());
        for b in self.test.epoch(0) {
            let b = b?;
            let z = self.model.forward(&params, &b.images, &mut Ctx::eval())?;
            p.push(&z, &b.labels)?;
        }
        let mut m = Metrics::new()
            .with("test_error", p.error_rate())
            .with("test_nll", p.nll());
        for (c, a) in p.per_class_accuracy().iter().enumerate() {
            if let Some(a) = a {
                m.insert(format!("test_error_class{c}"), 1.0 - a);
            }
        }
        Ok(m)
    }

    fn state(&self) -> Result<TaskState> {
        let mut tensors = HashMap::new();
        for (k, v) in self.model.store().state_dict()? {
            tensors.insert(format!("model.{k}"), v);
        }
        for (k, v) in self.sgd.state() {
            tensors.insert(format!("optim.{k}"), v);
        }
        if let Some(rule) = &self.rule {
            for (k, v) in rule.state()? {
                tensors.insert(format!("rule.{k}"), v);
            }
        }
        Ok(TaskState {
            tensors,
            json: serde_json::json!({ "data_epoch": self.data_epoch, "data_pos": self.data_pos }),
        })
    }

    fn restore(&mut self, state: TaskState) -> Result<()> {
        let (mut model, mut optim, mut rule) = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
        for (k, v) in state.tensors {
            let v = v.to_device(&self.device)?;
            if let Some(k) = k.strip_prefix("model.") {
                model.insert(k.to_string(), v);
            } else if let Some(k) = k.strip_prefix("optim.") {
                optim.insert(k.to_string(), v);
            } else if let Some(k) = k.strip_prefix("rule.") {
                rule.insert(k.to_string(), v);
            } else {
                bail!("unexpected tensor {k:?} in an l2rw checkpoint");
            }
        }
        self.model.store().load_state_dict(&model)?;
        self.sgd.load_state(&optim)?;
        match self.rule.as_mut() {
            Some(r) => r.restore(&rule)?,
            None if !rule.is_empty() => {
                bail!("checkpoint holds step-rule state but the task has no rule")
            }
            None => {}
        }
        let get = |k: &str| {
            state
                .json
                .get(k)
                .and_then(|v| v.as_u64())
                .map(|v| v as usize)
        };
        let (Some(e), Some(p)) = (get("data_epoch"), get("data_pos")) else {
            bail!("l2rw checkpoint lacks the data position");
        };
        self.data_epoch = e;
        self.data_pos = p;
        self.order = self.sampler_loader.epoch(e).order().to_vec();
        Ok(())
    }

    fn steps_in_epoch(&self, _epoch: usize) -> Option<u64> {
        Some(self.opt.round_steps() as u64)
    }

    fn learning_rate(&self, epoch: usize) -> Option<f64> {
        Some(self.schedule.lr_at(epoch * self.opt.round_steps()))
    }

    fn device(&self) -> Device {
        self.device.clone()
    }
}

/// Draw `k` distinct rows of `0..n` (sorted), for random subsets.
pub fn random_subset(n: usize, k: usize, rng: &mut StdRng) -> Vec<usize> {
    let mut v = sample(rng, n, k.min(n)).into_vec();
    v.sort_unstable();
    v
}
