//! The one extension point of the reweighting loop: a [`StepRule`] decides, step by step, the
//! loss of the real step (and the example weights in it), optionally after its own work before the
//! forward pass (a meta step, drawn weights, a teacher update). CE, class weights, resampling,
//! focal, class-balanced, L2RW, Meta-Weight-Net and MLNT are all step rules.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use candle_core::Tensor;
use rand::rngs::StdRng;
use zoo_models::meta::InnerForward;
use zoo_models::{Classifier, ParamSet};

use crate::runner::{Metrics, StepMonitor};

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
    /// The training stream's generator (augmentation, dropout, meta batches draw from it too).
    pub rng: &'s mut StdRng,
    /// Draws a clean meta batch from `rng`.
    pub meta_batch: &'s mut MetaDraw<'s>,
    /// The run's NaN guard, for a rule's own checks ([`check_meta_step`]).
    pub monitor: &'s StepMonitor,
}

impl RuleStep<'_> {
    /// A clean meta batch (`OptConfig::meta_batch` examples of the meta set, or all of it).
    pub fn draw_meta(&mut self) -> Result<(Tensor, Tensor)> {
        (self.meta_batch)(self.rng)
    }
}

/// Draws a clean meta batch from the given generator.
pub type MetaDraw<'a> = dyn FnMut(&mut StdRng) -> Result<(Tensor, Tensor)> + 'a;

/// How the training stream samples rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sampling {
    /// Every row once per pass, in a shuffled order.
    Instance,
    /// A class uniformly, then one of its rows uniformly (resampling).
    ClassBalanced,
}

/// A training rule of [`ReweightTask`](super::ReweightTask): the real step's loss, and optional
/// work before its forward pass.
pub trait StepRule {
    /// How the training rows are sampled (the default: instance by instance).
    fn sampling(&self) -> Sampling {
        Sampling::Instance
    }

    /// Whether the rule also acts during `OptConfig::warmup_steps` (the default: no, those
    /// steps are plain mean cross-entropy; rules whose weights need no trained network say yes).
    fn in_warmup(&self) -> bool {
        false
    }

    /// Called before the real step's forward pass. May return the forward pass it already ran
    /// at `θ` on this batch (L2RW's meta step), which the real step then reuses.
    fn prepare(&mut self, _step: RuleStep<'_>) -> Result<Option<InnerForward>> {
        Ok(None)
    }

    /// The real step's loss from its logits (training mode, running statistics updated), and
    /// optionally the example weights it used, normalised to sum 1 (for the flagged/other
    /// weight diagnostics).
    fn loss(&mut self, logits: &Tensor, labels: &Tensor) -> Result<(Tensor, Option<Tensor>)>;

    /// Diagnostics accumulated since the last call (logged with the round's training metrics);
    /// `round_steps` is the number of steps of the round, warm-up included.
    fn take_metrics(&mut self, _round_steps: usize) -> Metrics {
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

/// A meta step's guard: its loss and the squared norm of its gradient must be finite. A
/// diverging run shows up here first; the monitor fails as the runner's NaN guard does, naming
/// the step.
pub fn check_meta_step<'t>(
    monitor: &StepMonitor,
    what: &str,
    meta_loss: f64,
    grads: impl IntoIterator<Item = &'t Tensor>,
) -> Result<()> {
    monitor.check(&format!("{what} meta loss"), meta_loss)?;
    let mut norm2 = 0.0;
    for t in grads {
        norm2 += zoo_models::readout::scalar_f64(&t.sqr()?.sum_all()?)?;
    }
    monitor.check(&format!("{what} meta-gradient"), norm2)
}
