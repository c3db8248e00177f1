//! Shared runner, results writer, plots and CLI helpers for the candle-zoo experiment binaries.
//!
//! A paper binary is a thin `main`:
//!
//! ```ignore
//! use clap::Parser;
//! use zoo::cli::{CommonArgs, ExperimentConfig, Preset};
//!
//! #[derive(Parser)]
//! struct Args {
//!     #[command(flatten)]
//!     common: CommonArgs,
//!     /// Override the preset's number of epochs.
//!     #[arg(long)]
//!     epochs: Option<usize>,
//! }
//!
//! fn main() -> anyhow::Result<()> {
//!     // SAFETY: the first statement of main: it sets environment variables (second-order
//!     // gradients, thread pools) before any thread starts.
//!     unsafe { zoo::init_process() };
//!     let args = Args::parse();
//!     let mut cfg = Config::preset(args.common.preset);
//!     zoo::apply_overrides!(cfg, args; epochs);
//!     let exp = zoo::Experiment::setup("mybinary", &args.common, cfg)?; // validates, then writes config.json
//!     let outcome = zoo::runner::Runner::new(&exp).run(|seed| MyTask::new(&exp, seed))?;
//!     // build a results::Summary from `outcome` and `exp.results.write_summary(..)`
//!     Ok(())
//! }
//! ```
//!
//! Modules: [`cli`] (flags, presets, overrides), [`runner`] (the one training loop harness,
//! checkpoints, `--resume`, NaN guard), [`trainer`] (a ready-made classifier task for the runner),
//! [`results`] (`results/<binary>/<preset>/`, atomic files, summary tables), [`plot`] (SVG charts),
//! [`stats`] (mean ± std, Welch's t-test) and [`report`] (the `report` binary's logic).

pub mod backend;
pub mod bagging;
pub mod cli;
pub mod confidence_penalty;
pub mod decouple;
pub mod distill;
pub mod dry_run;
pub mod experiment;
pub mod identity;
pub mod l2rw;
pub mod mlnt;
pub mod mwn;
pub mod out_lock;
pub mod parallel;
pub mod plan;
pub mod plot;
pub mod preflight;
pub mod report;
pub mod results;
pub mod reweight;
pub mod runner;
pub mod stats;
pub mod sweep;
pub mod trainer;

mod process;

pub use cli::{CommonArgs, ExperimentConfig, Preset};
pub use experiment::Experiment;
pub use process::{device, init_process, second_order_self_test};
