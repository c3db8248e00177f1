//! One training run of an MLP (teacher, hard-label student or distilled student) as an
//! [`EpochTask`] for the shared [`crate::runner::Runner`].

use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use std::collections::HashMap;

use crate::runner::{EpochTask, Metrics, StepMonitor, TaskState};
use zoo_data::ImageDataset;
use zoo_models::loss::{cross_entropy, kd_loss, Reduction};
use zoo_models::models::Mlp;
use zoo_models::optim::{Optimizer, Sgd};
use zoo_models::{Classifier, Ctx};

use super::config::{NetConfig, SgdConfig};
use super::data::{batch, EvalSet};
use zoo_data::Normalize;

/// What the net is trained to predict.
pub enum Targets {
    /// The labels of the training set (teacher, hard-label student).
    Hard,
    /// The teacher's logits for each transfer-set image (row `i` for image `i`), mixed with the
    /// labels by [`kd_loss`] at temperature `t` with soft weight `alpha`.
    Soft {
        /// `(n, 10)` teacher logits, on the task's device.
        teacher_logits: Tensor,
        /// Temperature.
        t: f64,
        /// Weight of the soft term (`1 − alpha` on the hard term).
        alpha: f64,
    },
}

/// An MLP, its optimiser, its training data and what it learns from.
pub struct MlpTask {
    /// The net being trained.
    pub model: Mlp,
    opt: Sgd,
    sgd: SgdConfig,
    net: NetConfig,
    train: ImageDataset,
    norm: Normalize,
    targets: Targets,
    val: EvalSet,
    test: EvalSet,
    device: Device,
}

impl MlpTask {
    /// A task training `model` on `train` (the transfer set) towards `targets`, evaluated on
    /// `val` and `test` after every epoch.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        model: Mlp,
        net: &NetConfig,
        sgd: &SgdConfig,
        train: ImageDataset,
        norm: Normalize,
        targets: Targets,
        val: EvalSet,
        test: EvalSet,
        device: &Device,
    ) -> Result<Self> {
        if let Targets::Soft { teacher_logits, .. } = &targets {
            anyhow::ensure!(
                teacher_logits.dim(0)? == train.len(),
                "{} teacher logits for {} transfer images",
                teacher_logits.dim(0)?,
                train.len()
            );
        }
        Ok(Self {
            model,
            opt: Sgd::new(sgd.momentum_at(0), false, 0.0)?,
            sgd: sgd.clone(),
            net: net.clone(),
            train,
            norm,
            targets,
            val,
            test,
            device: device.clone(),
        })
    }

    fn steps_per_epoch(&self) -> usize {
        self.train.len().div_ceil(self.sgd.batch_size)
    }
}

impl EpochTask for MlpTask {
    fn train_epoch(
        &mut self,
        epoch: usize,
        rng: &mut StdRng,
        monitor: &mut StepMonitor,
    ) -> Result<Metrics> {
        use rand::seq::SliceRandom;
        let mut order: Vec<usize> = (0..self.train.len()).collect();
        order.shuffle(rng);
        self.opt.momentum = self.sgd.momentum_at(epoch);
        self.opt.dampening = self.sgd.dampening_at(epoch);
        let total = self.sgd.epochs * self.steps_per_epoch();
        let (mut loss_sum, mut n_steps) = (0.0, 0usize);
        for (b, idx) in order.chunks(self.sgd.batch_size).enumerate() {
            let step = epoch * self.steps_per_epoch() + b;
            let lr = self.sgd.lr_at(epoch, step, total);
            let (x, y) = batch(
                &self.train,
                idx,
                &self.norm,
                self.net.jitter_px,
                rng,
                &self.device,
            )?;
            let params = self.model.store().params();
            let logits = self.model.forward(&params, &x, &mut Ctx::train(rng))?;
            let loss = match &self.targets {
                Targets::Hard => cross_entropy(&logits, &y, Reduction::Mean)?,
                Targets::Soft {
                    teacher_logits,
                    t,
                    alpha,
                } => {
                    let ids: Vec<u32> = idx.iter().map(|&i| i as u32).collect();
                    let ids = Tensor::new(ids.as_slice(), &self.device)?;
                    let tl = teacher_logits.index_select(&ids, 0)?;
                    kd_loss(&logits, &tl, &y, *t, *alpha)?
                }
            };
            let l = loss.to_scalar::<f32>()? as f64;
            monitor.step(l)?;
            let grads = zoo_models::backprop::backward(&loss)?;
            self.opt.step(self.model.store(), &grads, lr)?;
            self.model.apply_constraints()?;
            loss_sum += l;
            n_steps += 1;
        }
        Ok(Metrics::new().with("loss", loss_sum / n_steps.max(1) as f64))
    }

    fn evaluate(&mut self, _epoch: usize) -> Result<Metrics> {
        let val = self.val.errors(&self.model)?;
        let test = self.test.errors(&self.model)?;
        Ok(Metrics::new()
            .with("val_errors", val as f64)
            .with("test_errors", test as f64))
    }

    fn state(&self) -> Result<TaskState> {
        let mut tensors: HashMap<String, Tensor> =
            self.model.store().state_dict()?.into_iter().collect();
        for (k, v) in self.opt.state() {
            tensors.insert(format!("optimizer.{k}"), v);
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
            match k.strip_prefix("optimizer.") {
                Some(rest) => opt.insert(rest.to_string(), v),
                None => model.insert(k, v),
            };
        }
        self.model
            .store()
            .load_state_dict(&model)
            .context("restoring the MLP")?;
        self.opt.load_state(&opt)?;
        Ok(())
    }

    fn steps_in_epoch(&self, _epoch: usize) -> Option<u64> {
        Some(self.steps_per_epoch() as u64)
    }

    fn learning_rate(&self, epoch: usize) -> Option<f64> {
        let spe = self.steps_per_epoch();
        Some(self.sgd.lr_at(epoch, epoch * spe, self.sgd.epochs * spe))
    }

    fn device(&self) -> Device {
        self.device.clone()
    }
}
