//! The optimiser and schedule of a reweighting run: SGD with momentum, a step-indexed multi-step
//! schedule, rounds (checkpoints) and an optional plain warm-up before the weighting starts.

use anyhow::{ensure, Result};
use serde::{Deserialize, Serialize};
use zoo_models::optim::LrSchedule;

/// SGD with momentum and a step-indexed multi-step schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OptConfig {
    /// Optimisation steps.
    pub steps: usize,
    /// The steps are run as this many rounds; each ends with a checkpoint (and `--resume` point).
    pub rounds: usize,
    /// Evaluate on the test set after every this many rounds (and after the last).
    pub eval_every_rounds: usize,
    /// Training examples per step.
    pub batch_size: usize,
    /// Clean meta examples per L2RW step (`None`: the whole meta set every step).
    pub meta_batch: Option<usize>,
    /// Initial learning rate (also the virtual step size α of L2RW).
    pub lr: f64,
    /// Steps at which the learning rate is multiplied by `gamma`.
    pub milestones: Vec<usize>,
    /// Decay factor at each milestone.
    pub gamma: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// Coupled L2 weight decay.
    pub weight_decay: f64,
    /// Steps of plain mean cross-entropy before a meta-learned weighting (L2RW, or a step rule
    /// such as Meta-Weight-Net) starts. 0, the papers' recipe, weights from the first step; a
    /// warm-up is a deviation, for budgets too short for the weighting to recover from a
    /// network whose features do not yet tell examples apart.
    #[serde(default)]
    pub warmup_steps: usize,
}

impl OptConfig {
    /// Rejects schedules the loop cannot run; `what` prefixes the messages (e.g. `mnist.opt`).
    pub(crate) fn check(&self, what: &str) -> Result<()> {
        ensure!(self.steps > 0, "{what}.steps must be at least 1");
        ensure!(
            self.rounds > 0 && self.steps.is_multiple_of(self.rounds),
            "{what}.rounds ({}) must divide steps ({})",
            self.rounds,
            self.steps
        );
        ensure!(
            self.eval_every_rounds > 0,
            "{what}.eval_every_rounds must be at least 1"
        );
        ensure!(self.batch_size > 0, "{what}.batch_size must be at least 1");
        ensure!(
            self.meta_batch != Some(0),
            "{what}.meta_batch must be at least 1"
        );
        ensure!(
            self.lr.is_finite() && self.lr > 0.0,
            "{what}.lr must be > 0, got {}",
            self.lr
        );
        ensure!(
            self.gamma.is_finite() && self.gamma > 0.0,
            "{what}.gamma must be > 0"
        );
        ensure!(
            self.milestones.windows(2).all(|w| w[0] < w[1]),
            "{what}.milestones must be increasing"
        );
        ensure!(
            (0.0..1.0).contains(&self.momentum),
            "{what}.momentum must lie in [0, 1)"
        );
        ensure!(
            self.weight_decay.is_finite() && self.weight_decay >= 0.0,
            "{what}.weight_decay must be >= 0"
        );
        ensure!(
            self.warmup_steps < self.steps,
            "{what}.warmup_steps ({}) must be below steps ({})",
            self.warmup_steps,
            self.steps
        );
        Ok(())
    }

    /// `--steps N` (and l2rw's per-part step flags): see [`crate::cli::rescale_schedule`].
    pub fn rescale_steps(&mut self, steps: usize) {
        let (s, r, m) = (&mut self.steps, &mut self.rounds, &mut self.milestones);
        crate::cli::rescale_schedule(s, r, &mut self.eval_every_rounds, m, steps);
    }

    /// Steps per round.
    pub fn round_steps(&self) -> usize {
        self.steps / self.rounds.max(1)
    }

    /// The learning-rate schedule, step-indexed.
    pub fn schedule(&self) -> LrSchedule {
        LrSchedule::MultiStep {
            base: self.lr,
            milestones: self.milestones.clone(),
            gamma: self.gamma,
        }
    }
}

/// One part of a reweighting experiment (noisy labels, a long tail): its settings `S`, the
/// methods `M` compared, one optimiser for them all, augmentation and the data limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartConfig<S, M> {
    /// Settings run in this part.
    pub settings: Vec<S>,
    /// Methods compared.
    pub methods: Vec<M>,
    /// Optimiser and step-indexed schedule, the same for every method (`lr` is also a meta
    /// method's virtual step size at each step, as the authors' `meta_lr` follows the schedule).
    pub opt: OptConfig,
    /// Random crop (pad 4) and horizontal flip of training images.
    pub augment: bool,
    /// Use a random subset of N training images (drawn before the clean held-out set, the meta
    /// or validation set); `None`: all.
    pub train_limit: Option<usize>,
    /// Evaluate on the first N test images; `None`: all.
    pub test_limit: Option<usize>,
}

impl<S, M> PartConfig<S, M> {
    /// Rejects an empty method list, zero limits and a bad optimiser; `what` names the part.
    pub fn check(&self, what: &str) -> Result<()> {
        ensure!(
            !self.methods.is_empty(),
            "{what}.methods: give at least one"
        );
        ensure!(
            self.train_limit != Some(0) && self.test_limit != Some(0),
            "{what} limits must be >= 1"
        );
        self.opt.check(&format!("{what}.opt"))
    }
}
