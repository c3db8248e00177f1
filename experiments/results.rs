//! `results/<binary>/<preset>/`: atomic files, `config.json`, per-seed logs, `summary.json` and
//! `summary.md` (the paper's table with our numbers beside it).
//!
//! Every file is written atomically — to a temporary file in the same directory, synced, then
//! renamed over the target — so an interrupted run never leaves a half-written file that a
//! later `--resume` or the `report` binary would trust.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::cli::ExperimentConfig;
use crate::identity::ConfigIdentity;
use crate::runner::RunOutcome;
use crate::stats;
use crate::Experiment;

/// Temporary files start with this prefix (so tests and tools can recognise leftovers).
pub const TEMP_PREFIX: &str = ".tmp-";

fn temp_path(target: &Path) -> Result<PathBuf> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = target
        .file_name()
        .with_context(|| format!("{}: not a file path", target.display()))?
        .to_string_lossy();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    Ok(dir.join(format!("{TEMP_PREFIX}{name}.{}.{n}", std::process::id())))
}

/// Create `path` atomically: `write` fills a temporary file in the same directory, which is then
/// renamed over `path`. On error the temporary file is removed and `path` is left untouched.
///
/// The file gets the mode of a newly created file (`0666` less the umask, `0644` usually), also
/// when `write` replaces the temporary file with its own: safetensors writes through a `0600`
/// temporary file, which made checkpoints unreadable to the group while every other file was not.
pub fn atomic_write_with(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = temp_path(path)?;
    let result = std::fs::File::create(&tmp)
        .and_then(|f| f.metadata())
        .map(|m| m.permissions())
        .map_err(anyhow::Error::from)
        .and_then(|mode| {
            write(&tmp)?;
            std::fs::set_permissions(&tmp, mode)?;
            Ok(())
        })
        .and_then(|()| {
            // Make the data durable before the rename makes it visible.
            std::fs::File::open(&tmp)?.sync_all()?;
            Ok(())
        })
        .and_then(|()| {
            std::fs::rename(&tmp, path)
                .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
        });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("writing {}", path.display()))
}

/// Write `bytes` to `path` atomically (see [`atomic_write_with`]).
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    atomic_write_with(path, |tmp| {
        let mut f = std::fs::File::create(tmp)?;
        f.write_all(bytes)?;
        Ok(())
    })
}

/// Serialise `value` as pretty JSON to `path`, atomically.
pub fn atomic_write_json<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<()> {
    let mut s = serde_json::to_string_pretty(value)?;
    s.push('\n');
    atomic_write(path, s.as_bytes())
}

/// One experiment's output directory.
#[derive(Debug, Clone)]
pub struct ResultsDir {
    root: PathBuf,
    /// The configuration the runs here train under, stamped on every checkpoint (set by
    /// [`Experiment::setup`]; `None` for a bare directory, whose checkpoints carry no stamp).
    identity: Option<std::sync::Arc<ConfigIdentity>>,
}

impl ResultsDir {
    /// Create (if needed) and open `root`.
    pub fn create(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root)
            .with_context(|| format!("creating results directory {}", root.display()))?;
        Ok(Self {
            root,
            identity: None,
        })
    }

    /// This directory, with the configuration its runs train under.
    pub fn with_identity(mut self, identity: ConfigIdentity) -> Self {
        self.identity = Some(std::sync::Arc::new(identity));
        self
    }

    /// The configuration the runs here train under, if known.
    pub fn identity(&self) -> Option<&ConfigIdentity> {
        self.identity.as_deref()
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `root/name`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// `root/seed_<seed>/`, created if needed: the seed's `log.csv` and `checkpoint/`.
    pub fn seed_dir(&self, seed: u64) -> Result<PathBuf> {
        let d = self.root.join(format!("seed_{seed}"));
        std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        Ok(d)
    }

    /// Write `root/name` atomically.
    pub fn write(&self, name: &str, bytes: &[u8]) -> Result<PathBuf> {
        let p = self.path(name);
        atomic_write(&p, bytes)?;
        Ok(p)
    }

    /// Write `root/name` as pretty JSON, atomically.
    pub fn write_json<T: Serialize + ?Sized>(&self, name: &str, value: &T) -> Result<PathBuf> {
        let p = self.path(name);
        atomic_write_json(&p, value)?;
        Ok(p)
    }

    /// Write `summary.json` and `summary.md`, completing the provenance: the invocations so
    /// far (a `--resume` continues the history of the summary it replaces, so the training
    /// time survives a rewrite) and the load at the end.
    pub fn write_summary(&self, summary: &Summary) -> Result<()> {
        let mut summary = summary.clone();
        let resumed = std::env::args().any(|a| a == "--resume");
        let previous: Option<serde_json::Value> = resumed
            .then(|| std::fs::read(self.path("summary.json")).ok())
            .flatten()
            .and_then(|b| serde_json::from_slice(&b).ok());
        summary
            .run
            .finish(previous.as_ref(), resumed, training_ran());
        let summary = &summary;
        self.write_json("summary.json", summary)?;
        self.write("summary.md", summary.to_markdown().as_bytes())?;
        tracing::info!("wrote {}", self.path("summary.md").display());
        Ok(())
    }
}

/// Mean ± sample std of per-seed values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedStats {
    /// One value per seed, in the order of `Summary::seeds`.
    pub per_seed: Vec<f64>,
    /// Mean over seeds.
    pub mean: f64,
    /// Sample standard deviation over seeds (0 for one seed).
    pub std: f64,
}

impl SeedStats {
    /// Statistics of `per_seed`.
    pub fn new(per_seed: Vec<f64>) -> Self {
        let (mean, std) = stats::mean_std(&per_seed);
        Self {
            per_seed,
            mean,
            std,
        }
    }
}

/// The paper's value for a row and where it is printed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaperValue {
    /// The number as printed (same unit as ours).
    pub value: f64,
    /// Where: "Hinton et al. 2015, §3 (MNIST)", "Table 2, row 4".
    pub source: String,
}

/// One row of the comparison table: a setting, the paper's number, ours per seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// What the row is ("Distilled 784-800-800-10, T = 20").
    pub name: String,
    /// Unit of the values ("test errors", "%", "ECE %").
    pub unit: String,
    /// Whether smaller is better (errors) or larger (accuracy).
    pub lower_is_better: bool,
    /// The paper's value, if the paper has this row.
    pub paper: Option<PaperValue>,
    /// Our per-seed values with mean ± std.
    pub ours: SeedStats,
    /// Decimal places in tables (`None`: chosen from the magnitude).
    pub decimals: Option<usize>,
    /// Free-text remark (e.g. how our setting differs from the paper's).
    pub note: Option<String>,
    /// For a difference of two methods run on the same seeds: the paired t-test of the
    /// per-seed differences (see [`Row::paired_difference`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paired: Option<stats::PairedTest>,
    /// How the row is computed from quantities not written per seed (a ratio of step times, a
    /// fraction of a gap): `report --verify` then lists it instead of looking for its values in
    /// the per-seed files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub derived: Option<String>,
}

impl Row {
    /// A row with our per-seed values; add the paper's value with [`Row::paper`].
    pub fn new(name: impl Into<String>, unit: impl Into<String>, ours: Vec<f64>) -> Self {
        Self {
            name: name.into(),
            unit: unit.into(),
            lower_is_better: true,
            paper: None,
            ours: SeedStats::new(ours),
            decimals: None,
            note: None,
            paired: None,
            derived: None,
        }
    }

    /// Marks the row as computed from quantities the per-seed files do not hold, saying how
    /// (`report --verify` lists it rather than tracing its values).
    pub fn derived(mut self, how: impl Into<String>) -> Self {
        self.derived = Some(how.into());
        self
    }

    /// The row `a − b` of two methods run on the same seeds (`a[i]`, `b[i]` from seed i), with
    /// the paired t-test of the differences: the table then says "resolved" or "not resolved"
    /// (p > 0.05) beside it, as results/PROTOCOL.md asks. Under two pairs there is no test and
    /// the row says so; unequal lengths or non-finite values are an error.
    pub fn paired_difference(
        name: impl Into<String>,
        unit: impl Into<String>,
        a: &[f64],
        b: &[f64],
    ) -> Result<Self> {
        if a.len() != b.len() {
            bail!(
                "a paired difference needs one value per seed on both sides (got {} and {})",
                a.len(),
                b.len()
            );
        }
        let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
        let mut row = Self::new(name, unit, d);
        if a.len() >= 2 {
            row.paired = Some(stats::paired_t_test(a, b)?);
        }
        Ok(row)
    }

    /// The paired test's verdict ("paired t = …, p = …: resolved" / "not resolved (p > 0.05)"),
    /// or why there is none, for a row made by [`Row::paired_difference`].
    pub fn paired_verdict(&self) -> Option<String> {
        match (&self.paired, self.ours.per_seed.len()) {
            (Some(t), _) => Some(t.verdict()),
            (None, 1) => Some("n = 1: no paired test".to_string()),
            (None, _) => None,
        }
    }

    /// Our value as the tables show it: "mean ± std", or "value (n = 1)" for a single run
    /// (never "± 0.00"), with the paired test's p-value on difference rows.
    pub fn ours_cell(&self) -> String {
        let d = self
            .decimals
            .unwrap_or_else(|| auto_decimals(self.ours.mean));
        let mut c = if self.ours.per_seed.len() == 1 {
            format!("{:.d$} (n = 1)", self.ours.mean)
        } else {
            format!("{:.d$} ± {:.d$}", self.ours.mean, self.ours.std)
        };
        if let Some(t) = &self.paired {
            let _ = write!(
                c,
                " ({}, {})",
                stats::format_p(t.p_value),
                if t.resolved() {
                    "resolved"
                } else {
                    "not resolved"
                }
            );
        }
        c
    }
    /// The paper's number and its source.
    pub fn paper(mut self, value: f64, source: impl Into<String>) -> Self {
        self.paper = Some(PaperValue {
            value,
            source: source.into(),
        });
        self
    }
    /// Larger is better (accuracy); the default is lower-is-better (errors).
    pub fn higher_is_better(mut self) -> Self {
        self.lower_is_better = false;
        self
    }
    /// Fixed number of decimals in tables.
    pub fn decimals(mut self, d: usize) -> Self {
        self.decimals = Some(d);
        self
    }
    /// A remark shown under the table.
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }
}

/// The contract's name for a table row.
pub type PaperRow = Row;

/// Where and how the numbers were produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// `git rev-parse --short HEAD`, with `-dirty` if the work tree has changes; "unknown" outside
    /// a git checkout.
    pub git_revision: String,
    /// UTC time the summary was written (ISO 8601).
    pub finished_utc: String,
    /// Wall time of the whole experiment (all seeds), seconds.
    pub wall_time_s: f64,
    /// CPU model from /proc/cpuinfo ("unknown" elsewhere).
    pub cpu: String,
    /// Logical cores available to the process.
    pub cores: usize,
    /// candle-core version the binary was built with.
    pub candle_version: String,
    /// Device the tensors lived on.
    pub device: String,
    /// The ops' implementation that ran (`fast` or `candle`; summaries written before the field
    /// existed read as `fast`, the only one then used on the CPU).
    #[serde(default = "fast_backend")]
    pub backend: String,
    /// The command line, as typed.
    pub command: String,
    /// Version of `results/PROTOCOL.md` the run was made under (1 from 2026-12-08); `None` in
    /// summaries written before it, which `report --verify` lists as legacy, unverified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<u32>,
    /// `rustc --version` of the build (numbers can change with the compiler).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rustc: Option<String>,
    /// The matrix-multiply kernels gemm dispatches to on this CPU (see [`gemm_isa`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gemm_isa: Option<String>,
    /// Threads of the compute pool (rayon's global pool, which candle's CPU ops and ours use).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
    /// `/proc/loadavg` (1, 5, 15 min) at process start: other load slows a run and changes
    /// its times, never its numbers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_start: Option<[f64; 3]>,
    /// `/proc/loadavg` when the summary was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_end: Option<[f64; 3]>,
    /// Wall time of the invocation(s) that trained this folder's runs, seconds: a `--resume`
    /// that only rewrites the summary keeps it and is listed in `invocations` with its own time.
    /// `None` where not known (an earlier invocation left no summary, or a legacy summary).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training_wall_time_s: Option<f64>,
    /// Every invocation that wrote this summary, oldest first (filled by
    /// [`ResultsDir::write_summary`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub invocations: Vec<Invocation>,
}

/// One invocation of a binary on a results folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Invocation {
    /// The command line.
    pub command: String,
    /// The revision it ran.
    pub git_revision: String,
    /// UTC time the process started.
    pub started_utc: String,
    /// UTC time it wrote the summary.
    pub finished_utc: String,
    /// Its wall time, seconds.
    pub wall_time_s: f64,
    /// It ran with `--resume`.
    pub resumed: bool,
    /// It trained (ran an epoch or a planned run) rather than only rebuilding the summary.
    pub trained: bool,
}

impl RunInfo {
    /// Collect for a run that started `wall_time_s` ago on `device`.
    pub fn collect(wall_time_s: f64, device: &candle_core::Device) -> Self {
        Self {
            git_revision: git_revision(),
            finished_utc: utc_now(),
            wall_time_s,
            cpu: cpu_model(),
            cores: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            candle_version: candle_version().to_string(),
            device: match device {
                candle_core::Device::Cpu => "cpu".to_string(),
                d => format!("{d:?}"),
            },
            backend: zoo_models::ops::backend()
                .effective_on(device)
                .name()
                .to_string(),
            command: command_line(),
            protocol: Some(PROTOCOL_VERSION),
            rustc: Some(rustc_version().to_string()),
            gemm_isa: Some(if device.is_cpu() {
                gemm_isa().to_string()
            } else {
                "not used (tensors on a GPU)".to_string()
            }),
            threads: Some(rayon::current_num_threads()),
            load_start: process_start().load,
            load_end: load_average(),
            training_wall_time_s: None,
            invocations: Vec::new(),
        }
    }

    /// The `## Run` section of `summary.md`.
    pub fn to_markdown(&self) -> String {
        let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "not recorded".to_string());
        let load = |l: &Option<[f64; 3]>| {
            l.map_or("not recorded".to_string(), |l| {
                format!("{:.2} {:.2} {:.2}", l[0], l[1], l[2])
            })
        };
        let training = match (self.training_wall_time_s, self.invocations.len()) {
            (Some(t), _) => format!("{t:.1} s"),
            (None, 0) => format!(
                "not recorded (summary written before the protocol; the wall time of the \
                 invocation that wrote it: {:.1} s)",
                self.wall_time_s
            ),
            (None, _) => "not known (the training invocation's summary is not in this folder's \
                          history: a `--resume` without it, or runs trained by other processes)"
                .to_string(),
        };
        let mut s = String::from("\n## Run\n\n");
        let _ = writeln!(s, "- git revision: `{}`", self.git_revision);
        let _ = writeln!(s, "- command: `{}`", self.command);
        let _ = writeln!(s, "- training wall time: {training}");
        if let Some(last) = self.invocations.last().filter(|l| !l.trained) {
            let _ = writeln!(
                s,
                "- this invocation: {:.1} s, rebuilt the summary from the runs' saved results \
                 (no training)",
                last.wall_time_s
            );
        }
        if self.invocations.len() > 1 {
            let _ = writeln!(s, "- invocations (oldest first):");
            for i in &self.invocations {
                let _ = writeln!(
                    s,
                    "  - `{}` at `{}`, {:.1} s, {}, finished {}",
                    i.command,
                    i.git_revision,
                    i.wall_time_s,
                    if i.trained { "trained" } else { "no training" },
                    i.finished_utc
                );
            }
        }
        let _ = writeln!(s, "- finished: {}", self.finished_utc);
        let _ = writeln!(
            s,
            "- device: {}\n- hardware: {} ({} cores; {} threads)\n- gemm kernels: {}",
            self.device,
            self.cpu,
            self.cores,
            self.threads
                .map_or("not recorded".to_string(), |t| t.to_string()),
            opt(&self.gemm_isa)
        );
        let _ = writeln!(
            s,
            "- load average (1, 5, 15 min): {} at start, {} at end",
            load(&self.load_start),
            load(&self.load_end)
        );
        let _ = writeln!(
            s,
            "- {}, candle {}\n- protocol: {}",
            opt(&self.rustc),
            self.candle_version,
            self.protocol.map_or(
                "none (written before results/PROTOCOL.md)".to_string(),
                |p| format!("results/PROTOCOL.md, version {p}")
            )
        );
        s
    }

    /// Whether the run was made from a work tree with uncommitted changes.
    pub fn dirty(&self) -> bool {
        self.git_revision.ends_with("-dirty")
    }

    /// Fills `invocations`, `training_wall_time_s` and `load_end` as the summary is written.
    /// `previous` is the folder's earlier `summary.json` when this invocation resumed (its
    /// history is continued; a legacy one counts as one invocation); `trained`: whether this
    /// invocation trained anything.
    pub fn finish(&mut self, previous: Option<&serde_json::Value>, resumed: bool, trained: bool) {
        let started = process_start().utc.clone();
        let mut history: Vec<Invocation> = match (resumed, previous) {
            (true, Some(prev)) => previous_invocations(prev),
            _ => Vec::new(),
        };
        // A binary that writes its summary twice in one invocation appears once.
        if history
            .last()
            .is_some_and(|h| h.started_utc == started && h.command == self.command)
        {
            history.pop();
        }
        history.push(Invocation {
            command: self.command.clone(),
            git_revision: self.git_revision.clone(),
            started_utc: started,
            finished_utc: self.finished_utc.clone(),
            wall_time_s: self.wall_time_s,
            resumed,
            trained,
        });
        // Known only when the history starts with the invocation that began training.
        let complete = !history[0].resumed;
        self.training_wall_time_s = (complete && history.iter().any(|h| h.trained)).then(|| {
            history
                .iter()
                .filter(|h| h.trained)
                .map(|h| h.wall_time_s)
                .sum()
        });
        self.invocations = history;
        self.load_end = load_average();
    }
}

/// The invocations recorded in an earlier `summary.json`; a summary written before they were
/// recorded counts as one invocation (a training one unless its command has `--resume`).
fn previous_invocations(prev: &serde_json::Value) -> Vec<Invocation> {
    let run = &prev["run"];
    if let Some(list) = run.get("invocations") {
        if let Ok(v) = serde_json::from_value::<Vec<Invocation>>(list.clone()) {
            return v;
        }
    }
    let text = |k: &str| run[k].as_str().unwrap_or("unknown").to_string();
    let Some(wall) = run["wall_time_s"].as_f64() else {
        return Vec::new();
    };
    let command = text("command");
    let resumed = command.split_whitespace().any(|a| a == "--resume");
    vec![Invocation {
        git_revision: text("git_revision"),
        started_utc: "unknown".to_string(),
        finished_utc: text("finished_utc"),
        wall_time_s: wall,
        resumed,
        trained: !resumed,
        command,
    }]
}

fn fast_backend() -> String {
    zoo_models::ops::Backend::Fast.name().to_string()
}

/// The paper's table with our numbers beside it, plus every metric per seed and the run's
/// provenance. Serialised to `summary.json`; rendered to `summary.md`; gathered by `report`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Binary name (`distill`, `mwn`, …).
    pub binary: String,
    /// Preset name.
    pub preset: String,
    /// Table caption ("Hinton et al. 2015, MNIST: test errors").
    pub title: String,
    /// The paper (full reference), shown once per binary in the report.
    pub paper: String,
    /// Seeds run, in order.
    pub seeds: Vec<u64>,
    /// The comparison table.
    pub rows: Vec<Row>,
    /// Final-epoch value of every logged metric, per seed (from the runner).
    pub metrics: BTreeMap<String, SeedStats>,
    /// Plot files (relative to the summary's directory).
    pub plots: Vec<String>,
    /// Free-text remarks (deviations from the paper, caveats).
    pub notes: Vec<String>,
    /// The resolved configuration.
    pub config: serde_json::Value,
    /// Provenance.
    pub run: RunInfo,
}

impl Summary {
    /// Start a summary for `exp`; fills binary, preset, seeds, config and run info (wall time
    /// measured from `exp.started` now).
    pub fn new<C: ExperimentConfig>(
        exp: &Experiment<C>,
        paper: impl Into<String>,
        title: impl Into<String>,
    ) -> Result<Self> {
        Ok(Self {
            binary: exp.binary.clone(),
            preset: exp.common.preset.to_string(),
            title: title.into(),
            paper: paper.into(),
            seeds: exp.common.seeds().to_vec(),
            rows: Vec::new(),
            metrics: BTreeMap::new(),
            plots: Vec::new(),
            notes: Vec::new(),
            config: serde_json::to_value(&exp.config)?,
            run: RunInfo::collect(exp.started.elapsed().as_secs_f64(), &exp.device),
        })
    }

    /// Add a table row.
    pub fn row(&mut self, row: Row) -> &mut Self {
        self.rows.push(row);
        self
    }

    /// Record every final-epoch metric of `outcome` (keys prefixed with `prefix`, e.g. `"teacher/"`,
    /// or `""`). Fails if the outcome's seeds differ from the summary's.
    pub fn add_outcome(&mut self, prefix: &str, outcome: &RunOutcome) -> Result<&mut Self> {
        let seeds: Vec<u64> = outcome.seeds.iter().map(|s| s.seed).collect();
        if seeds != self.seeds {
            bail!(
                "outcome seeds {seeds:?} differ from the summary's {:?}",
                self.seeds
            );
        }
        for name in outcome.metric_names() {
            let vals = outcome.final_values(&name)?;
            self.metrics
                .insert(format!("{prefix}{name}"), SeedStats::new(vals));
        }
        Ok(self)
    }

    /// Add a plot file name (relative to the results directory).
    pub fn plot(&mut self, file: impl Into<String>) -> &mut Self {
        self.plots.push(file.into());
        self
    }

    /// Add a remark.
    pub fn note(&mut self, note: impl Into<String>) -> &mut Self {
        self.notes.push(note.into());
        self
    }

    /// The comparison table alone (markdown), as used in `summary.md` and the report.
    pub fn table_markdown(&self) -> String {
        let n = self.seeds.len();
        let mut s = String::new();
        let _ = writeln!(
            s,
            "| Setting | Paper | Ours (mean ± std, {n} seed{}) | Ours − paper | Unit | Paper source |",
            if n == 1 { "" } else { "s" }
        );
        s.push_str("|---|---:|---:|---:|---|---|\n");
        for r in &self.rows {
            let d = r.decimals.unwrap_or_else(|| auto_decimals(r.ours.mean));
            let paper = r
                .paper
                .as_ref()
                .map_or("—".into(), |p| format!("{:.d$}", p.value));
            let diff = r
                .paper
                .as_ref()
                .map_or("—".into(), |p| format!("{:+.d$}", r.ours.mean - p.value));
            let source = r.paper.as_ref().map_or("—", |p| p.source.as_str());
            let arrow = if r.lower_is_better { "↓" } else { "↑" };
            let _ = writeln!(
                s,
                "| {} | {paper} | {} | {diff} | {} {arrow} | {source} |",
                escape_md(&r.name),
                r.ours_cell(),
                escape_md(&r.unit),
            );
        }
        s
    }

    /// The whole `summary.md`.
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        if self.run.dirty() {
            let _ = writeln!(
                s,
                "**Dirty tree: this run was made from a work tree with uncommitted changes \
                 (`{}`, `--allow-dirty`); its numbers belong to no commit and it is not a result \
                 (results/PROTOCOL.md).**\n",
                self.run.git_revision
            );
        }
        let _ = writeln!(s, "# {} — preset `{}`\n", self.binary, self.preset);
        let _ = writeln!(s, "{}\n\n**{}**\n", self.paper, self.title);
        s.push_str(&self.table_markdown());
        let notes: Vec<String> = self
            .rows
            .iter()
            .filter_map(|r| r.note.as_ref().map(|n| format!("{}: {n}", r.name)))
            .chain(
                self.rows
                    .iter()
                    .filter(|r| r.paired.is_some())
                    .filter_map(|r| r.paired_verdict().map(|v| format!("{}: {v}", r.name))),
            )
            .chain(self.notes.iter().cloned())
            .collect();
        if !notes.is_empty() {
            s.push_str("\nNotes:\n");
            for n in notes {
                let _ = writeln!(s, "- {n}");
            }
        }
        s.push_str("\n## Per seed\n\n| Setting | ");
        s.push_str(
            &self
                .seeds
                .iter()
                .map(|x| format!("seed {x}"))
                .collect::<Vec<_>>()
                .join(" | "),
        );
        s.push_str(" |\n|---|");
        s.push_str(&"---:|".repeat(self.seeds.len()));
        s.push('\n');
        for r in &self.rows {
            let d = r.decimals.unwrap_or_else(|| auto_decimals(r.ours.mean));
            let mut vals: Vec<String> =
                r.ours.per_seed.iter().map(|v| format!("{v:.d$}")).collect();
            // A row with fewer runs than seeds (one teacher shared by every seed) fills the
            // other columns with a dash.
            vals.resize(self.seeds.len().max(vals.len()), "—".to_string());
            let _ = writeln!(s, "| {} | {} |", escape_md(&r.name), vals.join(" | "));
        }
        if !self.plots.is_empty() {
            s.push_str("\n## Plots\n\n");
            for p in &self.plots {
                let _ = writeln!(s, "![{p}]({p})\n");
            }
        }
        let r = &self.run;
        s.push_str(&r.to_markdown());
        s.push_str(
            "\nAll metrics (final epoch, mean ± std over seeds) are in `summary.json`; per-epoch \
             curves in `seed_*/log.csv`.\n",
        );
        s
    }
}

/// Decimal places that show ~4 significant digits for typical magnitudes.
pub fn auto_decimals(x: f64) -> usize {
    let a = x.abs();
    if !a.is_finite() || a >= 100.0 {
        1
    } else if a >= 1.0 {
        2
    } else {
        4
    }
}

fn escape_md(s: &str) -> String {
    s.replace('|', "\\|")
}

/// The version of `results/PROTOCOL.md` that summaries written by this code follow.
pub const PROTOCOL_VERSION: u32 = 1;

/// What is read once, at process start: the revision, the time and the load.
struct ProcessStart {
    revision: String,
    utc: String,
    load: Option<[f64; 3]>,
}

/// Read at the first call (`init_process` makes that the process start), so a run records the
/// code it was started from even if the tree changes while it trains.
fn process_start() -> &'static ProcessStart {
    static START: std::sync::OnceLock<ProcessStart> = std::sync::OnceLock::new();
    START.get_or_init(|| ProcessStart {
        revision: read_git_revision(),
        utc: utc_now(),
        load: load_average(),
    })
}

/// `git rev-parse --short HEAD` plus `-dirty` when `git status --porcelain --untracked-files=no`
/// reports changes; "unknown" when not in a git checkout or git is missing. Read at process
/// start.
pub fn git_revision() -> String {
    process_start().revision.clone()
}

/// Refuses to start a run from a work tree with uncommitted changes unless `allow_dirty`
/// (`--allow-dirty`): its numbers would belong to no commit (results/PROTOCOL.md). Outside a git
/// checkout there is nothing to check.
pub fn check_clean_tree(allow_dirty: bool) -> Result<()> {
    let rev = git_revision();
    if !rev.ends_with("-dirty") {
        return Ok(());
    }
    if !allow_dirty {
        bail!(
            "the work tree has uncommitted changes (`git status --porcelain --untracked-files=no` \
             is not empty), so this run's numbers would belong to no commit. Commit them first, \
             or pass --allow-dirty: the summary then says on its first line that the tree was \
             dirty, and `report --verify` rejects the folder"
        );
    }
    tracing::warn!("--allow-dirty: running from a dirty tree ({rev}); the summary will say so");
    Ok(())
}

static TRAINED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Called by the training loops (the runner's epochs, a plan's runs): this process trained,
/// so its wall time is training time, not the time of a `--resume` that rewrote the summary.
pub fn note_training() {
    TRAINED.store(true, Ordering::Relaxed);
}

/// Whether this process trained anything (see [`note_training`]).
pub fn training_ran() -> bool {
    TRAINED.load(Ordering::Relaxed)
}

/// `/proc/loadavg`'s 1, 5 and 15-minute load averages; `None` where there is none.
pub fn load_average() -> Option<[f64; 3]> {
    let s = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut it = s.split_whitespace().map(|x| x.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

/// `rustc --version` of the build (recorded by `build.rs`).
pub fn rustc_version() -> &'static str {
    option_env!("ZOO_RUSTC_VERSION").unwrap_or("unknown")
}

/// The kernels gemm (0.19, built with `x86-v4` by zoo-models) dispatches every CPU matrix
/// multiply to — the same test as gemm-common's `init_gemm_fn`, so it names what actually runs:
/// AVX-512 kernels where the CPU has `avx512f`, else the FMA/AVX2 ones, else scalar code.
pub fn gemm_isa() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            "avx512f (gemm x86-v4 kernels)"
        } else if std::arch::is_x86_feature_detected!("fma") {
            "fma (gemm x86-v3 AVX2/FMA kernels)"
        } else {
            "scalar (no fma)"
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        if std::arch::is_aarch64_feature_detected!("neon") {
            "neon"
        } else {
            "scalar (no neon)"
        }
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        "scalar"
    }
}

fn read_git_revision() -> String {
    let run = |args: &[&str]| -> Option<String> {
        let out = Command::new("git").args(args).output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    match run(&["rev-parse", "--short", "HEAD"]) {
        Some(rev) if !rev.is_empty() => {
            let dirty = run(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{rev}-dirty")
            } else {
                rev
            }
        }
        _ => "unknown".to_string(),
    }
}

/// CPU model name from /proc/cpuinfo, "unknown" if unavailable.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".to_string())
}

/// Version of candle-core this crate was compiled against (read from the workspace lock file at
/// build time).
pub fn candle_version() -> &'static str {
    const LOCK: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.lock"));
    let mut lines = LOCK.lines();
    while let Some(l) = lines.next() {
        if l.trim() == "name = \"candle-core\"" {
            if let Some(v) = lines
                .next()
                .and_then(|v| v.trim().strip_prefix("version = \""))
            {
                return v.trim_end_matches('"');
            }
        }
    }
    "unknown"
}

/// The process's command line, with arguments quoted where needed.
pub fn command_line() -> String {
    std::env::args()
        .map(|a| {
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || "'\"$`\\".contains(c)) {
                format!("'{}'", a.replace('\'', "'\\''"))
            } else {
                a
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Current UTC time as `YYYY-MM-DDTHH:MM:SSZ` (no date crate needed).
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format_utc(secs)
}

/// Format seconds since the Unix epoch as ISO 8601 UTC (Howard Hinnant's civil-from-days).
pub fn format_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A trained run that belongs to one seed, so results can be gathered seed by seed.
pub trait SeededRun {
    /// The run's seed.
    fn seed(&self) -> u64;
}

/// For each seed in order, `f` of that seed's run matching `pred`; NaN where there is no such run
/// or `f` has no value, so a missing run shows as missing and never as 0.
/// `f` may return `f64` or `Option<f64>`.
pub fn per_seed<R: SeededRun, V: Into<Option<f64>>>(
    seeds: &[u64],
    runs: &[R],
    pred: impl Fn(&R) -> bool,
    f: impl Fn(&R) -> V,
) -> Vec<f64> {
    seeds
        .iter()
        .map(|&s| {
            runs.iter()
                .find(|r| r.seed() == s && pred(r))
                .and_then(|r| f(r).into())
                .unwrap_or(f64::NAN)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Run(u64, &'static str, f64);
    impl SeededRun for Run {
        fn seed(&self) -> u64 {
            self.0
        }
    }

    #[test]
    fn per_seed_orders_by_seed_and_marks_missing_runs_nan() {
        let runs = [Run(2, "a", 3.0), Run(0, "a", 1.0), Run(0, "b", 9.0)];
        let v = per_seed(&[0, 1, 2], &runs, |r| r.1 == "a", |r| Some(r.2));
        assert_eq!(v[0], 1.0);
        assert!(
            v[1].is_nan(),
            "a missing run must not read as a number: {v:?}"
        );
        assert_eq!(v[2], 3.0);
        let none = per_seed(&[0], &runs, |_| true, |_| None);
        assert!(none[0].is_nan());
    }

    #[test]
    fn utc_formatting() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_utc(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn candle_version_is_found() {
        assert!(candle_version().starts_with("0."), "{}", candle_version());
    }

    #[test]
    fn decimals() {
        assert_eq!(auto_decimals(123.4), 1);
        assert_eq!(auto_decimals(1.5), 2);
        assert_eq!(auto_decimals(0.0123), 4);
    }
}
