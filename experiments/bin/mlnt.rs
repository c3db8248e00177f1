//! Li et al. (2019), *Learning to Learn from Noisy Labeled Data* (MLNT): CE vs MLNT on noisy
//! CIFAR-10 (the split of `mwn`, same seed, same split), with the EMA teacher, exact or
//! first-order meta-gradient, and the optional second iteration. Clothing1M's preset is recorded
//! but not runnable offline.
//!
//! ```text
//! cargo run --release --bin mlnt -- --preset cpu --jobs 2 --data-dir ../shared/data/cifar10-jpeg
//! cargo run --release --bin mlnt -- --preset smoke --out /tmp/mlnt --data-dir ../shared/data/cifar10-jpeg
//! cargo run --release --bin mlnt -- --preset paper --parts cifar --data-dir ../shared/data/cifar10-jpeg
//! ```
//!
//! Writes `results/mlnt/<preset>/`: `config.json`, `summary.md`/`summary.json`, `results.json`
//! (every run) and per-run logs under `seed_<s>/<dataset>_<noise>/<method>/`.

use anyhow::Result;
use clap::Parser;
use zoo::cli::{vary_first, CommonArgs, ExperimentConfig, NoisyLabelArgs};
use zoo::mlnt::{Features, Method, MlntConfig, Part, Update};

#[derive(Parser)]
#[command(
    about = "Li et al. 2019, MLNT: meta-learning based noise-tolerant training vs CE on noisy CIFAR-10",
    after_help = "--parts clothing1m stops with an error (data not available offline)."
)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    noisy: NoisyLabelArgs<Part, Method>,
    /// M: synthetic label sets per meta step.
    #[arg(long)]
    num_fast: Option<usize>,
    /// ρ: fraction of the batch whose label is transferred from a neighbour.
    #[arg(long)]
    perturb_ratio: Option<f64>,
    /// k: neighbours considered.
    #[arg(long)]
    num_neighbor: Option<usize>,
    /// Fast SGD steps per synthetic set.
    #[arg(long)]
    fast_steps: Option<usize>,
    /// Fast step size α.
    #[arg(long)]
    fast_lr: Option<f64>,
    /// First-order meta-gradient for the `mlnt` method (default: exact second order).
    #[arg(long)]
    first_order: bool,
    /// Weight of the consistency (meta) loss.
    #[arg(long)]
    alpha: Option<f64>,
    /// Step after which the teacher and the meta loss start.
    #[arg(long)]
    start_iter: Option<usize>,
    /// End of the meta-loss ramp and of the first EMA factor.
    #[arg(long)]
    mid_iter: Option<usize>,
    /// Meta step every N steps after start_iter.
    #[arg(long)]
    meta_every: Option<usize>,
    /// How the meta-gradient enters the update.
    #[arg(long, value_enum)]
    update: Option<Update>,
    /// Feature space of the neighbour search.
    #[arg(long, value_enum)]
    features: Option<Features>,
    /// Run the second iteration (true/false).
    #[arg(long)]
    iterative: Option<bool>,
}

fn apply(cfg: &mut MlntConfig, a: &Args) -> Result<()> {
    if let Some(v) = &a.noisy.parts {
        cfg.parts = v.clone();
    }
    if let Some(v) = &a.noisy.methods {
        cfg.cifar.methods = v.clone();
    }
    if let Some(v) = &a.noisy.noise {
        vary_first(&mut cfg.cifar.settings, v, "--noise", |s, n| {
            s.noise = n.trim().to_string()
        })?;
    }
    if a.first_order {
        cfg.mlnt.first_order = true;
    }
    zoo::apply_overrides!(cfg.mlnt, a; num_fast, perturb_ratio, num_neighbor, fast_steps,
        fast_lr, alpha, start_iter, mid_iter, meta_every, update, features, iterative);
    cfg.normalise();
    Ok(())
}

fn main() -> Result<()> {
    // SAFETY: the first statement of main, before any thread starts.
    unsafe { zoo::init_process() };
    let args = Args::parse();
    let mut cfg = MlntConfig::preset(args.common.preset);
    apply(&mut cfg, &args)?;
    // Before anything is written: Clothing1M cannot run here.
    zoo::mlnt::check_parts_available(&cfg.parts)?;
    let parts = cfg.parts.clone();
    let src = args.common.data_source();
    let exp = zoo::Experiment::setup("mlnt", &args.common, cfg)?;
    let summary = zoo::mlnt::run(&exp, &src, &parts)?;
    println!("{}", summary.table_markdown());
    Ok(())
}
