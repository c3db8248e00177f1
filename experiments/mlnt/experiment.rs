//! The experiments: CIFAR noisy labels (CE baseline first, its model then gives MLNT the
//! neighbours' feature space, as the authors' `pretrain_net`), the optional second iteration, and
//! the report beside Meta-Weight-Net's results on the same split when they exist.

use std::sync::Arc;

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};
use zoo_data::{make_batch, Augment, DataSource, ImageDataset, Normalize};
use zoo_models::metrics::error_count;
use zoo_models::{Classifier, Ctx};

use super::config::{Features, Method, MlntConfig, Part};
use super::report::summarise;
use super::task::MlntRule;
use crate::parallel::run_indexed;
use crate::results::Summary;
use crate::reweight::{
    self, pct_accuracy, role_rng, Datasets, Prepared, ReweightTask, RunOut, RunRecord, Setting,
    TaskData,
};
use crate::Experiment;

/// Clothing1M test accuracy of MLNT (%, 2nd iteration, as quoted in the task; the paper's table
/// was not confirmed here).
pub const PAPER_CLOTHING1M: f64 = 73.47;

/// One trained model: the core's record of the student, and its EMA teacher's.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    /// `cifar10`.
    pub dataset: String,
    /// Noise spec.
    pub setting: String,
    /// Method.
    pub method: Method,
    /// Training iteration (1, or 2 for the paper's second iteration).
    pub round: usize,
    /// The student, as the core measured it (`n_flagged`: corrupted rows; `n_meta`: the clean
    /// validation rows).
    #[serde(flatten)]
    pub run: RunRecord,
    /// Final test error of the EMA teacher (fraction; the student's when the teacher never
    /// started).
    pub teacher_test_error: f64,
    /// Clean validation error of the student (fraction).
    pub val_error_student: f64,
    /// Clean validation error of the teacher (fraction).
    pub val_error_teacher: f64,
    /// `student` or `teacher`: the one with the higher validation accuracy (ties: student).
    pub selected: String,
    /// Round 2: fraction of the kept rows whose label is the true one.
    pub kept_clean_frac: Option<f64>,
}

impl RunResult {
    /// The student's test accuracy (%).
    pub fn test_acc_student(&self) -> f64 {
        self.run.test_accuracy()
    }

    /// The EMA teacher's test accuracy (%).
    pub fn test_acc_ema(&self) -> f64 {
        pct_accuracy(self.teacher_test_error)
    }

    /// The test accuracy (%) of the model selected on validation.
    pub fn test_acc_selected(&self) -> f64 {
        if self.selected == "teacher" {
            self.test_acc_ema()
        } else {
            self.test_acc_student()
        }
    }
}

impl crate::results::SeededRun for RunResult {
    fn seed(&self) -> u64 {
        self.run.seed
    }
}

/// Stops with a clear message for parts whose data is not available offline.
pub fn check_parts_available(parts: &[Part]) -> Result<()> {
    if parts.contains(&Part::Clothing1m) {
        bail!(
            "Clothing1M (the paper's main table, MLNT {PAPER_CLOTHING1M} %) is not available \
             offline: it is not in ../shared (see DATA.md) and zoo_data has no Clothing1M loader. \
             Its recipe is recorded in the config (clothing1m); run the CIFAR part with --parts cifar."
        );
    }
    Ok(())
}

/// Evaluation-mode predictions of `model` on every row of `ds`, in chunks.
fn predictions(model: &dyn Classifier, ds: &ImageDataset, norm: &Normalize) -> Result<Vec<u32>> {
    let dev = model.store().device().clone();
    let params = model.store().params();
    let rows: Vec<usize> = (0..ds.len()).collect();
    let mut out = Vec::with_capacity(ds.len());
    for chunk in rows.chunks(500) {
        let b = make_batch(ds, chunk, norm, None, &dev)?;
        let z = model.forward(&params, &b.images, &mut Ctx::eval())?;
        out.extend(z.argmax(candle_core::D::Minus1)?.to_vec1::<u32>()?);
    }
    Ok(out)
}

/// Error (fraction) of `model` on `ds`.
fn error(model: &dyn Classifier, ds: &ImageDataset, norm: &Normalize) -> Result<f64> {
    let dev = model.store().device().clone();
    let params = model.store().params();
    let rows: Vec<usize> = (0..ds.len()).collect();
    let mut errors = 0usize;
    for chunk in rows.chunks(500) {
        let b = make_batch(ds, chunk, norm, None, &dev)?;
        let z = model.forward(&params, &b.images, &mut Ctx::eval())?;
        errors += error_count(&z, &b.labels)?;
    }
    Ok(errors as f64 / ds.len().max(1) as f64)
}

fn clone_model(
    exp: &Experiment<MlntConfig>,
    p: &Prepared,
    from: &dyn Classifier,
) -> Result<Arc<dyn Classifier>> {
    let nc = p.split.train.num_classes;
    let m = p
        .net
        .build(nc, &mut role_rng(0, "mlnt-copy"), &exp.device)?;
    m.store().load_state_dict(&from.store().state_dict()?)?;
    Ok(Arc::from(m))
}

/// A run's result, its validation-selected model and its final student.
type Trained = (RunResult, Arc<dyn Classifier>, Arc<dyn Classifier>);

/// The rows one round trains on: all of the split's (round 1) or those the mentor kept.
struct Round<'a> {
    round: usize,
    train: &'a ImageDataset,
    flagged: &'a [bool],
}

/// The MLNT rule (or, for CE, the EMA-only ablation) of `method`, and its teacher.
fn rule_of(
    exp: &Experiment<MlntConfig>,
    p: &Prepared,
    method: Method,
    seed: u64,
    baseline: Option<&Arc<dyn Classifier>>,
) -> Result<(MlntRule, Arc<dyn Classifier>)> {
    let cfg = &exp.config;
    let nc = p.split.train.num_classes;
    let rng = &mut role_rng(seed, "mlnt-teacher");
    let teacher: Arc<dyn Classifier> = Arc::from(p.net.build(nc, rng, &exp.device)?);
    let consistency = method != Method::Ce;
    let features = match (consistency, cfg.mlnt.features) {
        (true, Features::Baseline) => Some(
            baseline
                .cloned()
                .context("features = baseline: the CE baseline must be trained first")?,
        ),
        _ => None,
    };
    let first_order = method == Method::MlntFo || cfg.mlnt.first_order;
    let rule = MlntRule::new(
        teacher.clone(),
        features,
        &cfg.mlnt,
        first_order,
        consistency,
        seed,
    )?;
    Ok((rule, teacher))
}

/// Trains `method` on the rows of `rd` and evaluates the student and its EMA teacher on the
/// validation and test sets. Returns the result, a copy of the validation-selected model and a
/// copy of the final student.
fn train_one(
    exp: &Experiment<MlntConfig>,
    p: &Prepared,
    rd: &Round,
    method: Method,
    seed: u64,
    baseline: Option<&Arc<dyn Classifier>>,
) -> Result<Trained> {
    let cfg = &exp.config;
    let opt = &cfg.cifar.opt;
    let nc = rd.train.num_classes;
    // The same initial weights as `mwn` for the seed ("mwn-net"), so CE here is mwn's CE.
    let model = p
        .net
        .build(nc, &mut role_rng(seed, "mwn-net"), &exp.device)?;
    let (rule, teacher) = rule_of(exp, p, method, seed, baseline)?;
    let data = TaskData {
        train: rd.train,
        flagged: rd.flagged,
        meta: &p.split.meta,
        test: &p.test,
        norm: p.norm.clone(),
        augment: if cfg.cifar.augment {
            Augment::CifarCropFlip
        } else {
            Augment::None
        },
    };
    let mut task = ReweightTask::new(model, Box::new(rule), opt, data, seed)?;
    let label = format!(
        "{}_{}/{method}{}",
        p.dataset,
        p.setting.replace([':', '='], "_"),
        if rd.round > 1 {
            format!("_round{}", rd.round)
        } else {
            String::new()
        }
    );
    let run = reweight::train(&mut task, seed, &RunOut::of(exp, label))?;
    let student = task.model();
    // The teacher starts after step `start_iter`; before that it is the student.
    let started = opt.steps > cfg.mlnt.start_iter + 1;
    let val_s = error(student, &p.split.meta, &p.norm)?;
    let (val_t, test_t) = if started {
        (
            error(teacher.as_ref(), &p.split.meta, &p.norm)?,
            error(teacher.as_ref(), &p.test, &p.norm)?,
        )
    } else {
        (val_s, run.test_error)
    };
    let pick_teacher = started && pct_accuracy(val_t) > pct_accuracy(val_s);
    let student_copy = clone_model(exp, p, student)?;
    let chosen = if pick_teacher {
        clone_model(exp, p, teacher.as_ref())?
    } else {
        student_copy.clone()
    };
    let r = RunResult {
        dataset: p.dataset.clone(),
        setting: p.setting.clone(),
        method,
        round: rd.round,
        run,
        teacher_test_error: test_t,
        val_error_student: val_s,
        val_error_teacher: val_t,
        selected: if pick_teacher { "teacher" } else { "student" }.into(),
        kept_clean_frac: None,
    };
    tracing::info!(
        "seed {seed}: test accuracy student {:.2}%, teacher {:.2}% (validation {:.2}% / {:.2}%: \
         {} selected)",
        r.test_acc_student(),
        r.test_acc_ema(),
        pct_accuracy(val_s),
        pct_accuracy(val_t),
        r.selected
    );
    Ok((r, chosen, student_copy))
}

/// Second iteration: the rows whose given label agrees with the round-1 mentor (the
/// validation-selected model), trained afresh with the same method.
fn second_round(
    exp: &Experiment<MlntConfig>,
    p: &Prepared,
    (method, seed): (Method, u64),
    mentor: &dyn Classifier,
    baseline: Option<&Arc<dyn Classifier>>,
) -> Result<RunResult> {
    let (train, flagged) = (&p.split.train, &p.split.flagged);
    let pred = predictions(mentor, train, &p.norm)?;
    let keep: Vec<usize> = (0..train.len())
        .filter(|&i| pred[i] == train.labels[i])
        .collect();
    ensure!(
        keep.len() >= exp.config.cifar.opt.batch_size,
        "round 2: the mentor agrees with only {} labels, less than a batch",
        keep.len()
    );
    let train2 = train.subset(&keep);
    let flagged2: Vec<bool> = keep.iter().map(|&i| flagged[i]).collect();
    let clean = flagged2.iter().filter(|&&f| !f).count();
    tracing::info!(
        "seed {seed} round 2: kept {} of {} rows ({:.1}% clean, before {:.1}%)",
        keep.len(),
        train.len(),
        100.0 * clean as f64 / keep.len() as f64,
        100.0 * (1.0 - flagged.iter().filter(|&&f| f).count() as f64 / train.len() as f64)
    );
    let rd = Round {
        round: 2,
        train: &train2,
        flagged: &flagged2,
    };
    let (mut r2, _, _) = train_one(exp, p, &rd, method, seed, baseline)?;
    r2.kept_clean_frac = Some(clean as f64 / keep.len() as f64);
    Ok(r2)
}

/// One split and seed: every method in `methods` (CE first: its network is MLNT's feature
/// space for the neighbours), each followed, if `iterative`, by its second round.
fn train_chain(
    exp: &Experiment<MlntConfig>,
    p: &Prepared,
    methods: &[Method],
    seed: u64,
) -> Result<Vec<RunResult>> {
    let cfg = &exp.config;
    let mut results = Vec::new();
    let mut baseline: Option<Arc<dyn Classifier>> = None;
    let rd = Round {
        round: 1,
        train: &p.split.train,
        flagged: &p.split.flagged,
    };
    for &m in methods {
        let (r, chosen, student) = train_one(exp, p, &rd, m, seed, baseline.as_ref())?;
        if m == Method::Ce {
            // The frozen CE-trained network itself (not its EMA), as `pretrain_net`.
            baseline = Some(student);
        }
        results.push(r);
        if cfg.mlnt.iterative && (m != Method::Ce || cfg.mlnt.ce_second_round) {
            let r2 = second_round(exp, p, (m, seed), chosen.as_ref(), baseline.as_ref())?;
            results.push(r2);
        }
    }
    Ok(results)
}

/// Runs the CIFAR part and writes `results.json`, `summary.json`/`summary.md`.
pub fn run(exp: &Experiment<MlntConfig>, src: &DataSource, parts: &[Part]) -> Result<Summary> {
    check_parts_available(parts)?;
    let cfg = &exp.config;
    let c = &cfg.cifar;
    let mut data = Datasets::new(src);
    // CE first: its model is MLNT's feature space for the neighbours.
    let mut methods = c.methods.clone();
    methods.sort_by_key(|m| *m != Method::Ce);
    // Every split is prepared first (sequentially: the dataset cache is shared); then each
    // (setting, seed) chain — CE, then MLNT on CE's features, then the second round — goes out
    // to `--jobs` threads. Every run owns its seeded generators: the numbers do not depend on
    // the schedule. The split is `mwn`'s noise split of the same seed.
    let mut preps: Vec<(Prepared, u64)> = Vec::new();
    if parts.contains(&Part::Cifar) {
        for s in &c.settings {
            let limits = (c.train_limit, c.test_limit);
            let set = Setting::new(&s.dataset, &s.net, s.val_per_class, limits);
            for &seed in exp.common.seeds() {
                preps.push((set.noisy(&mut data, &s.noise, seed)?, seed));
            }
        }
    }
    let chains = run_indexed(cfg.jobs.max(1), preps.len(), |i| {
        let (p, seed) = &preps[i];
        train_chain(exp, p, &methods, *seed)
    })?;
    let results: Vec<RunResult> = chains.into_iter().flatten().collect();
    exp.results.write_json("results.json", &results)?;
    summarise(exp, &results)
}
