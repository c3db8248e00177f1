//! The one training-loop harness every binary uses.
//!
//! A binary describes *one epoch* of its method by implementing [`EpochTask`]; [`Runner`] does
//! the rest for each seed: epochs with a progress bar and log lines, evaluation, `log.csv`,
//! checkpoints, `--resume`, and the NaN/inf guard.
//!
//! **Epochs or steps.** A step-based schedule (e.g. "20k iterations, evaluate every 1k") is run
//! as `epochs = 20` rounds of 1k steps: the runner only needs a unit of work after which it
//! evaluates and checkpoints.
//!
//! **Exact resume.** Each epoch's randomness comes from a generator re-derived from
//! `(seed, epoch)` ([`epoch_rng`]) rather than from a generator threaded through the run, so a
//! run resumed from the checkpoint after epoch k draws exactly what the uninterrupted run drew
//! in epoch k+1 — no generator state needs saving. Tasks must take *all* per-epoch randomness
//! (shuffling, augmentation, dropout) from the `rng` they are given, and put everything else that
//! evolves (weights, BN buffers, optimiser moments, counters) into [`EpochTask::state`].
//!
//! **Checkpoints** live in `seed_<s>/checkpoint/`: `epoch_NNNN.safetensors` (the task's tensors),
//! `epoch_NNNN.json` (epoch, global step, history, the task's JSON state) and `latest.json`, a
//! pointer rewritten atomically last: a crash at any moment leaves either the old or the new
//! checkpoint complete. Without `--resume` a seed's old checkpoint and log are discarded. Each
//! checkpoint is stamped with the configuration it was trained under ([`crate::identity`]), and
//! `--resume` refuses one stamped with another, naming the fields that differ.
//!
//! **NaN guard.** [`StepMonitor::step`] fails on a non-finite loss with a [`NonFinite`] error
//! giving the global step; the runner then stops without checkpointing, so the last good
//! checkpoint (the previous epoch's) is kept. Weights are also checked for finiteness before each
//! checkpoint is written. An evaluation that finds non-finite logits is reported the same way
//! (step, seed, run and the checkpoint kept).

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::cli::ExperimentConfig;
use crate::identity::ConfigIdentity;
use crate::plot::Series;
use crate::results::{atomic_write, atomic_write_json, atomic_write_with, ResultsDir};
use crate::Experiment;

/// Named scalar metrics in insertion order (the order of the `log.csv` columns).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics(Vec<(String, f64)>);

impl Metrics {
    /// Empty.
    pub fn new() -> Self {
        Self::default()
    }
    /// Set `name` (replacing an earlier value of the same name).
    pub fn insert(&mut self, name: impl Into<String>, value: f64) {
        let name = name.into();
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some(e) => e.1 = value,
            None => self.0.push((name, value)),
        }
    }
    /// Builder form of [`Metrics::insert`].
    pub fn with(mut self, name: impl Into<String>, value: f64) -> Self {
        self.insert(name, value);
        self
    }
    /// Value of `name`.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.0.iter().find(|(n, _)| n == name).map(|e| e.1)
    }
    /// `(name, value)` pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, f64)> {
        self.0.iter().map(|(n, v)| (n.as_str(), *v))
    }
    /// Number of metrics.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// No metrics.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for Metrics {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // A list of pairs keeps the order (a JSON object would be re-sorted on reading).
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Metrics {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<(String, f64)>::deserialize(d).map(Metrics)
    }
}

/// A task's resumable state: tensors (saved as safetensors) and anything else as JSON.
#[derive(Debug, Clone, Default)]
pub struct TaskState {
    /// Weights, buffers, optimiser moments… by unique name (PyTorch-style names for weights).
    pub tensors: HashMap<String, Tensor>,
    /// Other state (counters, schedules): must round-trip through JSON.
    pub json: serde_json::Value,
}

/// A non-finite loss or weight, found at `step`. The runner fills in the checkpoint that was kept.
#[derive(Debug, Clone, PartialEq)]
pub struct NonFinite {
    /// Seed of the run.
    pub seed: u64,
    /// 0-based epoch being trained.
    pub epoch: usize,
    /// Global step (number of optimisation steps done before the bad one, counted from 0 over
    /// the whole run: the bad step is the `step + 1`-th).
    pub step: u64,
    /// What was non-finite ("loss", a metric, or a tensor name).
    pub what: String,
    /// The value.
    pub value: f64,
    /// The last good checkpoint (completed epochs), if any was written.
    pub kept_checkpoint: Option<(usize, PathBuf)>,
    /// The sub-run (method, setting) of the seed, as its runner's label; empty for none.
    pub run: String,
    /// Found by the evaluation after the step (the value itself is not known: `value` is NaN).
    pub in_evaluation: bool,
}

impl std::fmt::Display for NonFinite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let run = if self.run.is_empty() {
            String::new()
        } else {
            format!(", run {}", self.run)
        };
        if self.in_evaluation {
            write!(f, "non-finite {} after global step", self.what)?;
        } else {
            write!(
                f,
                "non-finite {} = {} at global step",
                self.what, self.value
            )?;
        }
        write!(
            f,
            " {} (seed {}{run}, epoch {}); training stopped",
            self.step,
            self.seed,
            self.epoch + 1
        )?;
        match &self.kept_checkpoint {
            Some((e, p)) => write!(
                f,
                "; last good checkpoint kept: {} (after epoch {e})",
                p.display()
            ),
            None => write!(f, "; no checkpoint had been written yet"),
        }
    }
}

impl std::error::Error for NonFinite {}

/// Given to [`EpochTask::train_epoch`]: counts steps, checks losses, drives the progress bar.
pub struct StepMonitor {
    seed: u64,
    epoch: usize,
    global_step: u64,
    bar: ProgressBar,
    loss_sum: f64,
    loss_n: u64,
}

impl StepMonitor {
    fn new(seed: u64, epoch: usize, global_step: u64, bar: ProgressBar) -> Self {
        Self {
            seed,
            epoch,
            global_step,
            bar,
            loss_sum: 0.0,
            loss_n: 0,
        }
    }

    /// A monitor outside the runner (benchmarks, tests of a task), with a hidden bar.
    pub fn detached(seed: u64, epoch: usize) -> Self {
        Self::new(seed, epoch, 0, ProgressBar::hidden())
    }

    /// Record one optimisation step with its training loss. Fails with [`NonFinite`] (the
    /// current global step) if the loss is NaN or ±∞; call it right after computing the loss and
    /// *before* applying the update, so the weights stay finite.
    pub fn step(&mut self, loss: f64) -> Result<()> {
        self.check("loss", loss)?;
        self.global_step += 1;
        self.loss_sum += loss;
        self.loss_n += 1;
        self.bar.inc(1);
        if self.loss_n % 10 == 1 {
            self.bar
                .set_message(format!("loss {:.4}", self.loss_sum / self.loss_n as f64));
        }
        Ok(())
    }

    /// Fail with [`NonFinite`] if `value` is not finite (checked at the current global step,
    /// which is not advanced).
    pub fn check(&self, what: &str, value: f64) -> Result<()> {
        if value.is_finite() {
            return Ok(());
        }
        Err(NonFinite {
            seed: self.seed,
            epoch: self.epoch,
            step: self.global_step,
            what: what.to_string(),
            value,
            kept_checkpoint: None,
            run: String::new(),
            in_evaluation: false,
        }
        .into())
    }

    /// Optimisation steps done so far in the whole run (resumed runs continue the count).
    pub fn global_step(&self) -> u64 {
        self.global_step
    }

    /// The 0-based epoch being trained.
    pub fn epoch(&self) -> usize {
        self.epoch
    }

    /// Mean of the losses passed to [`StepMonitor::step`] this epoch (NaN before the first).
    pub fn mean_loss(&self) -> f64 {
        self.loss_sum / self.loss_n as f64
    }
}

/// One epoch of a method, implemented by each binary (or use [`crate::trainer::ClassifierTrainer`]).
pub trait EpochTask {
    /// Train for epoch `epoch` (0-based). Take all randomness from `rng` (derived from
    /// `(seed, epoch)`, so resume is exact) and call `monitor.step(loss)` once per optimisation
    /// step. Returns training metrics (logged with a `train_` prefix).
    fn train_epoch(
        &mut self,
        epoch: usize,
        rng: &mut StdRng,
        monitor: &mut StepMonitor,
    ) -> Result<Metrics>;

    /// Evaluate after epoch `epoch` (0-based); metrics are logged under their own names, so name
    /// them by split ("test_error", "val_nll").
    fn evaluate(&mut self, epoch: usize) -> Result<Metrics>;

    /// Everything needed to continue training exactly (weights, buffers, optimiser state…).
    fn state(&self) -> Result<TaskState>;

    /// Restore what [`EpochTask::state`] returned (tensors are loaded on the task's device by the
    /// runner's caller: `restore` should move them if needed).
    fn restore(&mut self, state: TaskState) -> Result<()>;

    /// Steps in epoch `epoch`, for the progress bar's length (`None`: unknown).
    fn steps_in_epoch(&self, _epoch: usize) -> Option<u64> {
        None
    }

    /// Learning rate used in epoch `epoch`, for the `lr` column of `log.csv`.
    fn learning_rate(&self, _epoch: usize) -> Option<f64> {
        None
    }

    /// Device for restored tensors (default CPU).
    fn device(&self) -> Device {
        Device::Cpu
    }
}

/// The generator for `(seed, epoch)`: `StdRng::seed_from_u64(splitmix64(seed) ^ splitmix64(epoch))`
/// mixed again, so neighbouring seeds/epochs get unrelated streams.
pub fn epoch_rng(seed: u64, epoch: usize) -> StdRng {
    StdRng::seed_from_u64(mix(
        mix(seed) ^ mix(0x5eed_0000 + epoch as u64).rotate_left(17)
    ))
}

/// SplitMix64 finaliser.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// One row of `log.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// Epochs completed (1-based: the row after the first epoch has `epoch = 1`).
    pub epoch: usize,
    /// Optimisation steps completed in the whole run.
    pub global_step: u64,
    /// Learning rate of this epoch, if the task reports it.
    pub lr: Option<f64>,
    /// Wall time of this epoch (training + evaluation), seconds.
    pub epoch_s: f64,
    /// Cumulative wall time of this seed's run (continued across resumes), seconds.
    pub time_s: f64,
    /// Training metrics (written with a `train_` prefix).
    pub train: Metrics,
    /// Evaluation metrics (empty on epochs that were not evaluated).
    pub eval: Metrics,
}

impl EpochRecord {
    /// Every metric of the row by its `log.csv` name (`train_<m>` and eval names).
    pub fn all_metrics(&self) -> Metrics {
        let mut m = Metrics::new();
        for (k, v) in self.train.iter() {
            m.insert(format!("train_{k}"), v);
        }
        for (k, v) in self.eval.iter() {
            m.insert(k, v);
        }
        m
    }
}

/// The history of one seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedRun {
    /// The seed.
    pub seed: u64,
    /// One record per completed epoch.
    pub history: Vec<EpochRecord>,
}

impl SeedRun {
    /// All metrics of the last epoch (eval metrics from the last *evaluated* epoch).
    pub fn final_metrics(&self) -> Metrics {
        let mut m = Metrics::new();
        if let Some(last) = self.history.last() {
            for (k, v) in last.train.iter() {
                m.insert(format!("train_{k}"), v);
            }
        }
        if let Some(ev) = self.history.iter().rev().find(|r| !r.eval.is_empty()) {
            for (k, v) in ev.eval.iter() {
                m.insert(k, v);
            }
        }
        m
    }

    /// `(epoch, value)` of a metric (by its `log.csv` name) over the epochs that have it.
    pub fn curve(&self, metric: &str) -> Vec<(f64, f64)> {
        self.history
            .iter()
            .filter_map(|r| r.all_metrics().get(metric).map(|v| (r.epoch as f64, v)))
            .collect()
    }

    /// `(epoch, test accuracy in %)` over the evaluated epochs, from `test_error`.
    pub fn test_accuracy_curve(&self) -> Vec<(f64, f64)> {
        self.curve("test_error")
            .into_iter()
            .map(|(e, err)| (e, 100.0 * (1.0 - err)))
            .collect()
    }
}

/// All seeds of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunOutcome {
    /// In the order run.
    pub seeds: Vec<SeedRun>,
}

impl RunOutcome {
    /// Names of every metric in the final epoch of the first seed.
    pub fn metric_names(&self) -> Vec<String> {
        self.seeds
            .first()
            .map(|s| {
                s.final_metrics()
                    .iter()
                    .map(|(k, _)| k.to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Final value of `metric` for each seed; an error naming the metrics present if one lacks it.
    pub fn final_values(&self, metric: &str) -> Result<Vec<f64>> {
        self.seeds
            .iter()
            .map(|s| {
                let m = s.final_metrics();
                m.get(metric).with_context(|| {
                    let names: Vec<&str> = m.iter().map(|(k, _)| k).collect();
                    format!("seed {}: no metric {metric:?} (have {names:?})", s.seed)
                })
            })
            .collect()
    }

    /// One line per seed of `metric` against epoch, for [`crate::plot::line_chart`].
    pub fn curves(&self, metric: &str) -> Vec<Series> {
        self.seeds
            .iter()
            .map(|s| Series::new(format!("seed {}", s.seed), s.curve(metric)))
            .collect()
    }

    /// Mean over seeds of `metric` per epoch with ±1 sample-std error bars, labelled `name`
    /// (epochs that not every seed has are dropped).
    pub fn mean_curve(&self, metric: &str, name: impl Into<String>) -> Series {
        Series::mean_of(name, self.seeds.iter().map(|s| s.curve(metric)))
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Pointer {
    epoch: usize,
    tensors: String,
    meta: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct CheckpointMeta {
    seed: u64,
    epoch: usize,
    global_step: u64,
    time_s: f64,
    history: Vec<EpochRecord>,
    task: serde_json::Value,
    /// Fingerprint of the configuration trained under (absent in checkpoints of older code).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    config_hash: Option<String>,
    /// That configuration (without the fields that may differ between invocations), so that a
    /// mismatch can name the fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    config: Option<serde_json::Value>,
}

/// Runs an [`EpochTask`] for each seed. Build with [`Runner::new`] (from an experiment) or
/// [`Runner::with_dir`].
#[derive(Debug, Clone)]
pub struct Runner {
    results: ResultsDir,
    seeds: Vec<u64>,
    epochs: usize,
    resume: bool,
    eval_every: usize,
    label: String,
}

impl Runner {
    /// Seeds, `--resume` and the results directory from `exp`; `epochs` from its config.
    pub fn new<C: ExperimentConfig>(exp: &Experiment<C>, epochs: usize) -> Self {
        Self::with_dir(&exp.results, exp.common.seeds(), epochs).resume(exp.common.resume)
    }

    /// A runner writing under `results` (logs in `results/seed_<s>/`).
    pub fn with_dir(results: &ResultsDir, seeds: &[u64], epochs: usize) -> Self {
        Self {
            results: results.clone(),
            seeds: seeds.to_vec(),
            epochs,
            resume: false,
            eval_every: 1,
            label: String::new(),
        }
    }

    /// Continue from each seed's last checkpoint instead of starting over.
    pub fn resume(mut self, resume: bool) -> Self {
        self.resume = resume;
        self
    }

    /// Evaluate every `n` epochs (and always after the last). Default 1.
    pub fn eval_every(mut self, n: usize) -> Self {
        self.eval_every = n.max(1);
        self
    }

    /// Sub-run name, for binaries that train several models per seed (teacher, student…): logs
    /// and checkpoints go to `seed_<s>/<label>/` and the progress bar shows it.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    /// Directory of a seed's `log.csv` and `checkpoint/`.
    pub fn seed_dir(&self, seed: u64) -> Result<PathBuf> {
        let d = self.results.seed_dir(seed)?;
        let d = if self.label.is_empty() {
            d
        } else {
            d.join(&self.label)
        };
        std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        Ok(d)
    }

    /// Run every seed, building each task with `make_task(seed)`.
    pub fn run<T: EpochTask>(
        &self,
        mut make_task: impl FnMut(u64) -> Result<T>,
    ) -> Result<RunOutcome> {
        let mut seeds = Vec::with_capacity(self.seeds.len());
        for &seed in &self.seeds {
            let mut task =
                make_task(seed).with_context(|| format!("building the task for seed {seed}"))?;
            seeds.push(self.run_seed(seed, &mut task)?);
        }
        Ok(RunOutcome { seeds })
    }

    /// Train one seed to the end (or restore it, if its checkpoint is complete and `--resume`
    /// is on). Leaves `task` in its trained state, for binaries that use the model afterwards.
    pub fn run_seed<T: EpochTask + ?Sized>(&self, seed: u64, task: &mut T) -> Result<SeedRun> {
        if self.epochs == 0 {
            bail!("the number of epochs must be at least 1");
        }
        let dir = self.seed_dir(seed)?;
        let ckpt_dir = dir.join("checkpoint");
        let log_path = dir.join("log.csv");
        let mut history = Vec::new();
        let mut global_step = 0u64;
        let mut time_s = 0.0;
        let mut start_epoch = 0;
        if self.resume {
            let stamp = self.results.identity();
            let what = format!("seed {seed}{}", self.label_suffix());
            if let Some(meta) = load_checkpoint(&ckpt_dir, task, stamp, &what)? {
                if meta.seed != seed {
                    bail!(
                        "checkpoint in {} is for seed {}, not {seed}",
                        ckpt_dir.display(),
                        meta.seed
                    );
                }
                if meta.epoch > self.epochs {
                    bail!(
                        "checkpoint in {} is after epoch {}, beyond the {} epochs configured",
                        ckpt_dir.display(),
                        meta.epoch,
                        self.epochs
                    );
                }
                tracing::info!(
                    "seed {seed}{}: resuming after epoch {}",
                    self.label_suffix(),
                    meta.epoch
                );
                start_epoch = meta.epoch;
                global_step = meta.global_step;
                time_s = meta.time_s;
                history = meta.history;
            }
        } else {
            if ckpt_dir.exists() {
                std::fs::remove_dir_all(&ckpt_dir)
                    .with_context(|| format!("removing old checkpoint {}", ckpt_dir.display()))?;
            }
            if log_path.exists() {
                std::fs::remove_file(&log_path)?;
            }
        }
        let total: Option<u64> = (0..self.epochs).map(|e| task.steps_in_epoch(e)).sum();
        let bar = new_bar(total, format!("seed {seed}{}", self.label_suffix()));
        if let Some(total) = total {
            let done: Option<u64> = (0..start_epoch).map(|e| task.steps_in_epoch(e)).sum();
            bar.set_position(done.unwrap_or(0).min(total));
        }
        let mut kept: Option<(usize, PathBuf)> =
            (start_epoch > 0).then(|| (start_epoch, ckpt_dir.clone()));
        for epoch in start_epoch..self.epochs {
            crate::results::note_training();
            let t0 = Instant::now();
            let mut rng = epoch_rng(seed, epoch);
            let mut monitor = StepMonitor::new(seed, epoch, global_step, bar.clone());
            let with_kept = |e: anyhow::Error, kept: &Option<(usize, PathBuf)>| -> anyhow::Error {
                match e.downcast::<NonFinite>() {
                    Ok(mut nf) => {
                        nf.kept_checkpoint = kept.clone();
                        nf.run = self.label.clone();
                        anyhow::Error::new(nf)
                    }
                    Err(e) => e,
                }
            };
            let train = task
                .train_epoch(epoch, &mut rng, &mut monitor)
                .map_err(|e| with_kept(e, &kept))?;
            global_step = monitor.global_step;
            for (k, v) in train.iter() {
                monitor
                    .check(&format!("train_{k}"), v)
                    .map_err(|e| with_kept(e, &kept))?;
            }
            let last = epoch + 1 == self.epochs;
            let eval = if last || (epoch + 1) % self.eval_every == 0 {
                task.evaluate(epoch)
                    .map_err(|e| with_kept(evaluation_error(e, &monitor, &self.label), &kept))?
            } else {
                Metrics::new()
            };
            let epoch_s = t0.elapsed().as_secs_f64();
            time_s += epoch_s;
            let record = EpochRecord {
                epoch: epoch + 1,
                global_step,
                lr: task.learning_rate(epoch),
                epoch_s,
                time_s,
                train,
                eval,
            };
            log_epoch(seed, &self.label_suffix(), self.epochs, &record, &bar);
            history.push(record);
            let state = task.state()?;
            check_finite(&state, &monitor).map_err(|e| with_kept(e, &kept))?;
            let meta = CheckpointMeta {
                seed,
                epoch: epoch + 1,
                global_step,
                time_s,
                history: history.clone(),
                task: state.json.clone(),
                config_hash: self.results.identity().map(|i| i.hash.clone()),
                config: self.results.identity().map(|i| i.config.clone()),
            };
            save_checkpoint(&ckpt_dir, &state, &meta)?;
            kept = Some((epoch + 1, ckpt_dir.clone()));
            atomic_write(&log_path, log_csv(&history).as_bytes())?;
        }
        bar.finish_and_clear();
        if start_epoch == self.epochs {
            // Complete already: make sure the log matches the checkpoint.
            atomic_write(&log_path, log_csv(&history).as_bytes())?;
        }
        Ok(SeedRun { seed, history })
    }

    fn label_suffix(&self) -> String {
        if self.label.is_empty() {
            String::new()
        } else {
            format!(" {}", self.label)
        }
    }
}

fn new_bar(total: Option<u64>, prefix: String) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = match total {
        Some(n) => ProgressBar::new(n).with_style(
            ProgressStyle::with_template(
                "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} steps {msg} (eta {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template(
                "{prefix} [{elapsed_precise}] {spinner} {pos} steps {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    };
    bar.set_prefix(prefix);
    crate::process::progress().add(bar)
}

fn log_epoch(seed: u64, label: &str, epochs: usize, r: &EpochRecord, bar: &ProgressBar) {
    let mut parts: Vec<String> = r
        .all_metrics()
        .iter()
        .map(|(k, v)| format!("{k}={v:.4}"))
        .collect();
    if let Some(lr) = r.lr {
        parts.push(format!("lr={lr:.3e}"));
    }
    bar.set_message(String::new());
    tracing::info!(
        "seed {seed}{label} epoch {}/{epochs} step {} ({:.1}s): {}",
        r.epoch,
        r.global_step,
        r.epoch_s,
        parts.join(" ")
    );
}

/// `log.csv` for a history: `epoch,global_step,lr,epoch_s,time_s,train_*…,<eval>…`; columns are the
/// union over epochs in order of first appearance, blank where an epoch lacks a value.
pub fn log_csv(history: &[EpochRecord]) -> String {
    let mut cols: Vec<String> = Vec::new();
    let rows: Vec<Metrics> = history.iter().map(EpochRecord::all_metrics).collect();
    for m in &rows {
        for (k, _) in m.iter() {
            if !cols.iter().any(|c| c == k) {
                cols.push(k.to_string());
            }
        }
    }
    let mut s = String::from("epoch,global_step,lr,epoch_s,time_s");
    for c in &cols {
        s.push(',');
        s.push_str(&csv_field(c));
    }
    s.push('\n');
    for (r, m) in history.iter().zip(&rows) {
        s.push_str(&format!(
            "{},{},{},{:.3},{:.3}",
            r.epoch,
            r.global_step,
            r.lr.map(|v| format!("{v}")).unwrap_or_default(),
            r.epoch_s,
            r.time_s
        ));
        for c in &cols {
            s.push(',');
            if let Some(v) = m.get(c) {
                s.push_str(&format!("{v}"));
            }
        }
        s.push('\n');
    }
    s
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn check_finite(state: &TaskState, monitor: &StepMonitor) -> Result<()> {
    for (name, t) in &state.tensors {
        if !t.dtype().is_float() {
            continue;
        }
        let v = zoo_models::readout::vec_f64(t)?;
        if let Some(bad) = v.iter().find(|x| !x.is_finite()) {
            monitor.check(&format!("tensor {name}"), *bad)?;
        }
    }
    Ok(())
}

fn save_checkpoint(dir: &Path, state: &TaskState, meta: &CheckpointMeta) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let stem = format!("epoch_{:04}", meta.epoch);
    let tensors = format!("{stem}.safetensors");
    let meta_name = format!("{stem}.json");
    atomic_write_with(&dir.join(&tensors), |tmp| {
        candle_core::safetensors::save(&state.tensors, tmp)?;
        Ok(())
    })?;
    atomic_write_json(&dir.join(&meta_name), meta)?;
    // The commit point: until this rename, `latest.json` names the previous checkpoint.
    atomic_write_json(
        &dir.join("latest.json"),
        &Pointer {
            epoch: meta.epoch,
            tensors: tensors.clone(),
            meta: meta_name.clone(),
        },
    )?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with("epoch_") && name != tensors && name != meta_name {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(())
}

/// A failed evaluation as a [`NonFinite`] when it found non-finite values (diverged weights), so
/// that it names the step, seed and run and the runner adds the checkpoint kept; other errors get
/// the same place as context.
fn evaluation_error(e: anyhow::Error, monitor: &StepMonitor, run: &str) -> anyhow::Error {
    if e.downcast_ref::<NonFinite>().is_some() {
        return e;
    }
    let found = e
        .chain()
        .map(|c| c.to_string())
        .find_map(|m| m.find("non-finite ").map(|i| m[i + 11..].to_string()));
    match found {
        Some(what) => anyhow::Error::new(NonFinite {
            seed: monitor.seed,
            epoch: monitor.epoch,
            step: monitor.global_step,
            what,
            value: f64::NAN,
            kept_checkpoint: None,
            run: String::new(),
            in_evaluation: true,
        }),
        None => e.context(format!(
            "evaluating after global step {} (seed {}{}, epoch {})",
            monitor.global_step,
            monitor.seed,
            if run.is_empty() {
                String::new()
            } else {
                format!(", run {run}")
            },
            monitor.epoch + 1
        )),
    }
}

/// Refuses a checkpoint stamped with another configuration than `now` (naming the fields); one
/// from code that did not stamp checkpoints is accepted with a warning.
fn check_stamp(
    meta: &CheckpointMeta,
    now: Option<&ConfigIdentity>,
    dir: &Path,
    what: &str,
) -> Result<()> {
    let Some(now) = now else { return Ok(()) };
    let (Some(hash), Some(config)) = (&meta.config_hash, &meta.config) else {
        tracing::warn!(
            "{what}: the checkpoint in {} predates configuration stamps; resuming it on the word \
             of config.json",
            dir.display()
        );
        return Ok(());
    };
    if let Err(diffs) = now.check(hash, config) {
        bail!(
            "{what}: the checkpoint in {} was trained under another configuration (hash {hash}) \
             than this run's ({}), so it cannot be resumed: {} (saved → now). config.json was \
             rewritten since, e.g. by a run of other seeds with other settings into this --out. \
             Resume with the settings it was trained under, or rerun without --resume to train \
             it afresh",
            dir.display(),
            now.hash,
            diffs.join("; ")
        );
    }
    Ok(())
}

fn load_checkpoint<T: EpochTask + ?Sized>(
    dir: &Path,
    task: &mut T,
    stamp: Option<&ConfigIdentity>,
    what: &str,
) -> Result<Option<CheckpointMeta>> {
    let pointer = dir.join("latest.json");
    if !pointer.exists() {
        return Ok(None);
    }
    let read_json = |p: &Path| -> Result<serde_json::Value> {
        serde_json::from_slice(&std::fs::read(p)?)
            .with_context(|| format!("reading {}", p.display()))
    };
    let ptr: Pointer = serde_json::from_value(read_json(&pointer)?)?;
    let meta: CheckpointMeta = serde_json::from_value(read_json(&dir.join(&ptr.meta))?)
        .with_context(|| format!("checkpoint {}", dir.join(&ptr.meta).display()))?;
    check_stamp(&meta, stamp, dir, what)?;
    let tpath = dir.join(&ptr.tensors);
    let tensors = candle_core::safetensors::load(&tpath, &task.device())
        .with_context(|| format!("loading {}", tpath.display()))?;
    task.restore(TaskState {
        tensors,
        json: meta.task.clone(),
    })
    .with_context(|| format!("restoring the task from {}", dir.display()))?;
    Ok(Some(meta))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_rngs_differ_and_repeat() {
        use rand::Rng;
        let a: u64 = epoch_rng(0, 0).random();
        let b: u64 = epoch_rng(0, 1).random();
        let c: u64 = epoch_rng(1, 0).random();
        assert!(a != b && a != c && b != c);
        assert_eq!(a, epoch_rng(0, 0).random::<u64>());
    }

    #[test]
    fn csv_union_of_columns() {
        let r = |e, eval: Metrics| EpochRecord {
            epoch: e,
            global_step: 10 * e as u64,
            lr: Some(0.1),
            epoch_s: 1.0,
            time_s: e as f64,
            train: Metrics::new().with("loss", 0.5),
            eval,
        };
        let csv = log_csv(&[
            r(1, Metrics::new()),
            r(2, Metrics::new().with("test_error", 0.25)),
        ]);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines[0],
            "epoch,global_step,lr,epoch_s,time_s,train_loss,test_error"
        );
        assert_eq!(lines[1], "1,10,0.1,1.000,1.000,0.5,");
        assert_eq!(lines[2], "2,20,0.1,1.000,2.000,0.5,0.25");
    }
}
