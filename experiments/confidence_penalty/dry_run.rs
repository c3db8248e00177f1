//! `--dry-run`: the plan of an invocation (tasks, training runs, steps) and its projected wall
//! time on this device, from a few timed training steps of each task's net on synthetic images.
//! No dataset is read and nothing is written, so it answers "how long would the paper's CIFAR
//! part take here?" in seconds.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::Device;
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::config::{CpConfig, TaskConfig};
use super::method::{Hyper, Method, Objective};
use super::trainer::{self, TrainSpec};
use super::tuning;
use crate::dry_run::{hms, synthetic_images};
use crate::runner::{EpochTask, StepMonitor};

/// Training runs and optimisation steps of one task.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskPlan {
    /// Task name.
    pub name: String,
    /// Validation runs of the tuning phase (one per grid point).
    pub tuning_runs: usize,
    /// Steps of one tuning run.
    pub tuning_steps: usize,
    /// Final runs (methods × seeds).
    pub final_runs: usize,
    /// Steps of one final run.
    pub final_steps: usize,
}

impl TaskPlan {
    /// Every optimisation step of the task.
    pub fn total_steps(&self) -> usize {
        self.tuning_runs * self.tuning_steps + self.final_runs * self.final_steps
    }
}

/// The runs `task` trains with `seeds`, counted the way [`super::run`] tunes: parents before
/// children, one run per candidate (a single candidate costs a run only with
/// `tune_single_points`). Candidate counts do not depend on the chosen values.
pub fn plan_task(cfg: &CpConfig, task: &TaskConfig, seeds: usize) -> Result<TaskPlan> {
    let spec = zoo_data::spec(&task.dataset)?;
    let train = task.train_limit.unwrap_or(spec.rows.0).min(spec.rows.0);
    let tune_train = train.saturating_sub(task.val_size);
    let tune_train = task
        .tune_train_limit
        .map_or(tune_train, |l| l.min(tune_train));
    let steps = |n: usize| n.div_ceil(task.sgd.batch_size) * task.sgd.epochs;
    let mut chosen: BTreeMap<Method, Hyper> = BTreeMap::new();
    let mut tuning_runs = 0;
    for method in tuning::tuning_order(&task.methods) {
        let (cands, _) = tuning::candidates(method, task, &chosen)?;
        if cands.len() > 1 || cfg.tune_single_points {
            tuning_runs += cands.len();
        }
        chosen.insert(method, cands[0]);
    }
    Ok(TaskPlan {
        name: task.name.clone(),
        tuning_runs,
        tuning_steps: steps(tune_train),
        final_runs: task.methods.len() * seeds,
        final_steps: steps(train),
    })
}

/// Seconds per training step of `task`'s net under the confidence penalty (the dearest
/// objective) with its default dropout, timed over `timed` steps after `warm_up` steps on random
/// images of the dataset's shape.
pub fn seconds_per_step(
    task: &TaskConfig,
    device: &Device,
    warm_up: usize,
    timed: usize,
) -> Result<f64> {
    let spec = zoo_data::spec(&task.dataset)?;
    let b = task.sgd.batch_size;
    let warm = synthetic_images(&task.dataset, b * warm_up, None, 0)?;
    let timed_set = synthetic_images(&task.dataset, b * timed, None, 1)?;
    let mut rng = StdRng::seed_from_u64(0);
    let hyper = Hyper {
        dropout: Some(task.default_dropout),
        beta: Some(1.0),
        ..Default::default()
    };
    let method: Method = "dropout+cp".parse().context("built-in method name")?;
    let counts = vec![1; spec.num_classes()];
    let mut seconds = 0.0;
    for (set, keep) in [(&warm, false), (&timed_set, true)] {
        let objective = Objective::new(method, &hyper, &counts, 1, task.anneal_fraction)?;
        let mut t = trainer::build(TrainSpec {
            task,
            hyper: &hyper,
            objective,
            train: set,
            eval: set,
            seed: 0,
            device,
        })?;
        let start = Instant::now();
        t.train_epoch(0, &mut rng, &mut StepMonitor::detached(0, 0))?;
        if keep {
            seconds = start.elapsed().as_secs_f64() / timed.max(1) as f64;
        }
    }
    Ok(seconds)
}

/// The dry run's report: per task, the plan and its projected time; every task the preset
/// configures is listed, with whether this invocation would run it.
pub fn report(cfg: &CpConfig, seeds: usize, device: &Device) -> Result<String> {
    let mut s = String::from("Dry run: nothing is trained or written.\n");
    let mut total = 0.0;
    for task in &cfg.tasks {
        let plan = plan_task(cfg, task, seeds)?;
        let per_step = seconds_per_step(task, device, 2, 5)?;
        let projected = per_step * plan.total_steps() as f64;
        s.push_str(&format!(
            "\ntask {} ({}, {}): {} tuning runs × {} steps + {} final runs × {} steps = {} steps; \
             {:.1} ms/step here (timed on synthetic images, dropout + penalty) → projected {} \
             (evaluation not counted)\n",
            plan.name,
            task.dataset,
            if task.run {
                "runs"
            } else {
                "not run by this invocation"
            },
            plan.tuning_runs,
            plan.tuning_steps,
            plan.final_runs,
            plan.final_steps,
            plan.total_steps(),
            1e3 * per_step,
            hms(projected)
        ));
        if task.run {
            total += projected;
        }
    }
    s.push_str(&format!(
        "\nprojected wall time of this invocation: {}\n",
        hms(total)
    ));
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Preset;
    use crate::ExperimentConfig;

    #[test]
    fn plan_counts_the_paper_grids() {
        let cfg = CpConfig::preset(Preset::Paper);
        let mnist = &cfg.tasks[0];
        let p = plan_task(&cfg, mnist, 5).unwrap();
        // 60,000 images in batches of 100 for 100 epochs; tuning on the first 50,000.
        assert_eq!(p.final_steps, 600 * 100);
        assert_eq!(p.tuning_steps, 500 * 100);
        assert_eq!(p.final_runs, mnist.methods.len() * 5);
        // Dropout: 3 rates × 1 lr; ε: 6 for each smoothing; β: 7; annealed 4; thresholded:
        // 3 Γ with cp's β; combinations inherit (1 run each with tune_single_points), none: 1.
        assert_eq!(p.tuning_runs, 3 + 6 + 6 + 7 + 4 + 3 + 1 + 1 + 1);
        let cifar = &cfg.tasks[1];
        let p = plan_task(&cfg, cifar, 5).unwrap();
        assert_eq!(p.final_steps, 1000 * 300);
    }
}
