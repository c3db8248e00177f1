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
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser};
use zoo::cli::{CommonArgs, ExperimentConfig, Preset, SeedList};
use zoo::distill::DistillConfig;

#[derive(Parser)]
#[command(
    about = "Hinton et al. 2015 knowledge distillation on MNIST (teacher, students, transfer sets, T sweep)"
)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
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
    /// Instead of the experiment, choose the students' learning rates and α on the validation
    /// split (grid of the preset) and write tune.md/tune.json [default out: results/distill/PRESET/tune].
    #[arg(long)]
    tune: bool,
}

fn main() -> Result<()> {
    zoo::init_process();
    let matches = Args::command().get_matches();
    let mut args = Args::from_arg_matches(&matches)?;
    // Three seeds for the paper and cpu presets (mean ± std), one for smoke, unless --seeds.
    if matches.value_source("seeds") != Some(ValueSource::CommandLine) {
        let seeds = match args.common.preset {
            Preset::Smoke => vec![0],
            Preset::Cpu | Preset::Paper => vec![0, 1, 2],
        };
        args.common.seeds = SeedList(seeds);
    }
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
        let mut ts = Vec::new();
        for part in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match part.parse::<f64>() {
                Ok(t) if t > 0.0 && t.is_finite() => ts.push(t),
                _ => bail!("--sweep: {part:?} is not a positive temperature"),
            }
        }
        if ts.is_empty() {
            bail!("--sweep: give at least one temperature");
        }
        cfg.sweep_temperatures = ts;
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
    let exp = zoo::Experiment::setup("distill", &common, cfg)?;
    if args.tune {
        zoo::distill::experiment::tune(&exp, args.teacher.as_deref())?;
        println!("{}", std::fs::read_to_string(exp.results.path("tune.md"))?);
        return Ok(());
    }
    let summary = zoo::distill::run(&exp, args.teacher.as_deref())?;
    println!("{}", summary.table_markdown());
    Ok(())
}
