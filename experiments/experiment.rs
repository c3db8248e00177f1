//! The validated experiment every binary goes through: the shared flags applied once, the
//! configuration and the data checked, the output folder locked, `config.json` written (or, with
//! `--resume`, compared).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::Device;
use serde_json::Value;

use crate::cli::{CommonArgs, ExperimentConfig, SeedList};
use crate::identity::{diff, strip_excluded, ConfigIdentity};
use crate::out_lock::{LockMode, OutLock};
use crate::results::ResultsDir;

/// A validated experiment: resolved config, its results directory (with `config.json` written),
/// the device and the common flags. Built by [`Experiment::setup`].
#[derive(Debug)]
pub struct Experiment<C> {
    /// Binary name (`results/<binary>/…`, the table's title in the report).
    pub binary: String,
    /// The resolved configuration (preset + overrides), as saved in `config.json`.
    pub config: C,
    /// The common flags, with the seeds resolved (`--seeds` or the preset's).
    pub common: CommonArgs,
    /// `results/<binary>/<preset>/` (or `--out`), stamped with the config's identity.
    pub results: ResultsDir,
    /// Where tensors live.
    pub device: Device,
    /// The ops' implementation (`--backend`, else the device's default), selected on the
    /// thread that set the experiment up.
    pub backend: zoo_models::ops::Backend,
    /// Start of the experiment, for the summary's wall time.
    pub started: Instant,
    /// Held while the experiment lives: no other run writes into `results` meanwhile.
    lock: OutLock,
}

/// How `config.json` is treated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ConfigFile {
    /// Written; with `--resume` compared with the saved one first (and rewritten when it only
    /// adds seeds or changes `jobs`).
    #[default]
    Write,
    /// Created by the first of several processes of one run; the others check theirs against it
    /// and never replace it.
    CreateOrCompare,
}

/// Options of [`Experiment::setup_with`]; the default is a whole run.
#[derive(Debug, Clone, Default)]
pub struct SetupOptions {
    /// The process does part of a run beside others (shards of a plan): shared lock on the
    /// output folder, `config.json` per [`ConfigFile::CreateOrCompare`].
    pub part_of_run: bool,
    /// Datasets read from another folder than the run's default source, by registry name
    /// (e.g. `l2rw --cifar-dir`).
    pub data_dirs: Vec<(String, PathBuf)>,
    /// The parts the invocation runs, where a flag outside the configuration chooses them
    /// (`mwn --parts`): a dry run plans only those. `None`: what the configuration runs.
    pub parts: Option<Vec<String>>,
}

impl<C: ExperimentConfig> Experiment<C> {
    /// A whole run: see [`Experiment::setup_with`].
    pub fn setup(binary: &str, common: &CommonArgs, config: C) -> Result<Self> {
        Self::setup_with(binary, common, config, &SetupOptions::default())
    }

    /// Applies the shared flags ([`Experiment::resolve`]), validates the config and the flags,
    /// checks that every data source resolves, then creates and locks the results directory and
    /// writes `config.json`.
    ///
    /// With `--dry-run` the resolved configuration and the config's
    /// [`dry_run`](ExperimentConfig::dry_run) report are printed once the configuration and flags
    /// are valid, and the process ends (status 0) without checking data, touching the output
    /// folder or training; a binary without a dry run is refused.
    ///
    /// Order matters: everything is checked before a directory or file is created, so an invalid
    /// run leaves nothing behind. With `--resume` the saved `config.json` must equal the resolved
    /// config but for added seeds and `jobs` (a resumed run with other settings would mix two
    /// experiments); the error names the fields that differ.
    pub fn setup_with(
        binary: &str,
        common: &CommonArgs,
        config: C,
        opts: &SetupOptions,
    ) -> Result<Self> {
        if common.dry_run {
            return Err(dry_run_and_exit(binary, common, config, opts));
        }
        crate::results::check_clean_tree(common.allow_dirty)?;
        let Resolved {
            config,
            common,
            device,
            backend,
        } = Resolved::new(binary, common, config)?;
        let dir_for = |name: &str| {
            opts.data_dirs
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, d)| zoo_data::DataSource::Dir(d.clone()))
        };
        crate::preflight::check(
            binary,
            &config.data_needs(),
            &common.data_source(),
            &dir_for,
        )?;
        let results = ResultsDir::create(common.out_dir(binary))?;
        let mode = if opts.part_of_run {
            LockMode::Shared
        } else {
            LockMode::Exclusive
        };
        let lock = OutLock::acquire(results.root(), mode)?;
        let mut value = serde_json::to_value(&config)?;
        crate::backend::record(&mut value, backend);
        let file = if opts.part_of_run {
            ConfigFile::CreateOrCompare
        } else {
            ConfigFile::Write
        };
        write_config::<C>(&results, &value, common.resume, file)?;
        let results =
            results.with_identity(ConfigIdentity::with_upgrade(&value, upgrade_saved::<C>));
        tracing::info!(
            "{binary} --preset {} seeds {:?} on {:?} ({backend} backend) -> {}",
            common.preset,
            common.seeds(),
            device,
            results.root().display()
        );
        // This thread's ops (and, through `parallel`, those of runs side by side).
        zoo_models::ops::set_backend(backend);
        Ok(Self {
            binary: binary.to_string(),
            config,
            common,
            results,
            device,
            backend,
            started: Instant::now(),
            lock,
        })
    }

    /// The shared flags applied to `config`, in order: the preset's seeds unless `--seeds`
    /// (recorded in the config and in the returned flags), `--jobs`, `--steps`, then `--set`
    /// (which may not change a field that has its own flag). Nothing is validated yet.
    pub fn resolve(binary: &str, common: &CommonArgs, mut config: C) -> Result<(C, CommonArgs)> {
        crate::cli::check_settings(&common.set)?;
        let mut common = common.clone();
        let seeds = match &common.seeds {
            Some(s) => s.0.clone(),
            None => config.default_seeds(),
        };
        config.set_seeds(&seeds);
        common.seeds = Some(SeedList(seeds));
        if let Some(n) = common.jobs {
            config
                .set_jobs(n)
                .with_context(|| format!("--jobs {n}: not an option of {binary}"))?;
        }
        if let Some(n) = common.steps {
            config
                .rescale_steps(n)
                .with_context(|| format!("--steps {n}: not an option of {binary}"))?;
        }
        let config = crate::cli::apply_settings(config, &common.set)?;
        Ok((config, common))
    }

    /// The lock file held on the results directory.
    pub fn lock_file(&self) -> &std::path::Path {
        self.lock.path()
    }
}

/// What a run and a dry run both start from: the flags and `--set` applied, the configuration
/// and the flags validated, the device and the backend chosen.
struct Resolved<C> {
    config: C,
    common: CommonArgs,
    device: candle_core::Device,
    backend: zoo_models::ops::Backend,
}

impl<C: ExperimentConfig> Resolved<C> {
    fn new(binary: &str, common: &CommonArgs, config: C) -> Result<Self> {
        let (config, common) = Experiment::resolve(binary, common, config)?;
        config.validate().with_context(|| {
            format!(
                "invalid configuration for {binary} --preset {}",
                common.preset
            )
        })?;
        common.validate()?;
        let device = crate::device(common.cpu)?;
        let backend = crate::backend::resolve(common.backend, &device)?;
        Ok(Self {
            config,
            common,
            device,
            backend,
        })
    }
}

/// `--dry-run`: resolves and validates as [`Experiment::setup_with`] does, prints the resolved
/// configuration (with its backend, as `config.json` would hold it) and the dry-run report, and
/// ends the process with status 0. Returns only an error (invalid configuration or flags, no dry
/// run in this binary, a failed timing), for the caller to return.
fn dry_run_and_exit<C: ExperimentConfig>(
    binary: &str,
    common: &CommonArgs,
    config: C,
    opts: &SetupOptions,
) -> anyhow::Error {
    let report = || -> Result<String> {
        let Resolved {
            config,
            common,
            device,
            backend,
        } = Resolved::new(binary, common, config)?;
        zoo_models::ops::set_backend(backend);
        let mut value = serde_json::to_value(&config)?;
        crate::backend::record(&mut value, backend);
        let args = crate::dry_run::DryRunArgs {
            seeds: common.seeds(),
            device: &device,
            parts: opts.parts.as_deref(),
        };
        let Some(report) = config.dry_run(&args) else {
            bail!("--dry-run: {binary} has no dry run yet");
        };
        Ok(format!(
            "{binary} --preset {}: resolved configuration\n{}\n{}",
            common.preset,
            serde_json::to_string_pretty(&value)?,
            report?
        ))
    };
    match report() {
        Ok(text) => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let written = out.write_all(text.as_bytes()).and_then(|()| out.flush());
            std::process::exit(if written.is_ok() { 0 } else { 1 })
        }
        Err(e) => e,
    }
}

/// Writes `config.json`, or checks it against the saved one (`--resume`, or a part of a run).
fn write_config<C: ExperimentConfig>(
    results: &ResultsDir,
    value: &Value,
    resume: bool,
    file: ConfigFile,
) -> Result<()> {
    let existing = results.path("config.json");
    if file == ConfigFile::CreateOrCompare && !existing.exists() {
        create_if_absent(&existing, value)?;
    }
    if !(resume || file == ConfigFile::CreateOrCompare) || !existing.exists() {
        results.write_json("config.json", value)?;
        return Ok(());
    }
    let raw: Value = serde_json::from_slice(&std::fs::read(&existing)?)
        .with_context(|| format!("reading {}", existing.display()))?;
    let saved = upgrade_saved::<C>(raw);
    if saved == *value {
        return Ok(());
    }
    if let Err(why) = compatible(&saved, value) {
        bail!(
            "{}: the configuration differs from the one saved in {}: {why}; rerun with the same \
             flags, or without --resume to start over",
            if resume {
                "--resume"
            } else {
                "a part of a run"
            },
            existing.display()
        );
    }
    if file == ConfigFile::Write {
        tracing::info!(
            "--resume: updating {} (more seeds, or another --jobs; the saved seeds resume from \
             their checkpoints)",
            existing.display()
        );
        results.write_json("config.json", value)?;
    }
    Ok(())
}

/// Whether a run saved as `saved` may continue as `new`: the same configuration but for
/// `jobs` and a `seeds` list that keeps every saved seed. Otherwise what differs.
fn compatible(saved: &Value, new: &Value) -> Result<(), String> {
    let mut diffs = Vec::new();
    diff(&strip_excluded(saved), &strip_excluded(new), "", &mut diffs);
    if !diffs.is_empty() {
        return Err(format!("{} (saved → now)", diffs.join("; ")));
    }
    let seeds = |v: &Value| v.get("seeds").and_then(Value::as_array).cloned();
    if let (Some(s), Some(n)) = (seeds(saved), seeds(new)) {
        if !s.iter().all(|x| n.contains(x)) {
            return Err(format!(
                "seeds {n:?} leave out saved seeds (saved {s:?}; --seeds may only add to them)"
            ));
        }
    }
    Ok(())
}

/// Writes `value` to `path` unless it exists, never replacing a file (a hard link of a complete
/// temporary file: of several processes exactly one creates it).
fn create_if_absent(path: &std::path::Path, value: &Value) -> Result<()> {
    let tmp = path.with_file_name(format!(
        "{}config.json.{}",
        crate::results::TEMP_PREFIX,
        std::process::id()
    ));
    crate::results::atomic_write_json(&tmp, value)?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
    }
}

/// A saved `config.json` read through today's config type and written back: fields added
/// since it was saved (with their serde defaults) read as those defaults, so `--resume` of an
/// older run compares like with like. Left as it is if it no longer parses.
fn with_current_defaults<C: ExperimentConfig>(raw: Value) -> Value {
    serde_json::from_value::<C>(raw.clone())
        .ok()
        .and_then(|c| serde_json::to_value(&c).ok())
        .unwrap_or(raw)
}

/// [`with_current_defaults`], keeping the saved `backend` (`fast` for configs saved before it).
fn upgrade_saved<C: ExperimentConfig>(raw: Value) -> Value {
    crate::backend::carry_saved(&raw, with_current_defaults::<C>(raw.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A run saved before a field with a serde default existed resumes (the field reads as
    /// its default); one whose saved value would differ from today's does not.
    #[test]
    fn resume_reads_fields_added_since_as_their_defaults() {
        use crate::mlnt::MlntConfig;
        let now = MlntConfig::cpu();
        let mut old = serde_json::to_value(&now).unwrap();
        old["mlnt"]
            .as_object_mut()
            .unwrap()
            .remove("ce_second_round");
        old.as_object_mut().unwrap().remove("jobs");
        assert_ne!(old, serde_json::to_value(&now).unwrap());
        assert_eq!(
            with_current_defaults::<MlntConfig>(old.clone()),
            serde_json::to_value(&now).unwrap()
        );
        let mut ablation = now.clone();
        ablation.mlnt.ce_second_round = true;
        assert_ne!(
            with_current_defaults::<MlntConfig>(old),
            serde_json::to_value(&ablation).unwrap()
        );
    }

    #[test]
    fn resume_may_add_seeds_and_change_jobs_only() {
        let saved = json!({"seeds": [0], "lr": 0.1, "jobs": 1});
        assert!(compatible(&saved, &json!({"seeds": [0, 1], "lr": 0.1, "jobs": 1})).is_ok());
        assert!(compatible(&saved, &json!({"seeds": [0], "lr": 0.1, "jobs": 2})).is_ok());
        let e = compatible(&saved, &json!({"seeds": [1], "lr": 0.1, "jobs": 1})).unwrap_err();
        assert!(e.contains("leave out saved seeds"), "{e}");
        let e = compatible(&saved, &json!({"seeds": [0, 1], "lr": 0.2, "jobs": 1})).unwrap_err();
        assert!(e.contains("lr: 0.1 → 0.2"), "{e}");
        assert!(compatible(&saved, &json!({"seeds": [0, 1]})).is_err());
        assert!(compatible(&json!({"lr": 0.1}), &json!({"lr": 0.1})).is_ok());
    }
}
