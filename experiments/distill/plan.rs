//! The experiment as addressable runs ([`crate::plan`]): `teacher`, then per seed
//! `s<seed>.hard` (needs nothing), and `s<seed>.distill_T<t>`, `s<seed>.omit<c>_T<t>`,
//! `s<seed>.only<cs>_T<t>` and the sweep's other temperatures (each needs the teacher).
//!
//! Students read the teacher from `teacher.safetensors` (or `--teacher`), in a whole run as in a
//! shard, so a summary merged from shards equals a whole run's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use super::config::DistillConfig;
use super::data::{load_splits, normalize, EvalSet, Splits};
use super::experiment::{
    build_mlp, get_teacher, init_rng, summarise, t_key, teacher_file, train_student, NetResult,
    SeedResults, Shared, StudentKind,
};
use super::transfer::TransferSet;
use crate::plan::{Plan, PlanArgs, Planned, RunSpec, RunStore};
use crate::results::Summary;
use crate::Experiment;
use zoo_models::Classifier;

/// The teacher run's result: the net's numbers and the test set's class sizes (for the table).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TeacherRun {
    net: NetResult,
    test_counts: Vec<usize>,
}

/// One student run of the plan.
#[derive(Debug, Clone)]
struct Student {
    seed: u64,
    label: String,
    kind: StudentKind,
    set: TransferSet,
}

/// Every student of the plan, by run id, in plan order.
fn students(cfg: &DistillConfig, seeds: &[u64]) -> Vec<(String, Student)> {
    let t_main = cfg.kd.temperature;
    let tm = t_key(t_main);
    let kd = |t: f64| StudentKind::Distilled {
        t,
        alpha: cfg.kd.alpha,
        sgd: cfg.kd.sgd.clone(),
    };
    let omit = TransferSet::Omit {
        class: cfg.omit_class,
    };
    let only = TransferSet::Only {
        classes: cfg.only_classes.clone(),
    };
    let mut v = Vec::new();
    for (k, &seed) in seeds.iter().enumerate() {
        let mut push = |label: String, kind: StudentKind, set: TransferSet| {
            let s = Student {
                seed,
                label,
                kind,
                set,
            };
            v.push((format!("s{seed}.{}", s.label), s));
        };
        let hard = StudentKind::Hard {
            sgd: cfg.student_sgd.clone(),
        };
        push("student_hard".into(), hard, TransferSet::Full);
        push(format!("distill_T{tm}"), kd(t_main), TransferSet::Full);
        push(format!("{}_T{tm}", omit.tag()), kd(t_main), omit.clone());
        push(format!("{}_T{tm}", only.tag()), kd(t_main), only.clone());
        if k < cfg.sweep_seeds {
            for &t in cfg.sweep_temperatures.iter().filter(|&&t| t != t_main) {
                push(format!("distill_T{}", t_key(t)), kd(t), TransferSet::Full);
            }
        }
    }
    v
}

/// The plan of `cfg` with `seeds`.
pub fn plan(cfg: &DistillConfig, seeds: &[u64]) -> Result<Plan> {
    let mut runs = vec![RunSpec::new(
        "teacher",
        "teacher (trained, or loaded by --teacher)",
    )];
    for (id, s) in students(cfg, seeds) {
        let what = format!("seed {} student {}", s.seed, s.label);
        runs.push(match s.kind {
            StudentKind::Hard { .. } => RunSpec::new(id, what),
            StudentKind::Distilled { .. } => RunSpec::new(id, what).after(["teacher"]),
        });
    }
    Plan::new(runs)
}

/// Runs the whole experiment in this process and writes `summary.json`, `summary.md`,
/// `results.json`, the plots and `runs/<ID>.json`.
pub fn run(exp: &Experiment<DistillConfig>, teacher_path: Option<&Path>) -> Result<Summary> {
    drive(exp, teacher_path, &PlanArgs::default())?.context("a whole run writes a summary")
}

/// Does what the plan flags ask (see [`crate::plan`]); the summary if this invocation wrote one.
pub fn drive(
    exp: &Experiment<DistillConfig>,
    teacher_path: Option<&Path>,
    args: &PlanArgs,
) -> Result<Option<Summary>> {
    let mut runs = DistillRuns::new(exp, teacher_path);
    crate::plan::drive(&mut runs, exp, args)
}

/// Data loaded once per process, and the teacher's logits once a student needs them.
struct Loaded {
    splits: Splits,
    val: EvalSet,
    test: EvalSet,
    teacher_logits: Option<Tensor>,
}

/// [`Planned`] for `distill`.
pub struct DistillRuns<'a> {
    exp: &'a Experiment<DistillConfig>,
    teacher_path: Option<PathBuf>,
    loaded: Option<Loaded>,
}

impl<'a> DistillRuns<'a> {
    /// The runs of `exp`; `teacher_path` is `--teacher`.
    pub fn new(exp: &'a Experiment<DistillConfig>, teacher_path: Option<&Path>) -> Self {
        Self {
            exp,
            teacher_path: teacher_path.map(Path::to_path_buf),
            loaded: None,
        }
    }

    fn load(&mut self) -> Result<&mut Loaded> {
        if self.loaded.is_none() {
            let cfg = &self.exp.config;
            let dev = &self.exp.device;
            let splits = load_splits(cfg, &self.exp.common.data_source())?;
            let norm = normalize(cfg)?;
            let val = EvalSet::new(&splits.val, &norm, dev)?;
            let test = EvalSet::new(&splits.test, &norm, dev)?;
            self.loaded = Some(Loaded {
                splits,
                val,
                test,
                teacher_logits: None,
            });
        }
        self.loaded.as_mut().context("data not loaded")
    }

    /// The teacher's logits on the transfer set, from the saved teacher.
    fn teacher_logits(&mut self) -> Result<()> {
        let exp = self.exp;
        let file = self
            .teacher_path
            .clone()
            .unwrap_or_else(|| teacher_file(exp.results.root()));
        let l = self.load()?;
        if l.teacher_logits.is_some() {
            return Ok(());
        }
        let cfg = &exp.config;
        let model = build_mlp(
            &cfg.teacher,
            &exp.device,
            &mut init_rng(cfg.teacher_seed, "teacher"),
        )?;
        let sd = zoo_models::checkpoint::load_tensors(&file, &exp.device)
            .with_context(|| format!("the teacher ({})", file.display()))?;
        model.store().load_state_dict(&sd)?;
        // Soft targets from the teacher in evaluation mode (no dropout) on unjittered images.
        let norm = normalize(cfg)?;
        let logits = EvalSet::new(&l.splits.train, &norm, &exp.device)?.logits_tensor(&model)?;
        l.teacher_logits = Some(logits);
        Ok(())
    }
}

impl Planned for DistillRuns<'_> {
    fn plan(&self) -> Result<Plan> {
        plan(&self.exp.config, self.exp.common.seeds())
    }

    fn run(&mut self, id: &str, _store: &RunStore) -> Result<serde_json::Value> {
        let exp = self.exp;
        if id == "teacher" {
            let path = self.teacher_path.clone();
            let l = self.load()?;
            let (_, net) = get_teacher(exp, &l.splits, &l.val, &l.test, path.as_deref())?;
            let mut test_counts = vec![0usize; 10];
            for &y in &l.splits.test.labels {
                if let Some(c) = test_counts.get_mut(y as usize) {
                    *c += 1;
                }
            }
            tracing::info!(
                "teacher: {} test errors, {} val errors",
                net.test_errors,
                net.val_errors
            );
            return Ok(serde_json::to_value(TeacherRun { net, test_counts })?);
        }
        let (_, s) = students(&exp.config, exp.common.seeds())
            .into_iter()
            .find(|(i, _)| i == id)
            .with_context(|| format!("no run {id} in the plan"))?;
        if matches!(s.kind, StudentKind::Distilled { .. }) {
            self.teacher_logits()?;
        }
        let l = self.load()?;
        let sh = Shared {
            exp,
            splits: &l.splits,
            val: &l.val,
            test: &l.test,
            teacher_logits: l.teacher_logits.as_ref(),
        };
        let r = train_student(&sh, s.seed, &s.label, &s.kind, &s.set)?;
        Ok(serde_json::to_value(r)?)
    }

    fn summarise(&mut self, store: &RunStore) -> Result<Summary> {
        let exp = self.exp;
        let cfg = &exp.config;
        let teacher: TeacherRun = store.get("teacher")?;
        let tm = t_key(cfg.kd.temperature);
        let omit = TransferSet::Omit {
            class: cfg.omit_class,
        }
        .tag();
        let only = TransferSet::Only {
            classes: cfg.only_classes.clone(),
        }
        .tag();
        let mut per_seed = Vec::new();
        for (k, &seed) in exp.common.seeds().iter().enumerate() {
            let get = |label: &str| store.get::<NetResult>(&format!("s{seed}.{label}"));
            let distilled = get(&format!("distill_T{tm}"))?;
            let mut sweep = BTreeMap::new();
            if k < cfg.sweep_seeds {
                for &t in &cfg.sweep_temperatures {
                    let r = if t_key(t) == tm {
                        distilled.clone()
                    } else {
                        get(&format!("distill_T{}", t_key(t)))?
                    };
                    sweep.insert(t_key(t), r);
                }
            }
            per_seed.push(SeedResults {
                seed,
                hard: get("student_hard")?,
                distilled,
                omit: get(&format!("{omit}_T{tm}"))?,
                only: get(&format!("{only}_T{tm}"))?,
                sweep,
            });
        }
        exp.results.write_json(
            "results.json",
            &serde_json::json!({ "teacher": teacher.net, "seeds": per_seed }),
        )?;
        summarise(exp, &teacher.test_counts, &teacher.net, &per_seed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{ExperimentConfig, Preset};

    #[test]
    fn students_need_the_teacher_and_hard_labels_do_not() {
        let cfg = DistillConfig::preset(Preset::Cpu);
        let p = plan(&cfg, &[0, 1]).unwrap();
        assert_eq!(p.runs()[0].id, "teacher");
        let t = t_key(cfg.kd.temperature);
        let hard = p.get("s1.student_hard").unwrap();
        assert!(hard.deps.is_empty());
        let kd = p.get(&format!("s0.distill_T{t}")).unwrap();
        assert_eq!(kd.deps, vec!["teacher"]);
        // The main temperature is not trained twice for the sweep.
        let n_main = p
            .runs()
            .iter()
            .filter(|r| r.id == format!("s0.distill_T{t}"))
            .count();
        assert_eq!(n_main, 1);
    }
}
