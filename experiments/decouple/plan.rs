//! The experiment as addressable runs ([`crate::plan`]): per setting, sampler and seed,
//! `<setting>.<sampler>.s<seed>.stage1` (joint training; saves the representation) and
//! `<setting>.<sampler>.s<seed>.stage2` (NCM, cRT, τ-norm, LWS on it; needs its stage 1).
//!
//! Stage 2 always reads the representation from the file stage 1 saved, in a whole run as in a
//! shard, so a summary merged from shards equals a whole run's.

use std::collections::BTreeMap;

use anyhow::{Context, Result};

use super::config::{DecoupleConfig, Sampling, Setting};
use super::experiment::{
    load_checked, seeds_for, stage1, stage2_run, SettingData, SettingOutcome, Stage1Run, Stage2Run,
};
use crate::plan::{Plan, PlanArgs, Planned, RunSpec, RunStore};
use crate::results::Summary;
use crate::Experiment;

/// One representation: a (setting, sampler, seed).
#[derive(Debug, Clone, Copy)]
struct Rep<'c> {
    setting: &'c Setting,
    sampler: Sampling,
    seed: u64,
}

impl Rep<'_> {
    fn id(&self, stage: u8) -> String {
        format!(
            "{}.{}.s{}.stage{stage}",
            self.setting.data.tag(),
            self.sampler,
            self.seed
        )
    }
}

/// Every representation of `cfg` with `seeds`, in table order.
fn reps<'c>(cfg: &'c DecoupleConfig, seeds: &[u64]) -> Vec<Rep<'c>> {
    let mut v = Vec::new();
    for setting in &cfg.settings {
        for (k, &sampler) in setting.stage1.samplers.iter().enumerate() {
            for seed in seeds_for(setting, seeds, k) {
                v.push(Rep {
                    setting,
                    sampler,
                    seed,
                });
            }
        }
    }
    v
}

/// The plan of `cfg` with `seeds`.
pub fn plan(cfg: &DecoupleConfig, seeds: &[u64]) -> Result<Plan> {
    let mut runs = Vec::new();
    for r in reps(cfg, seeds) {
        let what = format!(
            "{}, {} sampling, seed {}",
            r.setting.data.label(),
            r.sampler.label(),
            r.seed
        );
        runs.push(RunSpec::new(
            r.id(1),
            format!("{what}: stage 1 (joint training)"),
        ));
        runs.push(
            RunSpec::new(r.id(2), format!("{what}: stage 2 (NCM, cRT, τ-norm, LWS)"))
                .after([r.id(1)]),
        );
    }
    Plan::new(runs)
}

/// [`Planned`] for `decouple`; loads each setting's data once per process.
pub struct DecoupleRuns<'a> {
    exp: &'a Experiment<DecoupleConfig>,
    data: BTreeMap<String, SettingData>,
}

impl<'a> DecoupleRuns<'a> {
    /// The runs of `exp`.
    pub fn new(exp: &'a Experiment<DecoupleConfig>) -> Self {
        Self {
            exp,
            data: BTreeMap::new(),
        }
    }
}

impl Planned for DecoupleRuns<'_> {
    fn plan(&self) -> Result<Plan> {
        plan(&self.exp.config, self.exp.common.seeds())
    }

    fn run(&mut self, id: &str, store: &RunStore) -> Result<serde_json::Value> {
        let exp = self.exp;
        let (r, stage) = reps(&exp.config, exp.common.seeds())
            .into_iter()
            .find_map(|r| [1, 2].into_iter().find(|&s| r.id(s) == id).map(|s| (r, s)))
            .with_context(|| format!("no run {id} in the plan"))?;
        let tag = r.setting.data.tag();
        if !self.data.contains_key(&tag) {
            let d = load_checked(exp, r.setting)?;
            self.data.insert(tag.clone(), d);
        }
        let data = &self.data[&tag];
        Ok(if stage == 1 {
            serde_json::to_value(stage1(exp, r.setting, data, r.sampler, r.seed)?)?
        } else {
            let s1: Stage1Run = store.get(&r.id(1))?;
            serde_json::to_value(stage2_run(exp, r.setting, data, r.sampler, r.seed, &s1)?)?
        })
    }

    fn summarise(&mut self, store: &RunStore) -> Result<Summary> {
        let exp = self.exp;
        let mut outcomes: Vec<(&Setting, SettingOutcome)> = Vec::new();
        for setting in &exp.config.settings {
            let mut o = SettingOutcome {
                results: Vec::new(),
                diagnostics: Vec::new(),
                train_counts: Vec::new(),
                n_val: 0,
                n_test: 0,
            };
            for r in reps(&exp.config, exp.common.seeds())
                .into_iter()
                .filter(|r| std::ptr::eq(r.setting, setting))
            {
                let s2: Stage2Run = store.get(&r.id(2))?;
                o.results.extend(s2.results);
                o.diagnostics.push(s2.diagnostics);
                o.train_counts = s2.train_counts;
                o.n_val = s2.n_val;
                o.n_test = s2.n_test;
            }
            outcomes.push((setting, o));
        }
        let all: Vec<_> = outcomes.iter().flat_map(|(_, o)| &o.results).collect();
        exp.results.write_json("results.json", &all)?;
        let diags: Vec<_> = outcomes.iter().flat_map(|(_, o)| &o.diagnostics).collect();
        exp.results.write_json("diagnostics.json", &diags)?;
        super::report::summarise(exp, &outcomes)
    }
}

/// Runs every setting in this process and writes `results.json`, `diagnostics.json`, `grid.md`,
/// the plots, the summary and `runs/<ID>.json`.
pub fn run(exp: &Experiment<DecoupleConfig>) -> Result<Summary> {
    drive(exp, &PlanArgs::default())?.context("a whole run writes a summary")
}

/// Does what the plan flags ask (see [`crate::plan`]); the summary if this invocation wrote one.
pub fn drive(exp: &Experiment<DecoupleConfig>, args: &PlanArgs) -> Result<Option<Summary>> {
    crate::plan::drive(&mut DecoupleRuns::new(exp), exp, args)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{ExperimentConfig, Preset};

    #[test]
    fn stage2_needs_its_own_stage1() {
        let cfg = DecoupleConfig::preset(Preset::Smoke);
        let p = plan(&cfg, &[0, 1]).unwrap();
        let s2: Vec<_> = p
            .runs()
            .iter()
            .filter(|r| r.id.ends_with("stage2"))
            .collect();
        assert!(!s2.is_empty());
        for r in s2 {
            assert_eq!(r.deps, vec![r.id.replace("stage2", "stage1")]);
        }
        assert_eq!(p.levels().iter().max(), Some(&1));
    }
}
