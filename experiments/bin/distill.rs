//! Hinton, Vinyals & Dean (2015), *Distilling the Knowledge in a Neural Network*, §3 (MNIST):
//! a dropout + jitter 784-1200-1200-10 teacher distilled into an unregularised 784-800-800-10
//! student at T = 20, transfer sets without 3s and with only 7s and 8s (bias shifts chosen on a
//! validation split), and the error of the distilled student against T.
//!
//! ```text
//! cargo run --release --bin distill -- --preset cpu            # seeds 0,1,2
//! cargo run --release --bin distill -- --preset cpu --teacher results/distill/cpu/teacher.safetensors
//! cargo run --release --bin distill -- --preset smoke --out /tmp/distill
//! ```
//!
//! Writes `results/distill/<preset>/`: `config.json`, `summary.md`/`summary.json` (the paper's
//! numbers beside ours), `results.json` (every run, chosen bias shifts, per-class errors),
//! `teacher.safetensors`, SVG plots and per-run logs under `seed_<s>/<run>/log.csv`.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Parser;
use zoo::cli::{CommonArgs, ExperimentConfig};
use zoo::distill::DistillConfig;
use zoo::plan::PlanArgs;

#[derive(Parser)]
#[command(
    about = "Hinton et al. 2015 knowledge distillation on MNIST (teacher, students, transfer sets, T sweep)"
)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    plan: PlanArgs,
    /// Reuse a saved teacher (safetensors with PyTorch-style names, as this binary writes to
    /// OUT/teacher.safetensors) instead of training one.
    #[arg(long, value_name = "PATH")]
    teacher: Option<PathBuf>,
    /// Distillation temperature of the main student (paper: 20).
    #[arg(long)]
    temperature: Option<f64>,
    /// Weight α of the soft-target term; the hard-label term gets 1 − α.
    #[arg(long)]
    alpha: Option<f64>,
    /// Teacher epochs.
    #[arg(long)]
    teacher_epochs: Option<usize>,
    /// Epochs of every student (hard-label and distilled).
    #[arg(long)]
    student_epochs: Option<usize>,
    /// Epochs of the distilled students only (after --student-epochs).
    #[arg(long)]
    kd_epochs: Option<usize>,
    /// Batch size of the distilled students.
    #[arg(long)]
    kd_batch: Option<usize>,
    /// Learning rate of the teacher.
    #[arg(long)]
    teacher_lr: Option<f64>,
    /// Learning rate of the hard-label student.
    #[arg(long)]
    student_lr: Option<f64>,
    /// Learning rate of the distilled students.
    #[arg(long)]
    kd_lr: Option<f64>,
    /// Comma-separated temperatures of the sweep (e.g. 1,2,5,10,20,40).
    #[arg(long, value_name = "LIST")]
    sweep: Option<String>,
    /// Number of seeds (from the first) that also run the temperature sweep.
    #[arg(long)]
    sweep_seeds: Option<usize>,
    /// `--tune` grid: comma-separated learning rates of the hard-label student ("none": skip).
    #[arg(long, value_name = "LIST")]
    tune_hard_lrs: Option<String>,
    /// `--tune` grid: comma-separated learning rates of the distilled student.
    #[arg(long, value_name = "LIST")]
    tune_kd_lrs: Option<String>,
    /// `--tune` grid: comma-separated soft weights α.
    #[arg(long, value_name = "LIST")]
    tune_alphas: Option<String>,
    /// Instead of the experiment, choose the students' learning rates and α on the validation
    /// split (grid of the preset) and write tune.md/tune.json [default out: results/distill/PRESET/tune].
    #[arg(long)]
    tune: bool,
}

/// A comma-separated list of positive numbers, at least one (grid values are checked for their
/// range by the config's validation; an empty grid is simply skipped by `--tune`).
fn parse_list(flag: &str, list: &str) -> Result<Vec<f64>> {
    let mut v = Vec::new();
    for part in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match part.parse::<f64>() {
            Ok(x) if x > 0.0 && x.is_finite() => v.push(x),
            _ => bail!("{flag}: {part:?} is not a positive number"),
        }
    }
    if v.is_empty() {
        bail!("{flag}: give at least one value");
    }
    Ok(v)
}

fn main() -> Result<()> {
    // SAFETY: the first statement of main, before any thread starts.
    unsafe { zoo::init_process() };
    let args = Args::parse();
    let mut cfg = DistillConfig::preset(args.common.preset);
    if let Some(t) = args.temperature {
        cfg.kd.temperature = t;
    }
    if let Some(a) = args.alpha {
        cfg.kd.alpha = a;
    }
    if let Some(e) = args.teacher_epochs {
        cfg.teacher_sgd.epochs = e;
    }
    if let Some(e) = args.student_epochs {
        cfg.student_sgd.epochs = e;
        cfg.kd.sgd.epochs = e;
    }
    if let Some(e) = args.kd_epochs {
        cfg.kd.sgd.epochs = e;
    }
    if let Some(b) = args.kd_batch {
        cfg.kd.sgd.batch_size = b;
    }
    for (flag, list, field) in [
        (
            "--tune-hard-lrs",
            &args.tune_hard_lrs,
            &mut cfg.tune_hard_lrs,
        ),
        ("--tune-kd-lrs", &args.tune_kd_lrs, &mut cfg.tune_kd_lrs),
        ("--tune-alphas", &args.tune_alphas, &mut cfg.tune_alphas),
    ] {
        if let Some(list) = list {
            *field = if list == "none" {
                Vec::new()
            } else {
                parse_list(flag, list)?
            };
        }
    }
    if let Some(lr) = args.teacher_lr {
        cfg.teacher_sgd.lr = lr;
    }
    if let Some(lr) = args.student_lr {
        cfg.student_sgd.lr = lr;
    }
    if let Some(lr) = args.kd_lr {
        cfg.kd.sgd.lr = lr;
    }
    if let Some(n) = args.sweep_seeds {
        cfg.sweep_seeds = n;
    }
    if let Some(list) = &args.sweep {
        cfg.sweep_temperatures = parse_list("--sweep", list)?;
    }
    if let Some(p) = &args.teacher {
        if !p.is_file() {
            bail!("--teacher {}: no such file", p.display());
        }
    }
    let mut common = args.common.clone();
    if args.tune && common.out.is_none() {
        common.out = Some(common.out_dir("distill").join("tune"));
    }
    if args.tune && (args.plan.partial() || args.plan.list_runs) {
        bail!("--tune runs its own grid: it takes no --list-runs, --only, --shard or --summarise");
    }
    if args.plan.list_runs {
        return zoo::plan::list_runs("distill", &common, cfg, zoo::distill::plan);
    }
    if args.tune {
        let exp = zoo::Experiment::setup("distill", &common, cfg)?;
        zoo::distill::experiment::tune(&exp, args.teacher.as_deref())?;
        println!("{}", std::fs::read_to_string(exp.results.path("tune.md"))?);
        return Ok(());
    }
    let exp = zoo::plan::setup("distill", &common, cfg, &args.plan)?;
    if let Some(summary) = zoo::distill::drive(&exp, args.teacher.as_deref(), &args.plan)? {
        println!("{}", summary.table_markdown());
    }
    Ok(())
}
