//! Gather every `results/<binary>/<preset>/summary.json` into `results/README.md`.
//!
//! `cargo run --release --bin report [-- --results DIR]`

use std::path::PathBuf;

use clap::Parser;

/// Write results/README.md: one table per paper, our numbers beside the paper's.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// The results directory to gather.
    #[arg(long, default_value = "results")]
    results: PathBuf,
}

fn main() -> anyhow::Result<()> {
    zoo::init_process();
    let args = Args::parse();
    let (path, n) = zoo::report::write_readme(&args.results)?;
    tracing::info!("wrote {} ({n} summaries)", path.display());
    Ok(())
}
