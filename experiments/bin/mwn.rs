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

use anyhow::{bail, Result};
use clap::Parser;
use zoo::cli::{CommonArgs, ExperimentConfig};
use zoo::mwn::{Method, MwnConfig, Normalise, Part};

#[derive(Parser)]
#[command(
    about = "Shu et al. 2019, Meta-Weight-Net: noisy labels and long-tailed CIFAR, MWN vs CE, focal, class-balanced CE and L2RW"
)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// Parts to run (comma-separated). Results of a part not run now that are already in the
    /// output directory, from the same configuration, are kept in the summary.
    #[arg(long, value_enum, value_delimiter = ',')]
    parts: Option<Vec<Part>>,
    /// Methods of both parts (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',')]
    methods: Option<Vec<Method>>,
    /// Noise settings, e.g. `uniform_any:0.4,pair:0.2` (replaces the preset's; the first
    /// preset setting's dataset, network and meta set size are kept).
    #[arg(long, value_delimiter = ',')]
    noise: Option<Vec<String>>,
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
    if let Some(v) = &a.methods {
        cfg.noise.methods = v.clone();
        cfg.long_tail.methods = v.clone();
    }
    if let Some(v) = &a.noise {
        let Some(first) = cfg.noise.settings.first().cloned() else {
            bail!("--noise: the preset has no noise setting to take the dataset and network from");
        };
        cfg.noise.settings = v
            .iter()
            .map(|n| {
                let mut s = first.clone();
                s.noise = n.trim().to_string();
                s
            })
            .collect();
    }
    if let Some(v) = &a.imbalance {
        let Some(first) = cfg.long_tail.settings.first().cloned() else {
            bail!("--imbalance: the preset has no long-tail setting to take the dataset from");
        };
        cfg.long_tail.settings = v
            .iter()
            .map(|&f| {
                let mut s = first.clone();
                s.imbalance_factor = f;
                s
            })
            .collect();
    }
    if let Some(v) = a.meta_every {
        cfg.mwn.meta_every = v;
    }
    if let Some(v) = a.normalise {
        cfg.mwn.normalise = v;
    }
    cfg.normalise();
    Ok(())
}

fn main() -> Result<()> {
    zoo::init_process();
    let args = Args::parse();
    let mut cfg = MwnConfig::preset(args.common.preset);
    apply(&mut cfg, &args)?;
    let mut parts = args
        .parts
        .clone()
        .unwrap_or_else(|| vec![Part::Noise, Part::LongTail]);
    parts.dedup();
    let src = args.common.data_source();
    let exp = zoo::Experiment::setup("mwn", &args.common, cfg)?;
    let summary = zoo::mwn::run(&exp, &src, &parts)?;
    println!("{}", summary.table_markdown());
    Ok(())
}
