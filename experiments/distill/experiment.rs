//! The experiment: teacher (trained once or loaded), then per seed the hard-label student, the
//! distilled student at T = 20, the omit-3 and 7/8-only transfer sets with their validation-chosen
//! bias shifts, and the temperature sweep; finally the summary table and plots.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::plot::{self, Labels, Series};
use crate::results::{Row, Summary};
use crate::runner::{Runner, SeedRun};
use crate::Experiment;
use zoo_data::ImageDataset;
use zoo_models::init::Init;
use zoo_models::models::{Mlp, MlpConfig};
use zoo_models::Classifier;

use super::config::{DistillConfig, NetConfig, SgdConfig};
use super::data::{load_splits, normalize, EvalSet, Splits};
use super::task::{MlpTask, Targets};
use super::transfer::{errors_with_shift, select_bias, BiasChoice, TransferSet};

/// The paper, as cited in the summary.
pub const PAPER: &str =
    "Hinton, Vinyals & Dean (2015), Distilling the Knowledge in a Neural Network, \
                         arXiv:1503.02531, §3 (MNIST)";
const SRC: &str = "Hinton et al. 2015, §3";

/// A stream of seeds for one role ("teacher", "student"…) of one experiment seed, so that
/// the model initialisations of different roles are unrelated while the hard-label and distilled
/// students of a seed start from the *same* weights (a paired comparison).
pub fn init_rng(seed: u64, role: &str) -> rand::rngs::StdRng {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in role.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
    }
    rand::rngs::StdRng::seed_from_u64(h ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// Builds the 784-…-10 ReLU MLP of `net`.
pub fn build_mlp(net: &NetConfig, device: &Device, rng: &mut rand::rngs::StdRng) -> Result<Mlp> {
    let mut dims = vec![784];
    dims.extend_from_slice(&net.hidden);
    dims.push(10);
    let mut c = MlpConfig::new(&dims);
    c.input_dropout = net.dropout_input as f64;
    c.hidden_dropout = net.dropout_hidden as f64;
    c.max_norm = net.max_norm.map(|m| m as f64);
    if let Some(std) = net.init_std {
        c.init = Init::Normal { std };
        c.bias_init = Some(Init::Constant(0.0));
    }
    Ok(Mlp::new(c, rng, device)?)
}

/// Everything one trained net tells us.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetResult {
    /// Test errors (of the test set's size).
    pub test_errors: usize,
    /// Test errors per true class.
    pub test_errors_per_class: Vec<usize>,
    /// Validation errors.
    pub val_errors: usize,
    /// The bias shift chosen on validation (transfer sets missing classes only).
    pub bias: Option<BiasChoice>,
    /// Test errors with the chosen shift, and per class.
    pub test_errors_shifted: Option<(usize, Vec<usize>)>,
    /// Wall time of the training run, seconds.
    pub train_s: f64,
}

pub(super) fn evaluate(
    model: &Mlp,
    val: &EvalSet,
    test: &EvalSet,
    shift: Option<(&[usize], &[f32])>,
    train_s: f64,
) -> Result<NetResult> {
    let nc = model.num_classes();
    let vl = val.logits(model)?;
    let tl = test.logits(model)?;
    let (test_errors, per_class) = errors_with_shift(&tl, &test.labels, nc, &[], 0.0);
    let val_errors = errors_with_shift(&vl, &val.labels, nc, &[], 0.0).0;
    let (bias, shifted) = match shift {
        Some((classes, grid)) => {
            // Chosen on the validation split only; the test set is only scored with it.
            let c = select_bias(&vl, &val.labels, nc, classes, grid);
            let s = errors_with_shift(&tl, &test.labels, nc, classes, c.delta);
            (Some(c), Some(s))
        }
        None => (None, None),
    };
    Ok(NetResult {
        test_errors,
        test_errors_per_class: per_class,
        val_errors,
        bias,
        test_errors_shifted: shifted,
        train_s,
    })
}

fn seed_time(run: &SeedRun) -> f64 {
    run.history.last().map(|r| r.time_s).unwrap_or(0.0)
}

/// Where the default teacher is saved.
pub fn teacher_file(out: &Path) -> PathBuf {
    out.join("teacher.safetensors")
}

/// Trains the teacher (or loads it from `path`), returning it with its result.
pub(super) fn get_teacher(
    exp: &Experiment<DistillConfig>,
    splits: &Splits,
    val: &EvalSet,
    test: &EvalSet,
    path: Option<&Path>,
) -> Result<(Mlp, NetResult)> {
    let cfg = &exp.config;
    let dev = &exp.device;
    let mut rng = init_rng(cfg.teacher_seed, "teacher");
    let model = build_mlp(&cfg.teacher, dev, &mut rng)?;
    if let Some(p) = path {
        let sd = zoo_models::checkpoint::load_tensors(p, dev)
            .with_context(|| format!("--teacher {}", p.display()))?;
        model.store().load_state_dict(&sd).with_context(|| {
            format!(
                "--teacher {}: not a {:?} teacher",
                p.display(),
                cfg.teacher.hidden
            )
        })?;
        tracing::info!("teacher loaded from {}", p.display());
        let r = evaluate(&model, val, test, None, 0.0)?;
        return Ok((model, r));
    }
    let mut task = MlpTask::new(
        model,
        &cfg.teacher,
        &cfg.teacher_sgd,
        splits.train.clone(),
        normalize(cfg)?,
        Targets::Hard,
        val.clone(),
        test.clone(),
        dev,
    )?;
    let runner = Runner::with_dir(&exp.results, &[cfg.teacher_seed], cfg.teacher_sgd.epochs)
        .resume(exp.common.resume)
        .eval_every(cfg.teacher_eval_every)
        .label("teacher");
    let run = runner.run_seed(cfg.teacher_seed, &mut task)?;
    let model = task.model;
    let file = teacher_file(exp.results.root());
    zoo_models::checkpoint::save_tensors(&file, &model.store().state_dict()?)?;
    tracing::info!("teacher saved to {}", file.display());
    let r = evaluate(&model, val, test, None, seed_time(&run))?;
    Ok((model, r))
}

/// What a student learns from, and with which optimiser.
#[derive(Debug, Clone)]
pub enum StudentKind {
    /// Hard labels only.
    Hard {
        /// Optimiser.
        sgd: SgdConfig,
    },
    /// [`zoo_models::loss::kd_loss`] at temperature `t` with soft weight `alpha`.
    Distilled {
        /// Temperature.
        t: f64,
        /// Soft-term weight.
        alpha: f64,
        /// Optimiser.
        sgd: SgdConfig,
    },
}

impl StudentKind {
    pub(super) fn sgd(&self) -> &SgdConfig {
        match self {
            StudentKind::Hard { sgd } | StudentKind::Distilled { sgd, .. } => sgd,
        }
    }
}

/// What every student run shares: the experiment, the data and the teacher's soft targets.
pub(super) struct Shared<'a> {
    pub(super) exp: &'a Experiment<DistillConfig>,
    pub(super) splits: &'a Splits,
    pub(super) val: &'a EvalSet,
    pub(super) test: &'a EvalSet,
    /// Teacher logits for every image of `splits.train` (hard-label students need none).
    pub(super) teacher_logits: Option<&'a Tensor>,
}

/// One student run on the transfer set `set`, logged under `seed_<s>/<label>/`.
pub(super) fn train_student(
    sh: &Shared,
    seed: u64,
    label: &str,
    kind: &StudentKind,
    set: &TransferSet,
) -> Result<NetResult> {
    let (exp, splits, val, test) = (sh.exp, sh.splits, sh.val, sh.test);
    let cfg = &exp.config;
    let dev = &exp.device;
    let idx = set.indices(&splits.train.labels);
    anyhow::ensure!(!idx.is_empty(), "transfer set {} is empty", set.tag());
    let data: ImageDataset = splits.train.subset(&idx);
    // Same initial weights for every student of this seed (paired comparison).
    let model = build_mlp(&cfg.student, dev, &mut init_rng(seed, "student"))?;
    let targets = match kind {
        StudentKind::Hard { .. } => Targets::Hard,
        StudentKind::Distilled { t, alpha, .. } => {
            let ids: Vec<u32> = idx.iter().map(|&i| i as u32).collect();
            let sub = sh
                .teacher_logits
                .context("a distilled student needs the teacher's logits")?
                .index_select(&Tensor::new(ids.as_slice(), dev)?, 0)?;
            Targets::Soft {
                teacher_logits: sub,
                t: *t,
                alpha: *alpha,
            }
        }
    };
    let sgd = kind.sgd();
    let mut task = MlpTask::new(
        model,
        &cfg.student,
        sgd,
        data,
        normalize(cfg)?,
        targets,
        val.clone(),
        test.clone(),
        dev,
    )?;
    let runner = Runner::with_dir(&exp.results, &[seed], sgd.epochs)
        .resume(exp.common.resume)
        .eval_every(sgd.epochs)
        .label(label);
    let run = runner.run_seed(seed, &mut task)?;
    let classes = set.shifted_classes();
    let grid = cfg.bias_grid();
    let shift = (!classes.is_empty()).then_some((classes.as_slice(), grid.as_slice()));
    let r = evaluate(&task.model, val, test, shift, seed_time(&run))?;
    tracing::info!(
        "seed {seed} {label}: {} test errors (val {}){}",
        r.test_errors,
        r.val_errors,
        match (&r.bias, &r.test_errors_shifted) {
            (Some(b), Some((e, _))) => format!(
                ", bias {:+.2} on {:?} -> {e} test errors",
                b.delta, b.classes
            ),
            _ => String::new(),
        }
    );
    Ok(r)
}

/// All results of one student seed.
#[derive(Debug, Clone, Serialize)]
pub struct SeedResults {
    /// The seed.
    pub seed: u64,
    /// Hard-label student.
    pub hard: NetResult,
    /// Distilled at the main temperature on the full transfer set.
    pub distilled: NetResult,
    /// Distilled without the omitted class.
    pub omit: NetResult,
    /// Distilled on the "only" classes.
    pub only: NetResult,
    /// Temperature sweep: T → result (includes the main temperature).
    pub sweep: BTreeMap<String, NetResult>,
}

pub(super) fn t_key(t: f64) -> String {
    format!("{t}")
}

/// Data, evaluation sets, teacher and its soft targets on the transfer set.
struct Prepared {
    splits: Splits,
    val: EvalSet,
    test: EvalSet,
    teacher: NetResult,
    teacher_logits: Tensor,
}

fn prepare(exp: &Experiment<DistillConfig>, teacher_path: Option<&Path>) -> Result<Prepared> {
    let cfg = &exp.config;
    let dev = &exp.device;
    let splits = load_splits(cfg, &exp.common.data_source())?;
    tracing::info!(
        "MNIST: {} transfer/training, {} validation, {} test images",
        splits.train.len(),
        splits.val.len(),
        splits.test.len()
    );
    let norm = normalize(cfg)?;
    let val = EvalSet::new(&splits.val, &norm, dev)?;
    let test = EvalSet::new(&splits.test, &norm, dev)?;
    let (teacher, teacher_res) = get_teacher(exp, &splits, &val, &test, teacher_path)?;
    tracing::info!(
        "teacher: {} test errors, {} val errors",
        teacher_res.test_errors,
        teacher_res.val_errors
    );
    // Soft targets come from the teacher in evaluation mode (no dropout) on unjittered images.
    let teacher_logits = EvalSet::new(&splits.train, &norm, dev)?.logits_tensor(&teacher)?;
    Ok(Prepared {
        splits,
        val,
        test,
        teacher: teacher_res,
        teacher_logits,
    })
}

/// One point of the validation grid of [`tune`].
#[derive(Debug, Clone, Serialize)]
pub struct TunePoint {
    /// "hard" or "distilled".
    pub kind: String,
    /// Learning rate.
    pub lr: f64,
    /// Soft weight (distilled only).
    pub alpha: Option<f64>,
    /// Validation errors after training (None: training diverged).
    pub val_errors: Option<usize>,
}

impl TunePoint {
    /// A grid point from a run's outcome; a run stopped by the NaN guard is recorded as diverged
    /// (a grid is expected to reach unstable learning rates), any other error is passed on.
    fn new(kind: &str, lr: f64, alpha: Option<f64>, r: Result<NetResult>) -> Result<Self> {
        let val_errors = match r {
            Ok(r) => Some(r.val_errors),
            Err(e) => match e.downcast_ref::<crate::runner::NonFinite>() {
                Some(nf) => {
                    tracing::warn!("{kind} lr {lr} alpha {alpha:?} diverged: {nf}");
                    None
                }
                None => return Err(e),
            },
        };
        Ok(Self {
            kind: kind.into(),
            lr,
            alpha,
            val_errors,
        })
    }
}

/// Chooses the students' learning rates and the soft/hard weighting on the validation split:
/// trains the hard-label student for each of `cfg.tune_hard_lrs` and the distilled student (T of
/// the config, full transfer set) for each pair of `cfg.tune_kd_lrs` × `cfg.tune_alphas`, seed =
/// the first seed, and writes `tune.json` and `tune.md` (validation errors only). A diverged run
/// is recorded as such.
pub fn tune(
    exp: &Experiment<DistillConfig>,
    teacher_path: Option<&Path>,
) -> Result<Vec<TunePoint>> {
    let cfg = &exp.config;
    let p = prepare(exp, teacher_path)?;
    let sh = Shared {
        exp,
        splits: &p.splits,
        val: &p.val,
        test: &p.test,
        teacher_logits: Some(&p.teacher_logits),
    };
    let seed = exp.common.seeds()[0];
    let mut points = Vec::new();
    for &lr in &cfg.tune_hard_lrs {
        let mut sgd = cfg.student_sgd.clone();
        sgd.lr = lr;
        let kind = StudentKind::Hard { sgd };
        let r = train_student(
            &sh,
            seed,
            &format!("tune_hard_lr{lr}"),
            &kind,
            &TransferSet::Full,
        );
        points.push(TunePoint::new("hard", lr, None, r)?);
    }
    for &alpha in &cfg.tune_alphas {
        for &lr in &cfg.tune_kd_lrs {
            let mut sgd = cfg.kd.sgd.clone();
            sgd.lr = lr;
            let kind = StudentKind::Distilled {
                t: cfg.kd.temperature,
                alpha,
                sgd,
            };
            let label = format!("tune_kd_lr{lr}_a{alpha}");
            let r = train_student(&sh, seed, &label, &kind, &TransferSet::Full);
            points.push(TunePoint::new("distilled", lr, Some(alpha), r)?);
        }
    }
    let best = |k: &str| {
        points
            .iter()
            .filter(|q| q.kind == k && q.val_errors.is_some())
            .min_by_key(|q| q.val_errors)
            .cloned()
    };
    let sgd_line = |s: &SgdConfig| {
        format!(
            "{} epochs, batch {}, {:?} decay, momentum {}",
            s.epochs, s.batch_size, s.decay, s.momentum_end
        )
    };
    let mut md = format!(
        "# distill: validation grid (preset `{}`, seed {seed}, T = {})\n\n\
         Teacher: {} validation errors. Hard-label students: {}; distilled students: {}; learning \
         rates and α from the grid. Errors on the {} validation images (the last of MNIST's \
         training set; never trained on); test errors are not used here.\n\n\
         | student | lr | α | val errors |\n|---|---:|---:|---:|\n",
        exp.common.preset,
        cfg.kd.temperature,
        p.teacher.val_errors,
        sgd_line(&cfg.student_sgd),
        sgd_line(&cfg.kd.sgd),
        p.val.len()
    );
    for q in &points {
        let a = q.alpha.map_or("—".to_string(), |a| format!("{a}"));
        let e = q
            .val_errors
            .map_or("diverged (NaN)".to_string(), |e| e.to_string());
        md.push_str(&format!("| {} | {} | {a} | {e} |\n", q.kind, q.lr));
    }
    for k in ["hard", "distilled"] {
        if let Some(b) = best(k) {
            md.push_str(&format!(
                "\nBest {k}: lr = {}{} ({} val errors).\n",
                b.lr,
                b.alpha.map_or(String::new(), |a| format!(", α = {a}")),
                b.val_errors.unwrap_or(0)
            ));
        }
    }
    md.push_str(&format!(
        "\nCommand: `{}`\n",
        crate::results::command_line()
    ));
    exp.results.write_json(
        "tune.json",
        &serde_json::json!({ "teacher": p.teacher, "config": cfg, "points": points }),
    )?;
    exp.results.write("tune.md", md.as_bytes())?;
    tracing::info!("wrote {}", exp.results.path("tune.md").display());
    Ok(points)
}

fn f(v: usize) -> f64 {
    v as f64
}

/// The summary table and plots from the teacher's and the students' results (`test_counts`:
/// test images per class).
pub(super) fn summarise(
    exp: &Experiment<DistillConfig>,
    test_counts: &[usize],
    teacher: &NetResult,
    seeds: &[SeedResults],
) -> Result<Summary> {
    let cfg = &exp.config;
    let n_test: usize = test_counts.iter().sum();
    let omit_c = cfg.omit_class as usize;
    let omit_n = test_counts.get(omit_c).copied().unwrap_or(0);
    let t = cfg.kd.temperature;
    let mut s = Summary::new(exp, PAPER, format!("MNIST test errors (of {n_test})"))?;
    let col = |g: &dyn Fn(&SeedResults) -> f64| -> Vec<f64> { seeds.iter().map(g).collect() };
    let arch = |n: &NetConfig| {
        let h: Vec<String> = n.hidden.iter().map(|w| w.to_string()).collect();
        format!("784-{}-10", h.join("-"))
    };
    let teacher_row = vec![f(teacher.test_errors); seeds.len()];
    s.row(
        Row::new(
            format!("Teacher {}, dropout + jitter", arch(&cfg.teacher)),
            "test errors",
            teacher_row,
        )
        .paper(67.0, SRC)
        .decimals(1)
        .note("one teacher, trained once and shared by all student seeds (so its std is 0)"),
    );
    s.row(
        Row::new(
            format!("Student {}, hard labels", arch(&cfg.student)),
            "test errors",
            col(&|r| f(r.hard.test_errors)),
        )
        .paper(146.0, SRC)
        .decimals(1),
    );
    s.row(
        Row::new(
            format!("Student distilled at T = {t}"),
            "test errors",
            col(&|r| f(r.distilled.test_errors)),
        )
        .paper(74.0, SRC)
        .decimals(1),
    );
    let gap = |r: &SeedResults| {
        let g = f(r.hard.test_errors) - f(teacher.test_errors);
        if g.abs() < 1e-9 {
            f64::NAN
        } else {
            (f(r.hard.test_errors) - f(r.distilled.test_errors)) / g
        }
    };
    s.row(
        Row::new(
            "Fraction of the student–teacher gap closed by distillation",
            "fraction",
            col(&gap),
        )
        .paper((146.0 - 74.0) / (146.0 - 67.0), "from the three rows above")
        .higher_is_better()
        .decimals(2),
    );
    let omit_tag = format!("transfer set without {omit_c}s");
    s.row(
        Row::new(
            format!("Distilled, {omit_tag}"),
            "test errors",
            col(&|r| f(r.omit.test_errors)),
        )
        .paper(206.0, SRC)
        .decimals(1),
    );
    s.row(
        Row::new(
            format!("Distilled, {omit_tag}: errors on the {omit_n} test {omit_c}s"),
            "test errors",
            col(&|r| f(r.omit.test_errors_per_class[omit_c])),
        )
        .paper(133.0, "Hinton et al. 2015, §3 (of 1010 threes)")
        .decimals(1),
    );
    let shifted = |r: &NetResult| r.test_errors_shifted.clone().unwrap_or((0, vec![0; 10]));
    s.row(
        Row::new(
            format!("Distilled, {omit_tag}, bias of {omit_c} shifted (chosen on validation)"),
            "test errors",
            col(&|r| f(shifted(&r.omit).0)),
        )
        .paper(109.0, "Hinton et al. 2015, §3 (shift +3.5, chosen on test)")
        .decimals(1),
    );
    s.row(
        Row::new(
            format!("  … of which on the test {omit_c}s"),
            "test errors",
            col(&|r| f(shifted(&r.omit).1[omit_c])),
        )
        .paper(14.0, SRC)
        .decimals(1),
    );
    s.row(
        Row::new(
            format!("Bias shift of class {omit_c} chosen on validation"),
            "logit",
            col(&|r| r.omit.bias.as_ref().map_or(f64::NAN, |b| b.delta as f64)),
        )
        .paper(3.5, SRC)
        .higher_is_better()
        .decimals(2),
    );
    let only_tag = format!(
        "transfer set of only {}",
        cfg.only_classes
            .iter()
            .map(|c| format!("{c}s"))
            .collect::<Vec<_>>()
            .join(" and ")
    );
    let pct = |e: usize| 100.0 * e as f64 / n_test as f64;
    s.row(
        Row::new(
            format!("Distilled, {only_tag}"),
            "% test error",
            col(&|r| pct(r.only.test_errors)),
        )
        .paper(47.3, SRC)
        .decimals(2),
    );
    s.row(
        Row::new(
            format!("Distilled, {only_tag}, their biases shifted (chosen on validation)"),
            "% test error",
            col(&|r| pct(shifted(&r.only).0)),
        )
        .paper(13.2, "Hinton et al. 2015, §3 (shift −7.6, chosen on test)")
        .decimals(2),
    );
    s.row(
        Row::new(
            "Bias shift of the transfer-set classes chosen on validation",
            "logit",
            col(&|r| r.only.bias.as_ref().map_or(f64::NAN, |b| b.delta as f64)),
        )
        .paper(-7.6, SRC)
        .higher_is_better()
        .decimals(2),
    );

    // Temperature sweep: mean ± std over the seeds that ran it.
    let swept: Vec<&SeedResults> = seeds.iter().filter(|r| !r.sweep.is_empty()).collect();
    let mut pts = Vec::new();
    let mut errs = Vec::new();
    let mut sweep_note = Vec::new();
    for &tt in &cfg.sweep_temperatures {
        let vals: Vec<f64> = swept
            .iter()
            .filter_map(|r| r.sweep.get(&t_key(tt)))
            .map(|r| f(r.test_errors))
            .collect();
        if vals.is_empty() {
            continue;
        }
        let (m, sd) = crate::stats::mean_std(&vals);
        pts.push((tt, m));
        errs.push(sd);
        sweep_note.push(format!("T={tt}: {m:.1} ± {sd:.1}"));
    }
    let hard_mean = crate::stats::mean_std(&col(&|r| f(r.hard.test_errors))).0;
    let mut plots = Vec::new();
    if !pts.is_empty() {
        let xs: Vec<f64> = pts.iter().map(|p| p.0).collect();
        let (lo, hi) = (xs[0], xs[xs.len() - 1]);
        let series = vec![
            Series::new("distilled student", pts.clone()).with_errors(errs),
            Series::new("hard-label student", vec![(lo, hard_mean), (hi, hard_mean)]),
            Series::new(
                "teacher",
                vec![(lo, f(teacher.test_errors)), (hi, f(teacher.test_errors))],
            ),
        ];
        plot::line_chart(
            &exp.results.path("temperature_sweep.svg"),
            &Labels::new(
                format!(
                    "Distilled {} vs temperature ({} seed(s))",
                    arch(&cfg.student),
                    swept.len()
                ),
                "temperature T",
                "test errors",
            ),
            &series,
        )?;
        plots.push("temperature_sweep.svg".to_string());
        s.note(format!(
            "Temperature sweep (test errors of the distilled student, mean ± std over {} seed(s)): {}",
            swept.len(),
            sweep_note.join(", ")
        ));
    }
    let cats = vec![
        "teacher".to_string(),
        "hard student".into(),
        format!("distilled T={t}"),
    ];
    let means: Vec<f64> = vec![
        f(teacher.test_errors),
        hard_mean,
        crate::stats::mean_std(&col(&|r| f(r.distilled.test_errors))).0,
    ];
    plot::bar_chart(
        &exp.results.path("main_result.svg"),
        &Labels::new("MNIST test errors (mean over seeds)", "", "test errors"),
        &cats,
        &[("ours", means.as_slice()), ("paper", &[67.0, 146.0, 74.0])],
    )?;
    plots.push("main_result.svg".to_string());
    for p in plots {
        s.plot(p);
    }
    s.note(format!(
        "Distillation loss: α·T²·KL(softmax(z_t/T) ‖ softmax(z_s/T)) + (1−α)·CE(y, z_s), KL summed over \
         classes, both terms averaged over the batch; α = {}. Soft targets from the teacher in eval mode \
         (no dropout) on unjittered images.",
        cfg.kd.alpha
    ));
    s.note(format!(
        "Bias shifts: a shift δ added to the output biases of the omitted class (or of the transfer-set \
         classes) is chosen on the validation split (the last {} training images, never used for \
         training) from a grid of step {} in [−{}, {}], then applied on test. The paper chose its shifts \
         on the test set.",
        cfg.val_size, cfg.bias_step, cfg.bias_max, cfg.bias_max
    ));
    s.note(
        "Each seed's hard-label and distilled students start from the same initial weights and see the \
         same batch order; only the loss differs."
            .to_string(),
    );
    for d in cfg.deviations_from_paper() {
        s.note(d);
    }
    exp.results.write_summary(&s)?;
    Ok(s)
}
