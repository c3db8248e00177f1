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

    /// Write `summary.json` and `summary.md`.
    pub fn write_summary(&self, summary: &Summary) -> Result<()> {
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
        }
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
        }
    }
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
                "| {} | {paper} | {:.d$} ± {:.d$} | {diff} | {} {arrow} | {source} |",
                escape_md(&r.name),
                r.ours.mean,
                r.ours.std,
                escape_md(&r.unit),
            );
        }
        s
    }

    /// The whole `summary.md`.
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# {} — preset `{}`\n", self.binary, self.preset);
        let _ = writeln!(s, "{}\n\n**{}**\n", self.paper, self.title);
        s.push_str(&self.table_markdown());
        let notes: Vec<String> = self
            .rows
            .iter()
            .filter_map(|r| r.note.as_ref().map(|n| format!("{}: {n}", r.name)))
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
            let vals: Vec<String> = r.ours.per_seed.iter().map(|v| format!("{v:.d$}")).collect();
            let _ = writeln!(s, "| {} | {} |", escape_md(&r.name), vals.join(" | "));
        }
        if !self.plots.is_empty() {
            s.push_str("\n## Plots\n\n");
            for p in &self.plots {
                let _ = writeln!(s, "![{p}]({p})\n");
            }
        }
        let r = &self.run;
        // A `--resume` of finished runs rewrites the summary in seconds: say whose time it is.
        let resumed = if r.command.split_whitespace().any(|a| a == "--resume") {
            " (this invocation, which resumed from checkpoints; each run's training time is \
             `time_s` in its `log.csv`)"
        } else {
            ""
        };
        let _ = write!(
            s,
            "\n## Run\n\n- git revision: `{}`\n- finished: {}\n- wall time: {:.1} s{resumed}\n- device: {}\n\
             - hardware: {} ({} cores)\n- candle {}\n- command: `{}`\n\nAll metrics (final epoch, \
             mean ± std over seeds) are in `summary.json`; per-epoch curves in `seed_*/log.csv`.\n",
            r.git_revision,
            r.finished_utc,
            r.wall_time_s,
            r.device,
            r.cpu,
            r.cores,
            r.candle_version,
            r.command
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

/// `git rev-parse --short HEAD` plus `-dirty` when `git status --porcelain` reports changes;
/// "unknown" when not in a git checkout or git is missing.
pub fn git_revision() -> String {
    // Read once, at the first call (`init_process` makes that the process start), so a run
    // records the code it was started from even if the tree changes while it trains.
    static REV: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    REV.get_or_init(read_git_revision).clone()
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
