//! The experiment as addressable runs ([`crate::plan`]): `<dataset>.s<seed>` (all repetitions of
//! one data set for one seed) and `neural.s<seed>` (the Fashion-MNIST part). No run needs another.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::experiment::{run_dataset, Config, DatasetResult};
use super::neural::{self, FashionData, NeuralOutcome, NeuralSeed};
use crate::plan::{Plan, PlanArgs, Planned, RunSpec, RunStore};
use crate::results::Summary;
use crate::Experiment;

/// A data set's run: its result and the error-versus-bags curves, which `DatasetResult` does not
/// serialise (they are kept out of `repetitions.json`).
#[derive(Debug, Serialize, Deserialize)]
struct DatasetRun {
    result: DatasetResult,
    curves: Vec<Vec<f64>>,
}

fn dataset_id(name: &str, seed: u64) -> String {
    format!("{name}.s{seed}")
}

fn neural_id(seed: u64) -> String {
    format!("neural.s{seed}")
}

/// The plan of `cfg` with `seeds`.
pub fn plan(cfg: &Config, seeds: &[u64]) -> Result<Plan> {
    let mut runs = Vec::new();
    for name in &cfg.datasets {
        for &seed in seeds {
            runs.push(RunSpec::new(
                dataset_id(name, seed),
                format!("{name}, seed {seed}: {} repetitions", cfg.reps),
            ));
        }
    }
    if cfg.neural.is_some() {
        for &seed in seeds {
            runs.push(RunSpec::new(
                neural_id(seed),
                format!("Fashion-MNIST bagged MLPs, seed {seed}"),
            ));
        }
    }
    Plan::new(runs)
}

/// [`Planned`] for `bagging`; loads Fashion-MNIST once per process if a neural run comes.
pub struct BaggingRuns<'a> {
    exp: &'a Experiment<Config>,
    fashion: Option<FashionData>,
}

impl<'a> BaggingRuns<'a> {
    /// The runs of `exp`.
    pub fn new(exp: &'a Experiment<Config>) -> Self {
        Self { exp, fashion: None }
    }
}

impl Planned for BaggingRuns<'_> {
    fn plan(&self) -> Result<Plan> {
        plan(&self.exp.config, self.exp.common.seeds())
    }

    fn run(&mut self, id: &str, _store: &RunStore) -> Result<serde_json::Value> {
        let exp = self.exp;
        let cfg = &exp.config;
        for &seed in exp.common.seeds() {
            if let (Some(ncfg), true) = (&cfg.neural, id == neural_id(seed)) {
                if self.fashion.is_none() {
                    self.fashion = Some(neural::load_data(exp, ncfg)?);
                }
                let data = self.fashion.as_ref().context("Fashion-MNIST not loaded")?;
                return Ok(serde_json::to_value(neural::run_seed(
                    exp, ncfg, data, seed,
                )?)?);
            }
            if let Some(name) = cfg.datasets.iter().find(|n| dataset_id(n, seed) == id) {
                let r = run_dataset(cfg, name, seed)?;
                tracing::info!(
                    "{name} seed {seed}: {} reps in {:.1} s",
                    r.reps.len(),
                    r.seconds
                );
                let curves = r.reps.iter().map(|x| x.curve.clone()).collect();
                return Ok(serde_json::to_value(DatasetRun { result: r, curves })?);
            }
        }
        anyhow::bail!("no run {id} in the plan")
    }

    fn summarise(&mut self, store: &RunStore) -> Result<Summary> {
        let exp = self.exp;
        let cfg = &exp.config;
        let seeds = exp.common.seeds();
        let mut results = Vec::new();
        for name in &cfg.datasets {
            let mut per_seed = Vec::new();
            for &seed in seeds {
                let mut d: DatasetRun = store.get(&dataset_id(name, seed))?;
                for (rep, curve) in d.result.reps.iter_mut().zip(d.curves) {
                    rep.curve = curve;
                }
                per_seed.push(d.result);
            }
            results.push(per_seed);
        }
        let neural = match &cfg.neural {
            Some(ncfg) => Some(NeuralOutcome {
                seeds: seeds
                    .iter()
                    .map(|&s| store.get::<NeuralSeed>(&neural_id(s)))
                    .collect::<Result<_>>()?,
                config: ncfg.clone(),
            }),
            None => None,
        };
        super::summarise(exp, &results, neural)
    }
}

/// Runs everything in this process and writes the summary, `repetitions.json`, the curves and
/// `runs/<ID>.json`.
pub fn run(exp: &Experiment<Config>) -> Result<Summary> {
    drive(exp, &PlanArgs::default())?.context("a whole run writes a summary")
}

/// Does what the plan flags ask (see [`crate::plan`]); the summary if this invocation wrote one.
pub fn drive(exp: &Experiment<Config>, args: &PlanArgs) -> Result<Option<Summary>> {
    crate::plan::drive(&mut BaggingRuns::new(exp), exp, args)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{ExperimentConfig, Preset};

    #[test]
    fn one_independent_run_per_dataset_and_seed() {
        let cfg = Config::preset(Preset::Smoke);
        let p = plan(&cfg, &[0, 1]).unwrap();
        let n = cfg.datasets.len() * 2 + if cfg.neural.is_some() { 2 } else { 0 };
        assert_eq!(p.runs().len(), n);
        assert!(p.runs().iter().all(|r| r.deps.is_empty()));
    }
}
