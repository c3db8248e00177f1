//! Command-line flags shared by every binary, presets, and the override/validate pattern.
//!
//! Each binary owns a serde `Config` struct implementing [`ExperimentConfig`]: `preset` gives the
//! paper/cpu/smoke values, per-field `Option<T>` clap flags override them through
//! [`apply_overrides!`](crate::apply_overrides), and `validate` rejects bad values before
//! [`Experiment::setup`](crate::Experiment::setup) writes anything or starts any work.
//!
//! The flags every binary shares are applied in one place, `Experiment::setup`, through the
//! config's [`ExperimentConfig`] hooks: the preset's seeds unless `--seeds`, `--jobs`, `--steps`
//! and `--set`, in that order.

use std::fmt;
use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// Size of an experiment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// The paper's setting (GPU-sized).
    Paper,
    /// Reduced so that it finishes on a laptop CPU in minutes to an hour; same method.
    Cpu,
    /// Seconds: checks that the pipeline runs end to end; numbers are meaningless.
    Smoke,
}

/// `as_str` (the name on the command line and in tables, logs, result keys and paths) and
/// `Display` of a fieldless enum, from its variants' names:
/// `zoo::enum_names!(Preset { Paper => "paper", Cpu => "cpu" });`.
#[macro_export]
macro_rules! enum_names {
    ($t:ident { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $t {
            /// Name on the command line and in tables, logs, result keys and paths.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($t::$variant => $name,)+
                }
            }
        }

        impl ::std::fmt::Display for $t {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

enum_names!(Preset {
    Paper => "paper",
    Cpu => "cpu",
    Smoke => "smoke",
});

/// Parse a comma-separated list of seeds ("0,1,2"): non-empty, no duplicates.
pub fn parse_seeds(s: &str) -> Result<Vec<u64>, String> {
    let mut seeds = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        let seed: u64 = part.parse().map_err(|_| {
            format!("seed {part:?} is not a non-negative integer (expected e.g. 0,1,2)")
        })?;
        if seeds.contains(&seed) {
            return Err(format!("seed {seed} is given twice"));
        }
        seeds.push(seed);
    }
    Ok(seeds)
}

fn parse_seed_list(s: &str) -> Result<SeedList, String> {
    parse_seeds(s).map(SeedList)
}

fn parse_threads(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("--threads must be a positive integer, got {s:?}")),
    }
}

fn parse_positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("expected a positive integer, got {s:?}")),
    }
}

/// A validated list of seeds (clap value type for `--seeds`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedList(pub Vec<u64>);

/// Flags every binary accepts; embed with `#[command(flatten)] common: CommonArgs`.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub struct CommonArgs {
    /// Experiment size: the paper's setting, a CPU-sized reduction, or a seconds-long smoke run.
    #[arg(long, value_enum, default_value_t = Preset::Cpu)]
    pub preset: Preset,
    /// Comma-separated seeds; each gives one full run, reported as mean ± std [default: the
    /// preset's].
    #[arg(long, value_parser = parse_seed_list)]
    pub seeds: Option<SeedList>,
    /// Run on the CPU even if a CUDA or Metal device is available.
    #[arg(long)]
    pub cpu: bool,
    /// Run even if the work tree has uncommitted changes (`git status --porcelain
    /// --untracked-files=no`); the summary then says on its first line that the tree was dirty.
    /// Without it such a run is refused: its numbers would belong to no commit.
    #[arg(long)]
    #[serde(default)]
    pub allow_dirty: bool,
    /// Output directory [default: results/BINARY/PRESET].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Continue from the last checkpoint of each seed (the saved config.json must match, except
    /// that `--seeds` may add seeds to the saved ones).
    #[arg(long)]
    pub resume: bool,
    /// Read datasets from this directory (parquet layout) instead of the Hugging Face hub cache.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Hugging Face cache directory (sets HF_HOME for this process).
    #[arg(long, value_name = "DIR")]
    pub hf_home: Option<PathBuf>,
    /// CPU threads for candle and rayon (read by `init_process` before any thread pool starts).
    #[arg(long, value_name = "N", value_parser = parse_threads)]
    pub threads: Option<usize>,
    /// Override any field of the resolved configuration (as written to config.json), by its
    /// dotted path: `--set cifar.train_limit=3000 --set cifar.augment=false`. The value is read
    /// as JSON, else as a string; applied after the other flags, then validated.
    #[arg(long = "set", value_name = "PATH=VALUE", value_parser = parse_setting)]
    #[serde(default)]
    pub set: Vec<Setting>,
    /// Training runs executed side by side on their own threads, for experiments made of many
    /// runs (numbers unchanged; per-step times then include the contention). 2 suits a 2-core
    /// CPU, where much of a step is serial.
    #[arg(long, value_name = "N", value_parser = parse_positive)]
    #[serde(default)]
    pub jobs: Option<usize>,
    /// Training steps, for step-based experiments: the learning-rate milestones are scaled with
    /// them (evaluation rounds too, when the steps no longer divide into the preset's rounds).
    #[arg(long, value_name = "N", value_parser = parse_positive)]
    #[serde(default)]
    pub steps: Option<usize>,
    /// The ops' implementation: `fast` (the CPU fast path) or `candle` (candle's own ops, what a
    /// GPU runs, here on the CPU too) [default: fast on the CPU, candle on a GPU]. Recorded in
    /// config.json; a run resumes only under the backend it was trained with.
    #[arg(long, value_name = "fast|candle")]
    #[serde(default)]
    pub backend: Option<zoo_models::ops::Backend>,
    /// Print the resolved configuration, the number of runs and steps, and the projected wall
    /// time on this device (from a few timed steps on synthetic inputs); train, read and write
    /// nothing.
    #[arg(long)]
    #[serde(default)]
    pub dry_run: bool,
}

/// Top-level config fields `--set` may not change: each has its own flag, whose value would
/// otherwise disagree with the field (a smoke run labelled `cpu`, seeds that are not the ones run).
const FLAG_FIELDS: &[(&str, &str)] = &[
    ("preset", "the preset is chosen with --preset only"),
    ("seeds", "the seeds are chosen with --seeds"),
    ("jobs", "use --jobs"),
];

/// Rejects `--set` on a field that has its own flag (see `FLAG_FIELDS`).
pub fn check_settings(settings: &[Setting]) -> Result<()> {
    for st in settings {
        let top = st.path.split('.').next().unwrap_or_default();
        if let Some((_, why)) = FLAG_FIELDS.iter().find(|(f, _)| *f == top) {
            bail!("--set {}: not settable with --set: {why}", st.path);
        }
    }
    Ok(())
}

/// One `--set PATH=VALUE` override: a dotted path into the config's JSON form and a value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Setting {
    /// Dotted path, e.g. `cifar.opt.lr` (array elements by index: `settings.0.noise`).
    pub path: String,
    /// The new value.
    pub value: serde_json::Value,
}

fn parse_setting(s: &str) -> Result<Setting, String> {
    let (path, raw) = s
        .split_once('=')
        .ok_or_else(|| format!("--set {s:?}: expected PATH=VALUE, e.g. opt.lr=0.05"))?;
    let path = path.trim();
    if path.is_empty() || path.split('.').any(str::is_empty) {
        return Err(format!("--set {s:?}: empty path component"));
    }
    let value = serde_json::from_str(raw.trim())
        .unwrap_or_else(|_| serde_json::Value::String(raw.trim().to_string()));
    Ok(Setting {
        path: path.to_string(),
        value,
    })
}

/// Applies `--set` overrides to a config through its JSON form. Every path must name an existing
/// field (a typo is an error, not a silently ignored flag) and the result must deserialise; an
/// ill-typed value is reported with the path of the first `--set` that breaks it.
pub fn apply_settings<C: Serialize + DeserializeOwned>(
    config: C,
    settings: &[Setting],
) -> Result<C> {
    if settings.is_empty() {
        return Ok(config);
    }
    let mut v = serde_json::to_value(&config)?;
    for (i, st) in settings.iter().enumerate() {
        set_one(&mut v, st)?;
        if let Err(e) = serde_json::from_value::<C>(v.clone()) {
            // A later --set may complete this one (e.g. an enum's tag, then its fields): only the
            // whole list decides, but the first breaking path is the one to name.
            if serde_json::from_value::<C>(applied(&v, &settings[i + 1..])?).is_err() {
                bail!("--set {}={}: {e}", st.path, st.value);
            }
        }
    }
    serde_json::from_value(v).map_err(|e| anyhow::anyhow!("--set: {e}"))
}

/// `v` with `settings` applied (paths checked, types not).
fn applied(v: &serde_json::Value, settings: &[Setting]) -> Result<serde_json::Value> {
    let mut v = v.clone();
    for st in settings {
        set_one(&mut v, st)?;
    }
    Ok(v)
}

/// Puts one setting's value at its path in `v`; the path must exist.
fn set_one(v: &mut serde_json::Value, st: &Setting) -> Result<()> {
    let mut node = v;
    for key in st.path.split('.') {
        node = match node {
            serde_json::Value::Object(m) => {
                if !m.contains_key(key) {
                    let known: Vec<&String> = m.keys().collect();
                    bail!(
                        "--set {}: no field {key:?} here (fields: {known:?})",
                        st.path
                    )
                }
                m.get_mut(key).expect("checked above")
            }
            serde_json::Value::Array(a) => {
                let i: usize = key.parse().map_err(|_| {
                    anyhow::anyhow!("--set {}: {key:?} indexes a list: use a number", st.path)
                })?;
                let len = a.len();
                match a.get_mut(i) {
                    Some(n) => n,
                    None => bail!("--set {}: index {i} out of range (length {len})", st.path),
                }
            }
            _ => bail!("--set {}: {key:?} goes below a plain value", st.path),
        };
    }
    *node = st.value.clone();
    Ok(())
}

impl CommonArgs {
    /// Defaults as if no flag were given, for a preset (tests and programmatic use).
    pub fn for_preset(preset: Preset) -> Self {
        Self {
            preset,
            seeds: None,
            cpu: true,
            allow_dirty: false,
            out: None,
            resume: false,
            data_dir: None,
            hf_home: None,
            threads: None,
            set: Vec::new(),
            jobs: None,
            steps: None,
            backend: None,
            dry_run: false,
        }
    }

    /// The seeds to run, in order: `--seeds`, or after [`Experiment::setup`](crate::Experiment::setup)
    /// the preset's; seed 0 before that.
    pub fn seeds(&self) -> &[u64] {
        self.seeds.as_ref().map_or(&[0], |s| &s.0)
    }

    /// Output directory: `--out`, else `results/<binary>/<preset>` relative to the working
    /// directory (the repository root under `cargo run`).
    pub fn out_dir(&self, binary: &str) -> PathBuf {
        self.out.clone().unwrap_or_else(|| {
            PathBuf::from("results")
                .join(binary)
                .join(self.preset.as_str())
        })
    }

    /// Where datasets come from: `--data-dir` or the hub cache.
    pub fn data_source(&self) -> zoo_data::DataSource {
        match &self.data_dir {
            Some(d) => zoo_data::DataSource::Dir(d.clone()),
            None => zoo_data::DataSource::Hub,
        }
    }

    /// Checks the values clap cannot (directories exist, seeds non-empty).
    pub fn validate(&self) -> Result<()> {
        if self.seeds.as_ref().is_some_and(|s| s.0.is_empty()) {
            bail!("--seeds: give at least one seed");
        }
        if let Some(d) = &self.data_dir {
            if !d.is_dir() {
                bail!("--data-dir {}: not a directory", d.display());
            }
        }
        if let Some(d) = &self.hf_home {
            if !d.is_dir() {
                bail!("--hf-home {}: not a directory", d.display());
            }
        }
        if let Some(out) = &self.out {
            if out.exists() && !out.is_dir() {
                bail!("--out {}: exists and is not a directory", out.display());
            }
        }
        if self.threads == Some(0) {
            bail!("--threads must be at least 1");
        }
        Ok(())
    }
}

/// A binary's experiment configuration: presets plus validation, and the hooks through which
/// [`Experiment::setup`](crate::Experiment::setup) applies the shared flags (each with a default
/// for configs without the matching field).
///
/// The resolved value (after overrides) is written to `config.json`, and `--resume` refuses to
/// continue a run whose saved config differs.
pub trait ExperimentConfig: Serialize + DeserializeOwned + Clone + fmt::Debug {
    /// The values of a preset.
    fn preset(preset: Preset) -> Self;
    /// Rejects invalid values with a message naming the field (called before any work).
    fn validate(&self) -> Result<()>;
    /// The seeds run when `--seeds` is not given (the preset's).
    fn default_seeds(&self) -> Vec<u64> {
        vec![0]
    }
    /// Records the seeds that will run, in a config that keeps them in `config.json`.
    fn set_seeds(&mut self, _seeds: &[u64]) {}
    /// `--jobs N`; an error for experiments that do not run trainings side by side.
    fn set_jobs(&mut self, _jobs: usize) -> Result<()> {
        bail!("this experiment does not train runs side by side")
    }
    /// `--steps N`: the training length with its schedule scaled (see [`rescale_schedule`]); an
    /// error for experiments that count epochs, or several step budgets (their own flags).
    fn rescale_steps(&mut self, _steps: usize) -> Result<()> {
        bail!("this experiment has no single step budget (see --help for its own flags)")
    }
    /// The data it reads, checked before any training.
    fn data_needs(&self) -> Vec<crate::preflight::DataNeed> {
        Vec::new()
    }
    /// `--dry-run`: the report of [`crate::dry_run::report`] on this configuration (implement
    /// [`crate::dry_run::DryRun`] and return `Some(crate::dry_run::report(self, args))`);
    /// `None`: the binary has no dry run.
    fn dry_run(&self, _args: &crate::dry_run::DryRunArgs) -> Option<Result<String>> {
        None
    }
}

/// The [`ExperimentConfig::preset`] of a config with `paper()`, `cpu()` and `smoke()`
/// constructors, written inside its `impl ExperimentConfig` block: `zoo::preset_constructors!();`.
#[macro_export]
macro_rules! preset_constructors {
    () => {
        fn preset(p: $crate::cli::Preset) -> Self {
            match p {
                $crate::cli::Preset::Paper => Self::paper(),
                $crate::cli::Preset::Cpu => Self::cpu(),
                $crate::cli::Preset::Smoke => Self::smoke(),
            }
        }
    };
}

/// The seed hooks of an [`ExperimentConfig`] that keeps its seeds in a `seeds: Vec<u64>` field
/// ([`ExperimentConfig::default_seeds`], [`ExperimentConfig::set_seeds`]), written inside its
/// `impl ExperimentConfig` block: `zoo::seeds_in_config!();`. With `jobs`
/// (`zoo::seeds_in_config!(jobs);`) also [`ExperimentConfig::set_jobs`] on a `jobs: usize`
/// field (whose serde default is [`one_job`]).
#[macro_export]
macro_rules! seeds_in_config {
    () => {
        fn default_seeds(&self) -> Vec<u64> {
            self.seeds.clone()
        }

        fn set_seeds(&mut self, seeds: &[u64]) {
            self.seeds = seeds.to_vec();
        }
    };
    (jobs) => {
        $crate::seeds_in_config!();

        fn set_jobs(&mut self, jobs: usize) -> ::anyhow::Result<()> {
            self.jobs = jobs;
            Ok(())
        }
    };
}

/// One run at a time: the serde default of a config's `jobs` field (configs saved without it).
pub fn one_job() -> usize {
    1
}

/// `--steps N` on a step-indexed schedule trained in rounds: milestones scale with the steps
/// (rounded down, repeats dropped), the rounds fall back to one when they no longer divide the
/// steps, and evaluation every `eval_every_rounds` is clamped to the rounds (the last round is
/// always evaluated).
pub fn rescale_schedule(
    steps: &mut usize,
    rounds: &mut usize,
    eval_every_rounds: &mut usize,
    milestones: &mut Vec<usize>,
    new_steps: usize,
) {
    let old = (*steps).max(1);
    *milestones = milestones.iter().map(|&m| m * new_steps / old).collect();
    milestones.dedup();
    if new_steps == 0 || !new_steps.is_multiple_of(*rounds) {
        *rounds = 1;
    }
    if *eval_every_rounds > *rounds {
        *eval_every_rounds = (*rounds).max(1);
    }
    *steps = new_steps;
}

/// Apply `Option<T>` override flags to config fields of the same name:
/// `apply_overrides!(cfg, args; epochs, lr)` is
/// `if let Some(v) = args.epochs.clone() { cfg.epochs = v; } …`.
#[macro_export]
macro_rules! apply_overrides {
    ($cfg:expr, $args:expr; $($field:ident),+ $(,)?) => {
        $( if let Some(v) = $args.$field.clone() { $cfg.$field = v; } )+
    };
}

/// The flags of a noisy-label binary whose runs fall into parts (`mwn`, `mlnt`), flattened into
/// its arguments beside [`CommonArgs`]: which parts and methods run, and noise settings that
/// replace the preset's (see [`vary_first`]).
#[derive(Args, Debug, Clone)]
pub struct NoisyLabelArgs<P, M>
where
    P: ValueEnum + Clone + Send + Sync + 'static,
    M: ValueEnum + Clone + Send + Sync + 'static,
{
    /// Parts to run (comma-separated; default: the preset's).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub parts: Option<Vec<P>>,
    /// Methods (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub methods: Option<Vec<M>>,
    /// Noise settings, e.g. `uniform:0.4,pair:0.2` (replaces the preset's; the first preset
    /// setting's dataset, network and held-out clean set size are kept).
    #[arg(long, value_delimiter = ',')]
    pub noise: Option<Vec<String>>,
}

/// A flag that varies one field of the preset's first setting (`--noise a,b`): `settings`
/// becomes one copy of that first setting per value, each changed by `set`; an error naming
/// `flag` when the preset has no setting.
pub fn vary_first<S: Clone, V>(
    settings: &mut Vec<S>,
    values: &[V],
    flag: &str,
    set: impl Fn(&mut S, &V),
) -> Result<()> {
    let Some(first) = settings.first().cloned() else {
        bail!("{flag}: the preset has no setting to take the dataset and network from");
    };
    *settings = values
        .iter()
        .map(|v| {
            let mut s = first.clone();
            set(&mut s, v);
            s
        })
        .collect();
    Ok(())
}

/// `v` without repeats, first occurrence kept (a flag may list a method twice).
pub fn dedup<T: PartialEq + Clone>(v: &[T]) -> Vec<T> {
    let mut out: Vec<T> = Vec::new();
    for x in v {
        if !out.contains(x) {
            out.push(x.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Opt {
        lr: f64,
        milestones: Vec<usize>,
    }

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Cfg {
        name: String,
        augment: bool,
        limit: Option<usize>,
        opt: Opt,
    }

    fn cfg() -> Cfg {
        Cfg {
            name: "a".into(),
            augment: true,
            limit: None,
            opt: Opt {
                lr: 0.1,
                milestones: vec![5, 8],
            },
        }
    }

    fn set(args: &[&str]) -> Result<Cfg> {
        let s: Vec<Setting> = args
            .iter()
            .map(|a| parse_setting(a).map_err(anyhow::Error::msg))
            .collect::<Result<_>>()?;
        apply_settings(cfg(), &s)
    }

    #[test]
    fn set_overrides_nested_fields_lists_and_strings() {
        let c = set(&[
            "opt.lr=0.05",
            "augment=false",
            "limit=3000",
            "opt.milestones.1=9",
            "name=cifar100",
        ])
        .unwrap();
        assert_eq!(c.opt.lr, 0.05);
        assert!(!c.augment);
        assert_eq!(c.limit, Some(3000));
        assert_eq!(c.opt.milestones, vec![5, 9]);
        assert_eq!(c.name, "cifar100");
        assert_eq!(set(&["limit=null"]).unwrap().limit, None);
        assert_eq!(set(&[]).unwrap(), cfg());
    }

    #[test]
    fn set_rejects_unknown_paths_and_wrong_types() {
        let e = set(&["opt.lrr=0.1"]).unwrap_err().to_string();
        assert!(e.contains("lrr") && e.contains("lr"), "{e}");
        assert!(set(&["opt.milestones.7=1"]).is_err());
        assert!(set(&["opt.lr.x=1"]).is_err());
        assert!(set(&["augment=maybe"]).is_err());
        assert!(parse_setting("opt.lr").is_err());
        assert!(parse_setting("opt..lr=1").is_err());
    }

    #[test]
    fn an_ill_typed_value_names_its_path() {
        let e = set(&["opt.lr=0.05", "augment=maybe"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--set augment=") && e.contains("boolean"), "{e}");
        let e = set(&["opt.milestones=\"soon\"", "limit=3"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--set opt.milestones="), "{e}");
    }

    #[test]
    fn fields_with_their_own_flag_are_not_settable() {
        for (path, flag) in [
            ("preset=cpu", "--preset"),
            ("seeds=[0,1]", "--seeds"),
            ("jobs=2", "--jobs"),
        ] {
            let s = vec![parse_setting(path).unwrap()];
            let e = check_settings(&s).unwrap_err().to_string();
            assert!(e.contains(flag), "{path}: {e}");
        }
        assert!(check_settings(&[parse_setting("opt.lr=0.1").unwrap()]).is_ok());
        assert!(check_settings(&[parse_setting("cifar.preset=1").unwrap()]).is_ok());
    }

    #[test]
    fn steps_rescale_milestones_rounds_and_the_evaluation_interval() {
        let (mut steps, mut rounds, mut every, mut ms) = (1200, 12, 4, vec![600, 900]);
        rescale_schedule(&mut steps, &mut rounds, &mut every, &mut ms, 600);
        assert_eq!(
            (steps, rounds, every, ms.clone()),
            (600, 12, 4, vec![300, 450])
        );
        rescale_schedule(&mut steps, &mut rounds, &mut every, &mut ms, 7);
        assert_eq!((steps, rounds, every, ms), (7, 1, 1, vec![3, 5]));
        let (mut steps, mut rounds, mut every, mut ms) = (10, 2, 1, vec![4, 5]);
        rescale_schedule(&mut steps, &mut rounds, &mut every, &mut ms, 2);
        assert_eq!((steps, rounds, every, ms), (2, 2, 1, vec![0, 1]));
    }

    #[test]
    fn dedup_keeps_first_occurrences_in_order() {
        assert_eq!(dedup(&[3, 1, 3, 2, 1]), vec![3, 1, 2]);
        assert!(dedup::<u8>(&[]).is_empty());
    }

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        common: CommonArgs,
        #[arg(long)]
        epochs: Option<usize>,
    }

    #[test]
    fn parses_common_flags() {
        let t = T::try_parse_from([
            "x",
            "--preset",
            "smoke",
            "--seeds",
            "3,1,2",
            "--cpu",
            "--threads",
            "2",
            "--epochs",
            "7",
        ])
        .unwrap();
        assert_eq!(t.common.preset, Preset::Smoke);
        assert_eq!(t.common.seeds(), &[3, 1, 2]);
        assert_eq!(T::try_parse_from(["x"]).unwrap().common.seeds, None);
        assert_eq!(t.common.threads, Some(2));
        assert_eq!(
            t.common.out_dir("distill"),
            PathBuf::from("results/distill/smoke")
        );
        let mut epochs = 1usize;
        struct C {
            epochs: usize,
        }
        let mut c = C { epochs };
        apply_overrides!(c, t; epochs);
        epochs = c.epochs;
        assert_eq!(epochs, 7);
    }

    #[test]
    fn rejects_bad_flags() {
        for bad in [
            vec!["x", "--seeds", "0,0"],
            vec!["x", "--seeds", "a"],
            vec!["x", "--seeds", ""],
            vec!["x", "--seeds", "-1"],
            vec!["x", "--preset", "huge"],
            vec!["x", "--threads", "0"],
            vec!["x", "--jobs", "0"],
            vec!["x", "--steps", "0"],
        ] {
            assert!(T::try_parse_from(&bad).is_err(), "{bad:?} accepted");
        }
        let t = T::try_parse_from(["x", "--data-dir", "/nonexistent/zoo"]).unwrap();
        assert!(t.common.validate().is_err());
    }
}
