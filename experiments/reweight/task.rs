//! The noisy-label / imbalance training loop: [`ReweightTask`] runs `OptConfig::steps` steps of
//! SGD as rounds of the shared runner (one [`EpochTask`] "epoch" is a round of
//! `OptConfig::round_steps` steps), with the real step's loss decided by one [`StepRule`].

use anyhow::{bail, Result};
use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::seq::index::sample;
use zoo_data::augment::Augment;
use zoo_data::sampler::{ClassBalanced, InstanceBalanced, Sampler, Sequential};
use zoo_data::{make_batch, Batch, ImageDataset, Loader, Normalize};
use zoo_models::loss::{self, Reduction};
use zoo_models::metrics::Predictions;
use zoo_models::optim::{LrSchedule, Optimizer, Sgd};
use zoo_models::{Classifier, Ctx};

use super::checkpoint;
use super::opt::OptConfig;
use super::rule::{RuleStep, Sampling, StepRule};
use super::stats::RoundStats;
use crate::runner::{EpochTask, Metrics, StepMonitor, TaskState};

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

/// Trains a classifier with one [`StepRule`] for `opt.steps` steps.
pub struct ReweightTask<'a> {
    model: Box<dyn Classifier + 'a>,
    rule: Box<dyn StepRule + 'a>,
    opt: OptConfig,
    sgd: Sgd,
    schedule: LrSchedule,
    data: TaskData<'a>,
    sampler_loader: Loader<'a>,
    test: Loader<'a>,
    /// Position in the training stream: loader epoch and batches consumed in it.
    data_epoch: usize,
    data_pos: usize,
    order: Vec<usize>,
    device: Device,
}

impl<'a> ReweightTask<'a> {
    /// A task training `model` (freshly initialised) with `rule` on `data`; `seed` orders the
    /// training stream.
    pub fn new(
        model: Box<dyn Classifier + 'a>,
        rule: Box<dyn StepRule + 'a>,
        opt: &OptConfig,
        data: TaskData<'a>,
        seed: u64,
    ) -> Result<Self> {
        let device = model.store().device().clone();
        let train = data.train;
        let sampler: Box<dyn Sampler + 'a> = match rule.sampling() {
            Sampling::ClassBalanced => {
                Box::new(ClassBalanced::new(&train.labels, train.num_classes)?)
            }
            Sampling::Instance => Box::new(InstanceBalanced { n: train.len() }),
        };
        if train.len() < opt.batch_size {
            bail!(
                "{} training images, fewer than one batch of {}",
                train.len(),
                opt.batch_size
            );
        }
        let mut sampler_loader = Loader::new(
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
            Box::new(Sequential { n: data.test.len() }),
            0,
            &device,
        )?;
        let schedule = opt.schedule();
        schedule.validate()?;
        let order = sampler_loader.epoch(0).order().to_vec();
        Ok(Self {
            model,
            rule,
            opt: opt.clone(),
            sgd: Sgd::new(opt.momentum, false, opt.weight_decay)?,
            schedule,
            data,
            sampler_loader,
            test,
            data_epoch: 0,
            data_pos: 0,
            order,
            device,
        })
    }

    /// The trained model.
    pub fn model(&self) -> &dyn Classifier {
        self.model.as_ref()
    }

    /// The task's data.
    pub fn data(&self) -> &TaskData<'a> {
        &self.data
    }

    /// The optimiser settings.
    pub fn opt(&self) -> &OptConfig {
        &self.opt
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

    /// The training batch of `rows`, augmented from `rng` when the data asks for it.
    fn batch(&self, rows: &[usize], rng: &mut StdRng) -> Result<Batch> {
        let aug = match self.data.augment {
            Augment::None => None,
            a => Some(rows.iter().map(|_| a.sample(rng)).collect::<Vec<_>>()),
        };
        make_batch(
            self.data.train,
            rows,
            &self.data.norm,
            aug.as_deref(),
            &self.device,
        )
    }

    /// One training step: the rule's preparation (unless warming up), the forward pass (or the
    /// one the rule already ran), the rule's loss and one SGD step.
    fn train_step(
        &mut self,
        rng: &mut StdRng,
        monitor: &mut StepMonitor,
        round: &mut RoundStats,
    ) -> Result<()> {
        let step = monitor.global_step();
        let lr = self.schedule.lr_at(step as usize);
        let rows = self.next_rows();
        let batch = self.batch(&rows, rng)?;
        let params = self.model.store().params();
        let active = self.rule.in_warmup() || (step as usize) >= self.opt.warmup_steps;
        let inner = if active {
            let (meta, k, norm, dev) = (
                self.data.meta,
                self.opt.meta_batch,
                &self.data.norm,
                &self.device,
            );
            let mut draw = |r: &mut StdRng| draw_meta_batch(meta, k, norm, dev, r);
            let s = RuleStep {
                model: self.model.as_ref(),
                params: &params,
                images: &batch.images,
                labels: &batch.labels,
                lr,
                step,
                rng: &mut *rng,
                meta_batch: &mut draw,
                monitor: &*monitor,
            };
            self.rule.prepare(s)?
        } else {
            None
        };
        let logits = match &inner {
            Some(f) => f.logits().clone(),
            None => self
                .model
                .forward(&params, &batch.images, &mut Ctx::train(rng))?,
        };
        let (loss, weights) = if active {
            self.rule.loss(&logits, &batch.labels)?
        } else {
            let l = loss::cross_entropy(&logits, &batch.labels, Reduction::Mean)?;
            (l, None)
        };
        if let Some(w) = &weights {
            round.add_weights(w, &rows, self.data.flagged)?;
        }
        let l = zoo_models::readout::scalar_f64(&loss)?;
        monitor.step(l)?;
        let grads = match &inner {
            Some(f) => f.grads(self.model.store(), &loss)?,
            None => zoo_models::backprop::backward(&loss)?,
        };
        self.sgd.step(self.model.store(), &grads, lr)?;
        let errors = zoo_models::metrics::error_count(&logits.detach(), &batch.labels)?;
        round.add_step(l, errors, rows.len());
        Ok(())
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
        let mut round = RoundStats::default();
        let t0 = std::time::Instant::now();
        for _ in 0..steps {
            self.train_step(rng, monitor, &mut round)?;
        }
        let secs = t0.elapsed().as_secs_f64();
        Ok(round.metrics(steps, secs, self.rule.take_metrics(steps)))
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
        checkpoint::pack(
            self.model.store(),
            &self.sgd,
            self.rule.as_ref(),
            (self.data_epoch, self.data_pos),
        )
    }

    fn restore(&mut self, state: TaskState) -> Result<()> {
        let (e, p) = checkpoint::unpack(
            state,
            &self.device,
            self.model.store(),
            &mut self.sgd,
            self.rule.as_mut(),
        )?;
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
