//! Pereyra et al. (2017): the confidence penalty against label smoothing and dropout.
//!
//! ```text
//! cargo run --release --bin confidence_penalty -- --preset cpu
//! cargo run --release --bin confidence_penalty -- --preset smoke --out /tmp/cp
//! cargo run --release --bin confidence_penalty -- --methods none,cp --beta 0.5,1,2 --seeds 0,1,2,3,4
//! cargo run --release --bin confidence_penalty -- --preset paper --run-cifar --dry-run
//! ```
//!
//! Writes `results/confidence_penalty/<preset>/`: `summary.md`/`summary.json` (the paper's table
//! beside ours), `methods.md` (error, NLL, ECE, entropy, Welch's t-tests per method),
//! `tuning.md`/`tuning.json` (grids and validation scores), entropy histograms and reliability
//! diagrams, and per-run logs under `seed_<s>/`.

use anyhow::{bail, Result};
use clap::Parser;
use zoo::cli::CommonArgs;
use zoo::confidence_penalty::config::CpConfig;
use zoo::confidence_penalty::method::{parse_methods, Method};
use zoo::confidence_penalty::run;
use zoo::ExperimentConfig;

/// A comma-separated list of numbers (one clap value).
#[derive(Debug, Clone)]
struct Values(Vec<f64>);

/// A comma-separated list of methods (one clap value).
#[derive(Debug, Clone)]
struct Methods(Vec<Method>);

fn parse_method_list(s: &str) -> Result<Methods, String> {
    parse_methods(s).map(Methods)
}

fn parse_f64_list(s: &str) -> Result<Values, String> {
    let v: Result<Vec<f64>, String> = s
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(|| format!("{p:?} is not a finite number"))
        })
        .collect();
    let v = v?;
    if v.is_empty() {
        return Err("give at least one value".into());
    }
    Ok(Values(v))
}

/// Confidence penalty, label smoothing and dropout on MNIST (Pereyra et al. 2017).
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// Methods, comma-separated: none, dropout, ls_uniform, ls_unigram, cp, cp_annealed,
    /// cp_thresholded, or `dropout+REG` for one of these. The first is the baseline of the t-tests.
    #[arg(long, value_parser = parse_method_list)]
    methods: Option<Methods>,
    /// Epochs of every run (tuning and final).
    #[arg(long)]
    epochs: Option<usize>,
    /// Mini-batch size.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Base learning rate.
    #[arg(long)]
    lr: Option<f64>,
    /// Grid of the confidence-penalty weight β (comma-separated, each ≥ 0).
    #[arg(long, value_parser = parse_f64_list, allow_hyphen_values = true)]
    beta: Option<Values>,
    /// Grid of the annealed penalty's final β.
    #[arg(long, value_parser = parse_f64_list, allow_hyphen_values = true)]
    beta_annealed: Option<Values>,
    /// Grid of the label-smoothing weight ε (each in [0, 1]).
    #[arg(long, value_parser = parse_f64_list, allow_hyphen_values = true)]
    eps: Option<Values>,
    /// Grid of the entropy threshold Γ in nats (each > 0).
    #[arg(long, value_parser = parse_f64_list, allow_hyphen_values = true)]
    threshold: Option<Values>,
    /// Also run the CIFAR-10 DenseNet-40 task of the paper preset (days on a CPU).
    #[arg(long)]
    run_cifar: bool,
}

fn apply(cfg: &mut CpConfig, args: &Args) -> Result<()> {
    if args.run_cifar {
        match cfg.tasks.iter_mut().find(|t| t.name == "cifar10") {
            Some(t) => t.run = true,
            None => bail!("--run-cifar: this preset has no CIFAR-10 task (use --preset paper)"),
        }
    }
    for t in cfg.tasks.iter_mut().filter(|t| t.run) {
        if let Some(m) = &args.methods {
            t.methods = m.0.clone();
        }
        if let Some(v) = args.epochs {
            t.sgd.epochs = v;
        }
        if let Some(v) = args.batch_size {
            t.sgd.batch_size = v;
        }
        if let Some(v) = args.lr {
            t.sgd.lr = v;
        }
        if let Some(v) = &args.beta {
            t.grids.beta = v.0.clone();
        }
        if let Some(v) = &args.beta_annealed {
            t.grids.beta_annealed = v.0.clone();
        }
        if let Some(v) = &args.eps {
            t.grids.eps = v.0.clone();
        }
        if let Some(v) = &args.threshold {
            t.grids.threshold = v.0.clone();
        }
    }
    Ok(())
}

fn main() -> Result<()> {
    // SAFETY: the first statement of main, before any thread starts.
    unsafe { zoo::init_process() };
    let args = Args::parse();
    let mut cfg = CpConfig::preset(args.common.preset);
    apply(&mut cfg, &args)?;
    let exp = zoo::Experiment::setup("confidence_penalty", &args.common, cfg)?;
    run::run(&exp)
}
