//! Breiman (1996), *Bagging predictors*: single pruned CART tree vs 50 bagged trees on the
//! waveform, Friedman #1–#3 and four small public tables, with AdaBoost.M1, the error-versus-bags
//! curve, and (beyond the paper) bagged candle MLPs on Fashion-MNIST distilled into one student.
//!
//! `cargo run --release --bin bagging -- --preset cpu` writes `results/bagging/cpu/`.

use anyhow::{bail, Result};
use clap::Parser;
use zoo::bagging::ensemble::BagPruning;
use zoo::bagging::{Config, ALL_DATASETS};
use zoo::cli::{CommonArgs, ExperimentConfig};
use zoo::plan::PlanArgs;

#[derive(Parser)]
#[command(about = "Breiman 1996 bagging predictors (CART), with AdaBoost.M1 and bagged MLPs")]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    plan: PlanArgs,
    /// Repetitions per data set (paper: 100).
    #[arg(long)]
    reps: Option<usize>,
    /// Trees in the bagged predictor (paper: 50).
    #[arg(long)]
    bags: Option<usize>,
    /// Trees grown for the error-versus-bags curve (>= --bags).
    #[arg(long)]
    curve_bags: Option<usize>,
    /// AdaBoost.M1 rounds (0 skips boosting).
    #[arg(long)]
    boost_rounds: Option<usize>,
    /// Comma-separated data sets (default: the preset's).
    #[arg(long, value_name = "LIST")]
    datasets: Option<String>,
    /// Pruning of the bagged trees: learning-set, cv or none.
    #[arg(long)]
    bag_pruning: Option<BagPruning>,
    /// Subtree selection: 0 = minimum risk, 1 = CART's 1-SE rule.
    #[arg(long)]
    se_rule: Option<f64>,
    /// Skip the Fashion-MNIST part (bagged MLPs and their distillation).
    #[arg(long)]
    no_neural: bool,
}

fn main() -> Result<()> {
    // SAFETY: the first statement of main, before any thread starts.
    unsafe { zoo::init_process() };
    let args = Args::parse();
    let mut cfg = Config::preset(args.common.preset);
    zoo::apply_overrides!(cfg, args; reps, bags, curve_bags, boost_rounds, bag_pruning, se_rule);
    if let Some(list) = &args.datasets {
        let names: Vec<String> = list
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        if names.is_empty() {
            bail!(
                "--datasets: give at least one of {}",
                ALL_DATASETS.join(", ")
            );
        }
        cfg.datasets = names;
    }
    if args.no_neural {
        cfg.neural = None;
    }
    if args.plan.list_runs {
        return zoo::plan::list_runs("bagging", &args.common, cfg, zoo::bagging::plan);
    }
    let exp = zoo::plan::setup("bagging", &args.common, cfg, &args.plan)?;
    if let Some(summary) = zoo::bagging::drive(&exp, &args.plan)? {
        println!("{}", summary.table_markdown());
    }
    Ok(())
}
