//! One training run of a method as an [`EpochTask`] for the shared [`crate::runner::Runner`]:
//! the zoo's model, loader, optimiser and losses, with the method's [`Objective`] evaluated at
//! the global step (the annealed penalty's β depends on it).

use std::collections::HashMap;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use zoo_data::{make_batch, ImageDataset, Normalize};
use zoo_models::metrics::Predictions;
use zoo_models::optim::{LrSchedule, Optimizer, Sgd};
use zoo_models::{Classifier, Ctx};

use super::config::{LrDecay, NetConfig, TaskConfig};
use super::method::{DropoutRates, Hyper, Objective};
use crate::runner::{EpochTask, Metrics, StepMonitor, TaskState};

/// Everything one run needs.
pub struct TrainSpec<'a> {
    /// The task (net, optimiser, data settings).
    pub task: &'a TaskConfig,
    /// The method's values (dropout rates).
    pub hyper: &'a Hyper,
    /// The loss.
    pub objective: Objective,
    /// Training images.
    pub train: &'a ImageDataset,
    /// Evaluation images (validation split while tuning, test set in the final runs).
    pub eval: &'a ImageDataset,
    /// Seed of the initialisation (the runner derives per-epoch generators from it too).
    pub seed: u64,
    /// Device.
    pub device: &'a Device,
}

/// A method's training run.
pub struct CpTask<'a> {
    model: Box<dyn Classifier>,
    opt: Sgd,
    objective: Objective,
    lr: LrSchedule,
    steps_per_epoch: usize,
    task: &'a TaskConfig,
    train: &'a ImageDataset,
    eval: &'a ImageDataset,
    device: Device,
    predictions: Option<Predictions>,
}

/// The learning-rate schedule over global steps, from the base rate `lr` (the task's, or the
/// method's own where it tunes one).
pub fn lr_schedule(task: &TaskConfig, lr: f64, steps_per_epoch: usize) -> LrSchedule {
    let s = &task.sgd;
    let total = steps_per_epoch * s.epochs;
    match &s.decay {
        LrDecay::Constant => LrSchedule::Constant(lr),
        LrDecay::Cosine => LrSchedule::Cosine {
            base: lr,
            total,
            min: 0.0,
        },
        LrDecay::MultiStep { at, gamma } => LrSchedule::MultiStep {
            base: lr,
            milestones: at
                .iter()
                .map(|f| (f * s.epochs as f64).round() as usize * steps_per_epoch)
                .collect(),
            gamma: *gamma,
        },
    }
}

/// The task's network with the method's dropout rates (none: no dropout).
pub fn build_model(
    net: &NetConfig,
    dropout: Option<DropoutRates>,
    data: &ImageDataset,
    rng: &mut StdRng,
    device: &Device,
) -> Result<Box<dyn Classifier>> {
    let d = dropout.unwrap_or(DropoutRates {
        input: 0.0,
        hidden: 0.0,
    });
    match net {
        NetConfig::Mlp { hidden, init_std } => {
            let mut dims = vec![data.channels * data.height * data.width];
            dims.extend_from_slice(hidden);
            dims.push(data.num_classes);
            let mut c = zoo_models::models::MlpConfig::new(&dims);
            c.input_dropout = d.input;
            c.hidden_dropout = d.hidden;
            if let Some(std) = *init_std {
                // The paper's N(0, std²) weights; its text is silent on biases: zeros, as
                // TensorFlow's dense layers start them.
                c.init = zoo_models::init::Init::Normal { std };
                c.bias_init = Some(zoo_models::init::Init::Constant(0.0));
            }
            Ok(Box::new(zoo_models::models::Mlp::new(c, rng, device)?))
        }
        NetConfig::DenseNet40 { growth } => {
            let mut c = zoo_models::models::DenseNetConfig::densenet40(data.num_classes);
            c.growth = *growth;
            c.dropout = d.hidden;
            c.in_channels = data.channels;
            Ok(Box::new(zoo_models::models::DenseNet40::new(
                c, rng, device,
            )?))
        }
    }
}

/// Build the run: model initialised from `seed`, SGD, schedule.
pub fn build(spec: TrainSpec<'_>) -> Result<CpTask<'_>> {
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let model = build_model(
        &spec.task.net,
        spec.hyper.dropout,
        spec.train,
        &mut rng,
        spec.device,
    )?;
    let s = &spec.task.sgd;
    let opt = Sgd::new(s.momentum, s.nesterov, s.weight_decay)?;
    let steps_per_epoch = spec.train.len().div_ceil(s.batch_size);
    Ok(CpTask {
        model,
        opt,
        objective: spec.objective,
        lr: lr_schedule(spec.task, spec.hyper.lr.unwrap_or(s.lr), steps_per_epoch),
        steps_per_epoch,
        task: spec.task,
        train: spec.train,
        eval: spec.eval,
        device: spec.device.clone(),
        predictions: None,
    })
}

impl CpTask<'_> {
    /// Predictions of the trained model on `data` (cached for the evaluation set).
    pub fn predict(&mut self, data: &ImageDataset) -> Result<Predictions> {
        if std::ptr::eq(data, self.eval) {
            if let Some(p) = &self.predictions {
                return Ok(p.clone());
            }
        }
        let mut p = Predictions::new(data.num_classes);
        let params = self.model.store().params();
        let all: Vec<usize> = (0..data.len()).collect();
        for idx in all.chunks(1000) {
            let (x, y) = batch(data, idx, &self.device)?;
            let logits = self.model.forward(&params, &x, &mut Ctx::eval())?;
            p.push(&logits, &y)?;
        }
        Ok(p)
    }
}

/// The images `idx` of `data`, normalised with the dataset's usual statistics, as
/// `(images (b, c, h, w) f32, labels (b,) u32)`.
fn batch(data: &ImageDataset, idx: &[usize], device: &Device) -> Result<(Tensor, Tensor)> {
    let norm = Normalize::for_dataset(&data.name)?;
    let b = make_batch(data, idx, &norm, None, device)?;
    Ok((b.images, b.labels))
}

impl EpochTask for CpTask<'_> {
    fn train_epoch(
        &mut self,
        epoch: usize,
        rng: &mut StdRng,
        monitor: &mut StepMonitor,
    ) -> Result<Metrics> {
        let _ = epoch;
        self.predictions = None;
        let mut order: Vec<usize> = (0..self.train.len()).collect();
        order.shuffle(rng);
        let mut beta_sum = 0.0;
        let mut n = 0usize;
        let device = self.device.clone();
        for idx in order.chunks(self.task.sgd.batch_size) {
            let (x, y) = batch(self.train, idx, &device)?;
            let step = monitor.global_step() as usize;
            let params = self.model.store().params();
            let logits = self.model.forward(&params, &x, &mut Ctx::train(rng))?;
            let loss = self.objective.loss(&logits, &y, step)?;
            monitor.step(zoo_models::readout::scalar_f64(&loss)?)?;
            let grads = zoo_models::backprop::backward(&loss)?;
            self.opt
                .step(self.model.store(), &grads, self.lr.lr_at(step))?;
            self.model.apply_constraints()?;
            beta_sum += self.objective.beta_at(step);
            n += 1;
        }
        let mut m = Metrics::new().with("loss", monitor.mean_loss());
        if n > 0 {
            m.insert("beta", beta_sum / n as f64);
        }
        Ok(m)
    }

    fn evaluate(&mut self, _epoch: usize) -> Result<Metrics> {
        self.predictions = None;
        let p = self.predict(self.eval)?;
        let m = Metrics::new()
            .with("eval_error", p.error_rate())
            .with("eval_nll", p.nll())
            .with("eval_ece", p.ece())
            .with("eval_entropy", p.mean_entropy());
        self.predictions = Some(p);
        Ok(m)
    }

    fn state(&self) -> Result<TaskState> {
        let mut tensors = HashMap::new();
        for (k, v) in self.model.store().state_dict()? {
            tensors.insert(format!("model.{k}"), v);
        }
        for (k, v) in self.opt.state() {
            tensors.insert(format!("opt.{k}"), v);
        }
        Ok(TaskState {
            tensors,
            json: serde_json::Value::Null,
        })
    }

    fn restore(&mut self, state: TaskState) -> Result<()> {
        let mut model = std::collections::BTreeMap::new();
        let mut opt = std::collections::BTreeMap::new();
        for (k, v) in state.tensors {
            if let Some(k) = k.strip_prefix("model.") {
                model.insert(k.to_string(), v);
            } else if let Some(k) = k.strip_prefix("opt.") {
                opt.insert(k.to_string(), v);
            } else {
                bail!("unexpected tensor `{k}` in the checkpoint");
            }
        }
        self.model
            .store()
            .load_state_dict(&model)
            .context("restoring the model")?;
        self.opt
            .load_state(&opt)
            .context("restoring the optimiser")?;
        self.predictions = None;
        Ok(())
    }

    fn steps_in_epoch(&self, _epoch: usize) -> Option<u64> {
        Some(self.steps_per_epoch as u64)
    }

    fn learning_rate(&self, epoch: usize) -> Option<f64> {
        Some(self.lr.lr_at(epoch * self.steps_per_epoch))
    }

    fn device(&self) -> Device {
        self.device.clone()
    }
}
