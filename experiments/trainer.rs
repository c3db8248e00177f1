//! [`ClassifierTrainer`]: the standard "train a classifier with SGD on a loader, evaluate on a
//! test set" task for the [`Runner`](crate::runner::Runner). Binaries that only change the loss
//! (distillation, confidence penalty, label smoothing…) or the sampler (Kang's decoupling,
//! bagging) use it instead of writing an [`EpochTask`].
//!
//! ```ignore
//! let train = Loader::new(&train_ds, 128, norm.clone(), Augment::CifarCropFlip,
//!                         Box::new(InstanceBalanced { n: train_ds.len() }), seed, &dev)?;
//! let test = Loader::new(&test_ds, 500, norm, Augment::None, Box::new(Sequential { n: test_ds.len() }), 0, &dev)?;
//! let mut task = ClassifierTrainer::new(Box::new(model), Box::new(Sgd::new(0.9, true, 5e-4)?),
//!                                       schedule, train, test)?
//!     .with_loss(|logits, batch, _| loss::cross_entropy(logits, &batch.labels, Reduction::Mean));
//! let run = Runner::new(&exp, cfg.epochs).run_seed(seed, &mut task)?;
//! ```

use std::collections::HashMap;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use zoo_data::{Batch, Loader};
use zoo_models::metrics::{Predictions, Reliability};
use zoo_models::optim::{LrSchedule, Optimizer};
use zoo_models::{Classifier, Ctx};

use crate::runner::{EpochTask, Metrics, StepMonitor, TaskState};

/// Where a training step is in the run, passed to the loss closure (for annealed losses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepInfo {
    /// 0-based epoch.
    pub epoch: usize,
    /// Global optimisation step (0-based, counted over the whole run).
    pub step: u64,
}

/// Whether the learning-rate schedule is indexed by epoch or by global step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScheduleUnit {
    /// `schedule.lr_at(epoch)` (most CIFAR recipes).
    #[default]
    Epoch,
    /// `schedule.lr_at(global_step)` (iteration-based recipes, warm-up in steps).
    Step,
}

/// The per-batch training loss: `(logits, batch, step) -> scalar`.
pub type LossFn<'a> = Box<dyn FnMut(&Tensor, &Batch, StepInfo) -> candle_core::Result<Tensor> + 'a>;

/// Trains `model` with `optimizer` on `train`, evaluates on `test`.
///
/// * Training metrics: `loss` (mean over examples of the closure's value per batch, weighted by
///   batch size) and `error` (fraction of training examples misclassified during the epoch).
/// * Evaluation metrics (prefix `test_` by default, see [`ClassifierTrainer::eval_prefix`]):
///   `error` (fraction, 0–1), `errors` (count), `nll` (nats), `ece` (15 bins, fraction),
///   `entropy` (mean predictive entropy, nats).
/// * Checkpointed state: the model's `state_dict` (PyTorch names, prefixed `model.`) and the
///   optimiser's state (prefixed `optim.`). The loaders need no state: each epoch's order and
///   augmentation are functions of (seed, epoch); dropout masks come from the runner's epoch rng.
pub struct ClassifierTrainer<'a> {
    /// The model (its `ParamStore` holds the trained variables).
    pub model: Box<dyn Classifier + 'a>,
    /// The optimiser.
    pub optimizer: Box<dyn Optimizer + 'a>,
    /// Learning rate by epoch or step (see `unit`).
    pub schedule: LrSchedule,
    /// What the schedule is indexed by.
    pub unit: ScheduleUnit,
    /// Training batches.
    pub train: Loader<'a>,
    /// Evaluation batches (use a sequential sampler and no augmentation).
    pub test: Loader<'a>,
    loss: LossFn<'a>,
    eval_prefix: String,
    steps_per_epoch: u64,
    last_predictions: Option<Predictions>,
}

impl<'a> ClassifierTrainer<'a> {
    /// A trainer with the mean cross-entropy loss. Fails if the schedule is invalid.
    pub fn new(
        model: Box<dyn Classifier + 'a>,
        optimizer: Box<dyn Optimizer + 'a>,
        schedule: LrSchedule,
        mut train: Loader<'a>,
        test: Loader<'a>,
    ) -> Result<Self> {
        schedule.validate()?;
        // Samplers are pure functions of (epoch, rng), so this count has no side effect.
        let steps_per_epoch = train.epoch(0).num_batches() as u64;
        if steps_per_epoch == 0 {
            bail!("the training loader yields no batch (empty dataset, or drop_last with too few rows)");
        }
        Ok(Self {
            model,
            optimizer,
            schedule,
            unit: ScheduleUnit::Epoch,
            train,
            test,
            loss: Box::new(|logits, batch, _| {
                zoo_models::loss::cross_entropy(
                    logits,
                    &batch.labels,
                    zoo_models::loss::Reduction::Mean,
                )
            }),
            eval_prefix: "test_".to_string(),
            steps_per_epoch,
            last_predictions: None,
        })
    }

    /// Replace the training loss (must return a scalar; differentiated once).
    pub fn with_loss(
        mut self,
        loss: impl FnMut(&Tensor, &Batch, StepInfo) -> candle_core::Result<Tensor> + 'a,
    ) -> Self {
        self.loss = Box::new(loss);
        self
    }

    /// Index the schedule by global step instead of epoch.
    pub fn schedule_unit(mut self, unit: ScheduleUnit) -> Self {
        self.unit = unit;
        self
    }

    /// Prefix of evaluation metric names (default `"test_"`; `"val_"` for a validation set).
    pub fn eval_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.eval_prefix = prefix.into();
        self
    }

    /// Logits of the evaluation set under the current weights, in loader order (eval mode).
    pub fn predict(&mut self) -> Result<Predictions> {
        let params = self.model.store().params();
        let mut preds = Predictions::new(self.model.num_classes());
        for batch in self.test.epoch(0) {
            let batch = batch?;
            let logits = self
                .model
                .forward(&params, &batch.images, &mut Ctx::eval())?;
            preds.push(&logits, &batch.labels)?;
        }
        Ok(preds)
    }

    /// Predictions of the last [`EpochTask::evaluate`] (for reliability diagrams, per-class
    /// accuracy, …).
    pub fn last_predictions(&self) -> Option<&Predictions> {
        self.last_predictions.as_ref()
    }

    /// Reliability-diagram data of the last evaluation, in the plot module's type.
    pub fn last_reliability(&self) -> Result<(f64, Vec<crate::plot::ReliabilityBin>)> {
        let p = self
            .last_predictions
            .as_ref()
            .context("no evaluation has run yet")?;
        let Reliability { ece, bins } = p.reliability(zoo_models::metrics::ECE_BINS)?;
        let bins = bins
            .into_iter()
            .map(|b| crate::plot::ReliabilityBin {
                lower: b.lower,
                upper: b.upper,
                confidence: b.confidence,
                accuracy: b.accuracy,
                count: b.count,
            })
            .collect();
        Ok((ece, bins))
    }
}

fn lr_for(schedule: &LrSchedule, unit: ScheduleUnit, epoch: usize, step: u64) -> f64 {
    match unit {
        ScheduleUnit::Epoch => schedule.lr_at(epoch),
        ScheduleUnit::Step => schedule.lr_at(step as usize),
    }
}

/// Read on the host (Metal has no f64).
fn scalar(t: &Tensor) -> Result<f64> {
    Ok(zoo_models::readout::scalar_f64(t)?)
}

impl EpochTask for ClassifierTrainer<'_> {
    fn train_epoch(
        &mut self,
        epoch: usize,
        rng: &mut StdRng,
        monitor: &mut StepMonitor,
    ) -> Result<Metrics> {
        let (mut loss_sum, mut errors, mut n) = (0.0, 0usize, 0usize);
        // Batches are built lazily (a CIFAR epoch would not fit in memory at once); the loop
        // touches the other fields directly so the loader can stay borrowed.
        for batch in self.train.epoch(epoch) {
            let batch = batch?;
            let step = monitor.global_step();
            let lr = lr_for(&self.schedule, self.unit, epoch, step);
            let params = self.model.store().params();
            let logits = self
                .model
                .forward(&params, &batch.images, &mut Ctx::train(rng))?;
            let loss = (self.loss)(&logits, &batch, StepInfo { epoch, step })?;
            let l = scalar(&loss).context("the loss closure must return a scalar")?;
            monitor.step(l)?;
            let grads = zoo_models::backprop::backward(&loss)?;
            self.optimizer.step(self.model.store(), &grads, lr)?;
            self.model.apply_constraints()?;
            let b = batch.indices.len();
            loss_sum += l * b as f64;
            errors += zoo_models::metrics::error_count(&logits.detach(), &batch.labels)?;
            n += b;
        }
        Ok(Metrics::new()
            .with("loss", loss_sum / n.max(1) as f64)
            .with("error", errors as f64 / n.max(1) as f64))
    }

    fn evaluate(&mut self, _epoch: usize) -> Result<Metrics> {
        let p = self.predict()?;
        let pre = &self.eval_prefix;
        let m = Metrics::new()
            .with(format!("{pre}error"), p.error_rate())
            .with(format!("{pre}errors"), p.error_count() as f64)
            .with(format!("{pre}nll"), p.nll())
            .with(format!("{pre}ece"), p.ece())
            .with(format!("{pre}entropy"), p.mean_entropy());
        self.last_predictions = Some(p);
        Ok(m)
    }

    fn state(&self) -> Result<TaskState> {
        let mut tensors = HashMap::new();
        for (k, v) in self.model.store().state_dict()? {
            tensors.insert(format!("model.{k}"), v);
        }
        for (k, v) in self.optimizer.state() {
            tensors.insert(format!("optim.{k}"), v);
        }
        Ok(TaskState {
            tensors,
            json: serde_json::Value::Null,
        })
    }

    fn restore(&mut self, state: TaskState) -> Result<()> {
        let (mut model, mut optim) = (
            std::collections::BTreeMap::new(),
            std::collections::BTreeMap::new(),
        );
        for (k, v) in state.tensors {
            if let Some(k) = k.strip_prefix("model.") {
                model.insert(k.to_string(), v);
            } else if let Some(k) = k.strip_prefix("optim.") {
                optim.insert(k.to_string(), v);
            } else {
                bail!("unexpected tensor {k:?} in a classifier checkpoint");
            }
        }
        self.model.store().load_state_dict(&model)?;
        self.optimizer.load_state(&optim)?;
        Ok(())
    }

    fn steps_in_epoch(&self, _epoch: usize) -> Option<u64> {
        Some(self.steps_per_epoch)
    }

    fn learning_rate(&self, epoch: usize) -> Option<f64> {
        // For step schedules: the rate at the epoch's first step.
        Some(lr_for(
            &self.schedule,
            self.unit,
            epoch,
            epoch as u64 * self.steps_per_epoch,
        ))
    }

    fn device(&self) -> Device {
        self.model.store().device().clone()
    }
}
