//! One trained run, measured the same way for every method and paper: [`train`] runs a
//! [`ReweightTask`] on the shared runner and returns its [`RunRecord`].

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::task::ReweightTask;
use crate::cli::ExperimentConfig;
use crate::results::ResultsDir;
use crate::runner::{EpochRecord, Runner};
use crate::Experiment;

/// What every reweighting run reports. Errors are fractions (as measured); the `%` views are
/// methods, so every report converts them the same way.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    /// Seed.
    pub seed: u64,
    /// Final test error (fraction).
    pub test_error: f64,
    /// Final test error per class (fraction), by class index.
    pub test_error_per_class: Vec<f64>,
    /// Mean wall time of a training step (ms) over the whole run.
    pub step_ms: f64,
    /// The same over the rounds with weighted steps only (after any warm-up); `None` when no
    /// step was weighted.
    pub weighted_step_ms: Option<f64>,
    /// Mean weight of flagged rows (minority class / corrupted label) relative to uniform `1/n`,
    /// over the last round (weighted methods only).
    pub weight_flagged: Option<f64>,
    /// The same for the other rows.
    pub weight_other: Option<f64>,
    /// Effective sample size of the weights, `(Σw)²/Σw²` as a fraction of the batch, averaged
    /// over the last round's steps (weighted methods only).
    pub weight_ess: Option<f64>,
    /// L2RW steps whose weights were all zero (whole run; L2RW only).
    pub all_zero_steps: Option<f64>,
    /// Training rows.
    pub n_train: usize,
    /// Flagged training rows.
    pub n_flagged: usize,
    /// Clean meta (validation) rows.
    pub n_meta: usize,
    /// Test rows.
    pub n_test: usize,
    /// Test accuracy (%) at each evaluated round, for curves (the numbers are in the run's
    /// `log.csv`; not repeated in `results.json`).
    #[serde(skip, default)]
    pub test_acc_curve: Vec<(f64, f64)>,
}

impl RunRecord {
    /// Final test accuracy, %.
    pub fn test_accuracy(&self) -> f64 {
        pct_accuracy(self.test_error)
    }

    /// Final test error, %.
    pub fn test_error_pct(&self) -> f64 {
        100.0 * self.test_error
    }

    /// The time per step a method is compared by: over its weighted rounds when it had any.
    pub fn compared_step_ms(&self) -> f64 {
        self.weighted_step_ms.unwrap_or(self.step_ms)
    }
}

/// Accuracy in % from an error fraction (the one conversion every report uses).
pub fn pct_accuracy(error: f64) -> f64 {
    100.0 * (1.0 - error)
}

/// Where a run writes its checkpoints and logs, and under which name.
pub struct RunOut<'r> {
    /// The invocation's results directory.
    pub results: &'r ResultsDir,
    /// Continue from the last checkpoint.
    pub resume: bool,
    /// The run's folder under `seed_<s>/` and its name in logs.
    pub label: String,
}

impl<'r> RunOut<'r> {
    /// The run `label` of experiment `exp`.
    pub fn of<C: ExperimentConfig>(exp: &'r Experiment<C>, label: String) -> Self {
        Self {
            results: &exp.results,
            resume: exp.common.resume,
            label,
        }
    }
}

/// Mean of `step_ms` over `rounds`.
fn mean_step_ms<'h>(rounds: impl Iterator<Item = &'h EpochRecord>) -> f64 {
    let v: Vec<f64> = rounds.filter_map(|r| r.train.get("step_ms")).collect();
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// Trains `task` for seed `seed` (or resumes it) and measures it.
pub fn train(task: &mut ReweightTask<'_>, seed: u64, out: &RunOut<'_>) -> Result<RunRecord> {
    let opt = task.opt().clone();
    let run = Runner::with_dir(out.results, &[seed], opt.rounds)
        .resume(out.resume)
        .eval_every(opt.eval_every_rounds)
        .label(out.label.clone())
        .run_seed(seed, task)?;
    let m = run.final_metrics();
    let test_error = m.get("test_error").context("no test error was logged")?;
    let d = task.data();
    let per_class = (0..d.test.num_classes)
        .filter_map(|c| m.get(&format!("test_error_class{c}")))
        .collect();
    let weighted = |r: &&EpochRecord| r.train.get("weight_ess").is_some();
    let all_zero: Vec<f64> = run
        .history
        .iter()
        .filter_map(|r| r.train.get("all_zero_steps"))
        .collect();
    let r = RunRecord {
        seed,
        test_error,
        test_error_per_class: per_class,
        step_ms: mean_step_ms(run.history.iter()),
        weighted_step_ms: run
            .history
            .iter()
            .any(|r| weighted(&r))
            .then(|| mean_step_ms(run.history.iter().filter(weighted))),
        weight_flagged: m.get("train_weight_flagged"),
        weight_other: m.get("train_weight_other"),
        weight_ess: m.get("train_weight_ess"),
        all_zero_steps: (!all_zero.is_empty()).then(|| all_zero.iter().sum()),
        n_train: d.train.len(),
        n_flagged: d.flagged.iter().filter(|&&f| f).count(),
        n_meta: d.meta.len(),
        n_test: d.test.len(),
        test_acc_curve: run.test_accuracy_curve(),
    };
    tracing::info!(
        "{} seed {seed}: test accuracy {:.2}% ({:.0} ms/step)",
        out.label,
        r.test_accuracy(),
        r.step_ms
    );
    Ok(r)
}

/// Test accuracy (%) of one entry of a reweighting binary's `results.json`, in the current schema
/// (`test_error`) or the one before the core (`test_accuracy` in %).
pub fn json_test_accuracy(v: &serde_json::Value) -> Option<f64> {
    v["test_error"]
        .as_f64()
        .map(pct_accuracy)
        .or_else(|| v["test_accuracy"].as_f64())
}
