//! Addressable runs: a binary's experiment as a plan of runs with stable ids and dependencies, so
//! that any subset can run in its own process (a Slurm array task, a shell on another machine)
//! and the summary is built afterwards from the per-run files.
//!
//! A binary implements [`Planned`] (list its runs, execute one, summarise from the per-run
//! results) and flattens [`PlanArgs`] into its flags:
//!
//! - `--list-runs` prints the plan, one run per line: `ID<TAB>DEPS<TAB>WHAT` (DEPS comma-separated,
//!   `-` for none), deps always listed before the runs that need them.
//! - `--only ID,…` runs those runs; `--shard i/n` runs the i-th of n shards (1-based). A shard is
//!   every n-th run of each dependency level (see [`Plan::shard`]). **Rule:** every dependency of
//!   a selected run must be present in the output folder already or be selected in the same
//!   invocation (it then runs first); otherwise nothing runs and the error names the missing
//!   dependencies. `sweep` follows the rule by submitting one level after the other.
//! - `--summarise` builds the summary from the per-run files once all runs are present, and
//!   otherwise fails naming the missing runs (and the `--only` that would finish them).
//! - With none of these, every run executes in this process and the summary is written, as before.
//!
//! Each run's result goes to `runs/<ID>.json` (atomic: temporary file + rename), with the resolved
//! configuration it ran under; a file written under another configuration counts as missing. Runs
//! write only their own files (logs under their own `seed_*/…` folder), `config.json` is created
//! once by whichever process comes first (the others check theirs equals it), and only
//! `--summarise` (or a whole run) writes the summary, plots and aggregate files.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use clap::Args;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::cli::{CommonArgs, ExperimentConfig};
use crate::experiment::SetupOptions;
use crate::results::{atomic_write_json, Summary};
use crate::Experiment;

/// One run of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSpec {
    /// Stable id: letters, digits, `.`, `_`, `-` (it names a file).
    pub id: String,
    /// Ids of the runs whose outputs this run reads.
    pub deps: Vec<String>,
    /// One line saying what the run is.
    pub what: String,
}

impl RunSpec {
    /// A run without dependencies.
    pub fn new(id: impl Into<String>, what: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            deps: Vec::new(),
            what: what.into(),
        }
    }

    /// The same run, depending on `deps`.
    pub fn after<S: Into<String>>(mut self, deps: impl IntoIterator<Item = S>) -> Self {
        self.deps.extend(deps.into_iter().map(Into::into));
        self
    }
}

/// A validated plan: unique ids, and every dependency listed before the runs that need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    runs: Vec<RunSpec>,
}

fn check_id(id: &str) -> Result<()> {
    ensure!(
        !id.is_empty()
            && !id.starts_with('.')
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)),
        "run id {id:?}: use letters, digits, '.', '_' and '-' (not first '.')"
    );
    Ok(())
}

impl Plan {
    /// Checks ids and dependency order.
    pub fn new(runs: Vec<RunSpec>) -> Result<Self> {
        let mut seen = BTreeSet::new();
        for r in &runs {
            check_id(&r.id)?;
            for d in &r.deps {
                ensure!(
                    seen.contains(d.as_str()),
                    "plan: run {} depends on {d}, which is not listed before it",
                    r.id
                );
            }
            ensure!(seen.insert(r.id.as_str()), "plan: run id {} twice", r.id);
        }
        Ok(Self { runs })
    }

    /// The runs, dependencies first.
    pub fn runs(&self) -> &[RunSpec] {
        &self.runs
    }

    /// The run `id`.
    pub fn get(&self, id: &str) -> Option<&RunSpec> {
        self.runs.iter().find(|r| r.id == id)
    }

    /// Dependency level of each run (0: no dependencies; else 1 + the deepest dependency's).
    pub fn levels(&self) -> Vec<usize> {
        let mut level: BTreeMap<&str, usize> = BTreeMap::new();
        self.runs
            .iter()
            .map(|r| {
                let l = r.deps.iter().map(|d| level[d.as_str()] + 1).max();
                let l = l.unwrap_or(0);
                level.insert(&r.id, l);
                l
            })
            .collect()
    }

    /// The runs of shard `i` of `n` (1-based): within each dependency level, the runs in plan order
    /// dealt round-robin, so every shard gets a share of every level.
    pub fn shard(&self, shard: Shard) -> Vec<&RunSpec> {
        let levels = self.levels();
        let mut dealt: BTreeMap<usize, usize> = BTreeMap::new();
        self.runs
            .iter()
            .zip(levels)
            .filter(|(_, l)| {
                let k = dealt.entry(*l).or_insert(0);
                let mine = *k % shard.n == shard.i - 1;
                *k += 1;
                mine
            })
            .map(|(r, _)| r)
            .collect()
    }

    /// The runs named in `ids`, in plan order; an unknown id is an error listing the plan's.
    pub fn only(&self, ids: &[String]) -> Result<Vec<&RunSpec>> {
        for id in ids {
            if self.get(id).is_none() {
                let known: Vec<&str> = self.runs.iter().map(|r| r.id.as_str()).collect();
                bail!("--only {id}: no such run (the plan: {})", known.join(", "));
            }
        }
        Ok(self.runs.iter().filter(|r| ids.contains(&r.id)).collect())
    }

    /// `--list-runs`: `ID<TAB>DEPS<TAB>WHAT` per run.
    pub fn listing(&self) -> String {
        let mut s = String::new();
        for r in &self.runs {
            let deps = if r.deps.is_empty() {
                "-".to_string()
            } else {
                r.deps.join(",")
            };
            let _ = writeln!(s, "{}\t{deps}\t{}", r.id, r.what);
        }
        s
    }

    /// Parses [`Plan::listing`] back (the `sweep` command reads a binary's plan this way).
    pub fn parse_listing(text: &str) -> Result<Self> {
        let mut runs = Vec::new();
        for (n, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let mut cols = line.splitn(3, '\t');
            let (Some(id), Some(deps)) = (cols.next(), cols.next()) else {
                bail!(
                    "plan line {}: expected ID<TAB>DEPS<TAB>WHAT: {line:?}",
                    n + 1
                );
            };
            let deps = match deps {
                "-" => Vec::new(),
                d => d.split(',').map(str::to_string).collect(),
            };
            runs.push(RunSpec {
                id: id.to_string(),
                deps,
                what: cols.next().unwrap_or("").to_string(),
            });
        }
        Self::new(runs)
    }
}

/// `--shard i/n`: the i-th (1-based) of n shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// 1..=n.
    pub i: usize,
    /// Number of shards, at least 1.
    pub n: usize,
}

/// Parses `i/n` with 1 ≤ i ≤ n.
pub fn parse_shard(s: &str) -> Result<Shard, String> {
    let bad = || format!("--shard {s:?}: expected i/n with 1 <= i <= n, e.g. 2/8");
    let (i, n) = s.split_once('/').ok_or_else(bad)?;
    let (i, n): (usize, usize) = (
        i.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if i == 0 || i > n {
        return Err(bad());
    }
    Ok(Shard { i, n })
}

fn parse_ids(s: &str) -> Result<String, String> {
    check_id(s.trim())
        .map(|()| s.trim().to_string())
        .map_err(|e| format!("--only: {e}"))
}

/// The plan flags of a binary whose runs are addressable; embed with `#[command(flatten)]`.
#[derive(Debug, Clone, Default, Args)]
pub struct PlanArgs {
    /// Print the plan (one line per run: ID, the runs it needs, what it is) and exit.
    #[arg(long, conflicts_with_all = ["only", "shard", "summarise"])]
    pub list_runs: bool,
    /// Execute only these runs (ids from --list-runs; their dependencies must be present in
    /// --out or listed too). Writes runs/ID.json, no summary.
    #[arg(long, value_delimiter = ',', value_name = "ID,…", value_parser = parse_ids)]
    pub only: Option<Vec<String>>,
    /// Execute shard i of n (1-based; every n-th run of each dependency level). A run's
    /// dependencies must be present in --out or be in the same shard.
    #[arg(long, value_name = "i/n", value_parser = parse_shard, conflicts_with = "only")]
    pub shard: Option<Shard>,
    /// Build the summary from the runs present in --out; fails naming the missing runs.
    #[arg(long, conflicts_with_all = ["only", "shard"])]
    pub summarise: bool,
}

impl PlanArgs {
    /// Whether this process does part of the work (a subset, or the summary from files).
    pub fn partial(&self) -> bool {
        self.only.is_some() || self.shard.is_some() || self.summarise
    }
}

/// The per-run results of a plan: `runs/<ID>.json` under the output folder.
#[derive(Debug, Clone)]
pub struct RunStore {
    dir: PathBuf,
    config: serde_json::Value,
}

/// What `runs/<ID>.json` holds.
#[derive(Debug, Serialize, Deserialize)]
struct RunFile {
    id: String,
    config: serde_json::Value,
    result: serde_json::Value,
}

impl RunStore {
    /// The store of `out` for runs of `config`: files written under another configuration are
    /// ignored, where the seed list and `jobs` do not count ([`crate::identity`]): a run is one
    /// seed's, and may serve a sweep over more seeds.
    pub fn new(out: &Path, config: &impl Serialize) -> Result<Self> {
        Ok(Self {
            dir: out.join("runs"),
            config: crate::identity::strip_excluded(&serde_json::to_value(config)?),
        })
    }

    /// `runs/<id>.json`.
    pub fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// Records run `id`'s result (atomically).
    pub fn write(&self, id: &str, result: serde_json::Value) -> Result<()> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let f = RunFile {
            id: id.to_string(),
            config: self.config.clone(),
            result,
        };
        atomic_write_json(&self.path(id), &f)
    }

    /// Run `id`'s result, or `None` if it is absent or was written under another configuration.
    pub fn read(&self, id: &str) -> Result<Option<serde_json::Value>> {
        let p = self.path(id);
        if !p.exists() {
            return Ok(None);
        }
        let f: RunFile = serde_json::from_slice(&std::fs::read(&p)?)
            .with_context(|| format!("reading {}", p.display()))?;
        Ok((f.id == id && f.config == self.config).then_some(f.result))
    }

    /// Run `id`'s result as a `T`; an error if it is missing.
    pub fn get<T: DeserializeOwned>(&self, id: &str) -> Result<T> {
        let v = self
            .read(id)?
            .with_context(|| format!("run {id} is not present in {}", self.dir.display()))?;
        serde_json::from_value(v).with_context(|| format!("run {id}: unexpected result"))
    }

    /// Whether run `id` is present.
    pub fn present(&self, id: &str) -> Result<bool> {
        Ok(self.read(id)?.is_some())
    }

    /// Removes every run file (a whole run without `--resume` starts over).
    pub fn clear(&self) -> Result<()> {
        if self.dir.exists() {
            std::fs::remove_dir_all(&self.dir)
                .with_context(|| format!("removing {}", self.dir.display()))?;
        }
        Ok(())
    }
}

/// A binary's experiment as addressable runs.
pub trait Planned {
    /// The plan.
    fn plan(&self) -> Result<Plan>;
    /// Executes run `id` (its dependencies are present in `store`) and returns its result.
    fn run(&mut self, id: &str, store: &RunStore) -> Result<serde_json::Value>;
    /// Builds and writes the summary; every run of the plan is present in `store`.
    fn summarise(&mut self, store: &RunStore) -> Result<Summary>;
}

/// Set-up for a binary with a plan: [`Experiment::setup_with`], as a part of a run (shared lock
/// on the output folder; `config.json` created by the first process, compared by the others) when
/// this process does part of the work (`--only`, `--shard`, `--summarise`).
pub fn setup<C: ExperimentConfig>(
    binary: &str,
    common: &CommonArgs,
    config: C,
    args: &PlanArgs,
) -> Result<Experiment<C>> {
    if args.summarise {
        let out = common.out_dir(binary);
        ensure!(
            out.join("config.json").exists(),
            "--summarise: {} has no config.json: no run has written there",
            out.display()
        );
    }
    let opts = SetupOptions {
        part_of_run: args.partial(),
        ..SetupOptions::default()
    };
    Experiment::setup_with(binary, common, config, &opts)
}

/// `--list-runs`: prints the plan of the resolved configuration (the shared flags applied,
/// validated) to stdout; writes nothing. `plan` gets the config and the seeds.
pub fn list_runs<C: ExperimentConfig>(
    binary: &str,
    common: &CommonArgs,
    config: C,
    plan: impl FnOnce(&C, &[u64]) -> Result<Plan>,
) -> Result<()> {
    let (config, common) = Experiment::resolve(binary, common, config)?;
    config.validate()?;
    print!("{}", plan(&config, common.seeds())?.listing());
    Ok(())
}

/// The runs an invocation executes: all (no flag), `--only` or `--shard`; `None` for
/// `--summarise`. Checks the dependency rule before any work.
fn selection<'p>(
    plan: &'p Plan,
    args: &PlanArgs,
    store: &RunStore,
) -> Result<Option<Vec<&'p RunSpec>>> {
    let chosen = match (&args.only, args.shard) {
        _ if args.summarise => return Ok(None),
        (Some(ids), _) => plan.only(ids)?,
        (None, Some(s)) => plan.shard(s),
        (None, None) => return Ok(Some(plan.runs().iter().collect())),
    };
    let ids: BTreeSet<&str> = chosen.iter().map(|r| r.id.as_str()).collect();
    let mut missing = Vec::new();
    for r in &chosen {
        for d in &r.deps {
            if !ids.contains(d.as_str()) && !store.present(d)? {
                missing.push(format!("{} (needed by {})", d, r.id));
            }
        }
    }
    ensure!(
        missing.is_empty(),
        "dependencies neither present in {} nor selected: {}; run them first (e.g. --only {})",
        store.dir.display(),
        missing.join(", "),
        missing_ids(&missing)
    );
    Ok(Some(chosen))
}

fn missing_ids(missing: &[String]) -> String {
    let ids: BTreeSet<&str> = missing.iter().filter_map(|m| m.split(' ').next()).collect();
    ids.into_iter().collect::<Vec<_>>().join(",")
}

/// Runs what `args` asks of `runs`, the plan of experiment `run` (see the module doc): its run
/// files go to `run`'s results folder under its configuration. Returns the summary when this
/// invocation wrote one (a whole run, or `--summarise`).
pub fn drive<E: Planned, C: ExperimentConfig>(
    runs: &mut E,
    run: &Experiment<C>,
    args: &PlanArgs,
) -> Result<Option<Summary>> {
    let resume = run.common.resume;
    let plan = runs.plan()?;
    let store = RunStore::new(run.results.root(), &run.config)?;
    let Some(chosen) = selection(&plan, args, &store)? else {
        return summarise_present(runs, &plan, &store).map(Some);
    };
    if !args.partial() && !resume {
        // A whole run starts over: no run file of an earlier invocation may count.
        store.clear()?;
    }
    let total = chosen.len();
    for (k, r) in chosen.iter().enumerate() {
        tracing::info!("run {}/{total}: {} ({})", k + 1, r.id, r.what);
        crate::results::note_training();
        let v = runs
            .run(&r.id, &store)
            .with_context(|| format!("run {}", r.id))?;
        store.write(&r.id, v)?;
    }
    if args.partial() {
        let present = plan
            .runs()
            .iter()
            .filter(|r| store.present(&r.id).unwrap_or(false))
            .count();
        tracing::info!(
            "{total} run(s) done; {present} of {} present in {} (--summarise when all are)",
            plan.runs().len(),
            run.results.root().display()
        );
        return Ok(None);
    }
    runs.summarise(&store).map(Some)
}

/// Ids of the plan's runs that are not present.
pub fn missing_runs(plan: &Plan, store: &RunStore) -> Result<Vec<String>> {
    let mut m = Vec::new();
    for r in plan.runs() {
        if !store.present(&r.id)? {
            m.push(r.id.clone());
        }
    }
    Ok(m)
}

fn summarise_present<E: Planned>(exp: &mut E, plan: &Plan, store: &RunStore) -> Result<Summary> {
    let missing = missing_runs(plan, store)?;
    if !missing.is_empty() {
        bail!(
            "--summarise: {} of {} runs missing (absent, failed, or written under another \
             configuration): {}\nfinish them with --only {}",
            missing.len(),
            plan.runs().len(),
            missing.join(" "),
            missing.join(",")
        );
    }
    exp.summarise(store)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan::new(vec![
            RunSpec::new("teacher", "t"),
            RunSpec::new("a-s0", "a").after(["teacher"]),
            RunSpec::new("b-s0", "b"),
            RunSpec::new("a-s1", "a").after(["teacher"]),
            RunSpec::new("c-s0", "c").after(["a-s0", "b-s0"]),
        ])
        .unwrap()
    }

    #[test]
    fn plans_reject_bad_ids_repeats_and_late_dependencies() {
        assert!(Plan::new(vec![RunSpec::new("a/b", "")]).is_err());
        assert!(Plan::new(vec![RunSpec::new(".a", "")]).is_err());
        assert!(Plan::new(vec![RunSpec::new("a", ""), RunSpec::new("a", "")]).is_err());
        assert!(Plan::new(vec![
            RunSpec::new("a", "").after(["b"]),
            RunSpec::new("b", "")
        ])
        .is_err());
    }

    #[test]
    fn levels_and_shards_cover_each_level_once() {
        let p = plan();
        assert_eq!(p.levels(), vec![0, 1, 0, 1, 2]);
        let ids = |s: Vec<&RunSpec>| s.iter().map(|r| r.id.clone()).collect::<Vec<_>>();
        assert_eq!(
            ids(p.shard(Shard { i: 1, n: 2 })),
            vec!["teacher", "a-s0", "c-s0"]
        );
        assert_eq!(ids(p.shard(Shard { i: 2, n: 2 })), vec!["b-s0", "a-s1"]);
        let mut all: Vec<String> = (1..=3)
            .flat_map(|i| ids(p.shard(Shard { i, n: 3 })))
            .collect();
        all.sort();
        let mut want: Vec<String> = p.runs().iter().map(|r| r.id.clone()).collect();
        want.sort();
        assert_eq!(all, want);
    }

    #[test]
    fn listing_round_trips() {
        let p = plan();
        let l = p.listing();
        assert!(l.starts_with("teacher\t-\tt\n"), "{l}");
        assert!(l.contains("c-s0\ta-s0,b-s0\tc\n"), "{l}");
        assert_eq!(Plan::parse_listing(&l).unwrap(), p);
    }

    #[test]
    fn shard_flags_parse() {
        assert_eq!(parse_shard("2/8"), Ok(Shard { i: 2, n: 8 }));
        for bad in ["0/2", "3/2", "1", "a/b", "1/0"] {
            assert!(parse_shard(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn selections_need_their_dependencies_present_or_selected() {
        let dir = std::env::temp_dir().join(format!("zoo-plan-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = RunStore::new(&dir, &serde_json::json!({"lr": 1})).unwrap();
        let p = plan();
        let only = |ids: &[&str]| PlanArgs {
            only: Some(ids.iter().map(|s| s.to_string()).collect()),
            ..PlanArgs::default()
        };
        let e = selection(&p, &only(&["a-s0"]), &store)
            .unwrap_err()
            .to_string();
        assert!(e.contains("teacher (needed by a-s0)"), "{e}");
        let s = selection(&p, &only(&["a-s0", "teacher"]), &store)
            .unwrap()
            .unwrap();
        assert_eq!(s[0].id, "teacher", "dependencies run first");
        assert!(selection(&p, &only(&["nope"]), &store).is_err());
        store.write("teacher", serde_json::json!(3)).unwrap();
        assert!(selection(&p, &only(&["a-s0"]), &store).is_ok());
        assert_eq!(store.get::<u32>("teacher").unwrap(), 3);
        // A file from another configuration does not count.
        let other = RunStore::new(&dir, &serde_json::json!({"lr": 2})).unwrap();
        assert!(!other.present("teacher").unwrap());
        assert_eq!(
            missing_runs(&p, &store).unwrap(),
            vec!["a-s0", "b-s0", "a-s1", "c-s0"]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
