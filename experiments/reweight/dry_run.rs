//! The reweighting papers' `--dry-run` (see [`crate::dry_run`]): the time of one kind of step,
//! a [`ReweightTask`] with the method's rule on synthetic images of the dataset's shape.

use anyhow::Result;
use candle_core::Device;
use rand::rngs::StdRng;
use rand::SeedableRng;
use zoo_data::{Augment, Normalize};
use zoo_models::Classifier;

use super::{OptConfig, ReweightTask, StepRule, TaskData};
use crate::dry_run::{synthetic_images, time_rounds};
use crate::runner::{EpochTask, StepMonitor};

/// What a timed step trains on.
#[derive(Debug, Clone)]
pub struct Timing<'a> {
    /// Registered dataset whose image shape the synthetic images take.
    pub dataset: &'a str,
    /// Classes of the labels (`None`: the dataset's; MNIST 4-vs-9: 2).
    pub classes: Option<usize>,
    /// Rows of the clean meta set (the meta batch is `opt.meta_batch` of them).
    pub meta_rows: usize,
    /// The run's optimiser (its batch and meta batch; the schedule is not used).
    pub opt: &'a OptConfig,
    /// The run's augmentation.
    pub augment: Augment,
    /// Steps per timed round: the rule's period (a meta step every `period` steps), so that
    /// every round holds exactly one.
    pub period: usize,
}

/// Seconds per step of `rule` training `model` (built on `device`), from step 0 with no
/// warm-up steps (the rule acts at once), one round to warm up and then
/// [`time_rounds`]' timed rounds of `t.period` steps.
pub fn seconds_per_step(
    t: &Timing,
    model: Box<dyn Classifier>,
    rule: Box<dyn StepRule>,
    device: &Device,
) -> Result<f64> {
    let period = t.period.max(1);
    let train = synthetic_images(t.dataset, 2 * t.opt.batch_size, t.classes, 1)?;
    let meta = synthetic_images(t.dataset, t.meta_rows.max(1), t.classes, 2)?;
    let test = synthetic_images(t.dataset, 1, t.classes, 3)?;
    let flagged = vec![false; train.len()];
    let mut opt = t.opt.clone();
    opt.rounds = 64;
    opt.steps = 64 * period;
    opt.eval_every_rounds = 1;
    opt.warmup_steps = 0;
    opt.milestones.clear();
    let data = TaskData {
        train: &train,
        flagged: &flagged,
        meta: &meta,
        test: &test,
        norm: Normalize::for_dataset(t.dataset)?,
        augment: t.augment,
    };
    let mut task = ReweightTask::new(model, rule, &opt, data, 0)?;
    let mut rng = StdRng::seed_from_u64(0);
    let mut monitor = StepMonitor::detached(0, 0);
    let mut epoch = 0;
    time_rounds(
        || {
            task.train_epoch(epoch, &mut rng, &mut monitor)?;
            epoch += 1;
            Ok(period)
        },
        device,
    )
}

/// A run's steps by kind: `warm-up` steps of `plain` (unless `acts_in_warmup`, or the method is
/// plain already), then the rest of `steps` of `method`; kinds with no steps left out.
pub fn split_warmup<K: PartialEq>(
    plain: K,
    method: K,
    steps: usize,
    warmup: usize,
    acts_in_warmup: bool,
) -> Vec<(K, usize)> {
    let warm = if acts_in_warmup || plain == method {
        0
    } else {
        warmup.min(steps)
    };
    [(plain, warm), (method, steps - warm)]
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warm_up_steps_are_plain_unless_the_rule_acts_in_them() {
        assert_eq!(split_warmup(0, 1, 100, 30, false), vec![(0, 30), (1, 70)]);
        assert_eq!(split_warmup(0, 1, 100, 30, true), vec![(1, 100)]);
        assert_eq!(split_warmup(0, 0, 100, 30, false), vec![(0, 100)]);
        assert_eq!(split_warmup(0, 1, 100, 0, false), vec![(1, 100)]);
    }
}
