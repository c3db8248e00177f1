//! Shu et al. (2019), *Meta-Weight-Net: Learning an Explicit Mapping For Sample Weighting*: noisy
//! labels (uniform and pair-flip noise, Tables 2–3) and long-tailed CIFAR (Table 1), MWN against
//! CE, focal loss, class-balanced CE and L2RW, with the learned weighting function plotted.
//!
//! ```text
//! cargo run --release --bin mwn -- --preset cpu --data-dir ../shared/data/cifar10-jpeg
//! cargo run --release --bin mwn -- --preset cpu --parts noise --data-dir ../shared/data/cifar10-jpeg
//! cargo run --release --bin mwn -- --preset smoke --out /tmp/mwn --data-dir ../shared/data/cifar10-jpeg
//! ```
//!
//! Writes `results/mwn/<preset>/`: `config.json`, `summary.md`/`summary.json`, `results.json`
//! (every run), `weight_fn_*.svg` (learned `w(ℓ)`), `weights_hist_*.svg` (weights of clean vs
//! corrupted, or head vs tail, examples) and per-run logs under `seed_<s>/<part>_<setting>/<method>/`.

use anyhow::Result;
use clap::Parser;
use zoo::cli::{vary_first, CommonArgs, ExperimentConfig, NoisyLabelArgs};
use zoo::mwn::{Method, MwnConfig, Normalise, Part};

#[derive(Parser)]
#[command(
    about = "Shu et al. 2019, Meta-Weight-Net: noisy labels and long-tailed CIFAR, MWN vs CE, focal, class-balanced CE and L2RW",
    after_help = "Results of a part not run now that are already in the output directory, from the same configuration, are kept in the summary; --methods applies to both parts."
)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    noisy: NoisyLabelArgs<Part, Method>,
    /// Imbalance factors of the long-tailed part, e.g. `200,100,50` (replaces the preset's; the
    /// first preset setting's dataset, network and meta set size are kept).
    #[arg(long, value_delimiter = ',')]
    imbalance: Option<Vec<f64>>,
    /// Meta step every N training steps (1: every step, as the authors' code).
    #[arg(long)]
    meta_every: Option<usize>,
    /// Normalisation of MWN's weights.
    #[arg(long, value_enum)]
    normalise: Option<Normalise>,
}

fn apply(cfg: &mut MwnConfig, a: &Args) -> Result<()> {
    if let Some(v) = &a.noisy.methods {
        cfg.noise.methods = v.clone();
        cfg.long_tail.methods = v.clone();
    }
    if let Some(v) = &a.noisy.noise {
        vary_first(&mut cfg.noise.settings, v, "--noise", |s, n| {
            s.noise = n.trim().to_string()
        })?;
    }
    if let Some(v) = &a.imbalance {
        vary_first(&mut cfg.long_tail.settings, v, "--imbalance", |s, &f| {
            s.imbalance_factor = f
        })?;
    }
    zoo::apply_overrides!(cfg.mwn, a; meta_every, normalise);
    cfg.normalise();
    Ok(())
}

fn main() -> Result<()> {
    // SAFETY: the first statement of main, before any thread starts.
    unsafe { zoo::init_process() };
    let args = Args::parse();
    let mut cfg = MwnConfig::preset(args.common.preset);
    apply(&mut cfg, &args)?;
    let mut parts = args
        .noisy
        .parts
        .clone()
        .unwrap_or_else(|| vec![Part::Noise, Part::LongTail]);
    parts.dedup();
    let src = args.common.data_source();
    let opts = zoo::experiment::SetupOptions {
        parts: Some(parts.iter().map(|p| p.as_str().to_string()).collect()),
        ..Default::default()
    };
    let exp = zoo::Experiment::setup_with("mwn", &args.common, cfg, &opts)?;
    let summary = zoo::mwn::run(&exp, &src, &parts)?;
    println!("{}", summary.table_markdown());
    Ok(())
}
