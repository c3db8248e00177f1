//! Ren, Zeng, Yang & Urtasun (2018), *Learning to Reweight Examples for Robust Deep Learning*:
//! MNIST 4-vs-9 class imbalance (plain SGD, proportional class weights, resampling, L2RW; test
//! error against the proportion of the majority class, Fig. 3) and CIFAR noisy labels (UniformFlip
//! and BackgroundFlip at 40 %, Table 1).
//!
//! ```text
//! cargo run --release --bin l2rw -- --preset cpu --parts mnist
//! cargo run --release --bin l2rw -- --preset cpu --parts cifar --cifar-dir ../shared/data/cifar10-jpeg
//! cargo run --release --bin l2rw -- --preset smoke --out /tmp/l2rw --cifar-dir ../shared/data/cifar10-jpeg
//! ```
//!
//! Writes `results/l2rw/<preset>/`: `config.json`, `summary.md`/`summary.json`, `results.json`
//! (every run), `mnist_imbalance.svg` and per-run logs under `seed_<s>/<part>_<setting>/<method>/`.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Parser;
use zoo::cli::{CommonArgs, ExperimentConfig};
use zoo::experiment::SetupOptions;
use zoo::l2rw::{AllZero, L2rwConfig, Method, Part};
use zoo_data::DataSource;

#[derive(Parser)]
#[command(
    about = "Ren et al. 2018, Learning to Reweight Examples: MNIST class imbalance and CIFAR noisy labels"
)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// Experiments to run (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',')]
    parts: Option<Vec<Part>>,
    /// MNIST methods (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',')]
    mnist_methods: Option<Vec<Method>>,
    /// CIFAR methods (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',')]
    cifar_methods: Option<Vec<Method>>,
    /// Proportions of the majority class (9) in MNIST training, in [0.5, 1) (comma-separated).
    #[arg(long, value_delimiter = ',')]
    proportions: Option<Vec<f64>>,
    /// MNIST training steps (the learning-rate milestones are scaled with them).
    #[arg(long)]
    mnist_steps: Option<usize>,
    /// MNIST learning rate (also L2RW's virtual step size).
    #[arg(long)]
    mnist_lr: Option<f64>,
    /// CIFAR training steps (the learning-rate milestones are scaled with them).
    #[arg(long)]
    cifar_steps: Option<usize>,
    /// What L2RW does when every weight of a batch is zero.
    #[arg(long, value_enum)]
    all_zero: Option<AllZero>,
    /// Directory holding CIFAR parquet files in the hub's layout (e.g. ../shared/data/cifar10-jpeg);
    /// default: --data-dir, else the hub cache.
    #[arg(long, value_name = "DIR")]
    cifar_dir: Option<PathBuf>,
}

fn apply(cfg: &mut L2rwConfig, a: &Args) -> Result<()> {
    zoo::apply_overrides!(cfg, a; parts, all_zero);
    if let Some(v) = &a.mnist_methods {
        cfg.mnist.methods = v.clone();
    }
    if let Some(v) = &a.cifar_methods {
        cfg.cifar.methods = v.clone();
    }
    if let Some(v) = &a.proportions {
        cfg.mnist.proportions = v.clone();
    }
    if let Some(v) = a.mnist_steps {
        cfg.mnist.opt.rescale_steps(v);
    }
    if let Some(v) = a.mnist_lr {
        cfg.mnist.opt.lr = v;
    }
    if let Some(v) = a.cifar_steps {
        cfg.cifar.opt.rescale_steps(v);
    }
    if let Some(d) = &a.cifar_dir {
        if !d.is_dir() {
            bail!("--cifar-dir {}: not a directory", d.display());
        }
    }
    cfg.normalise();
    Ok(())
}

fn main() -> Result<()> {
    // SAFETY: the first statement of main, before any thread starts.
    unsafe { zoo::init_process() };
    let args = Args::parse();
    let mut cfg = L2rwConfig::preset(args.common.preset);
    apply(&mut cfg, &args)?;
    let cifar_src = match &args.cifar_dir {
        Some(d) => DataSource::Dir(d.clone()),
        None => args.common.data_source(),
    };
    // --cifar-dir serves whichever CIFAR the config names (after --set), for the data check.
    let cifar_dirs = args
        .cifar_dir
        .iter()
        .flat_map(|d| ["cifar10", "cifar100"].map(|name| (name.to_string(), d.clone())));
    let opts = SetupOptions {
        data_dirs: cifar_dirs.collect(),
        ..SetupOptions::default()
    };
    let exp = zoo::Experiment::setup_with("l2rw", &args.common, cfg, &opts)?;
    let summary = zoo::l2rw::run(&exp, &cifar_src)?;
    println!("{}", summary.table_markdown());
    Ok(())
}
