//! Gather every `results/<binary>/<preset>/summary.json` into `results/README.md`, or check
//! every results folder against its per-seed files (`--verify`).
//!
//! `cargo run --release --bin report [-- --results DIR] [--verify | --readme README.md]`

use std::path::PathBuf;

use clap::Parser;

/// Write results/README.md: one table per paper, our numbers beside the paper's.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// The results directory to gather.
    #[arg(long, default_value = "results")]
    results: PathBuf,
    /// Instead of writing the README, check every folder written under results/PROTOCOL.md:
    /// clean revision, files present, table and statistics recomputed from the per-seed values,
    /// those values found in the per-seed files. Folders from before the protocol are listed
    /// as legacy, unverified. Exits with status 1 if a check fails.
    #[arg(long)]
    verify: bool,
    /// Instead of writing results/README.md, rewrite the status block of this file (the
    /// repository's README.md): the lines between `<!-- report:status:begin -->` and
    /// `<!-- report:status:end -->` become a table of every results folder.
    #[arg(long, value_name = "FILE", conflicts_with = "verify")]
    readme: Option<PathBuf>,
    /// With `--readme`: write nothing, exit with status 1 if the block is not what the
    /// summaries give (CI).
    #[arg(long, requires = "readme")]
    check: bool,
}

fn main() -> anyhow::Result<()> {
    // SAFETY: the first statement of main, before any thread starts.
    unsafe { zoo::init_process() };
    let args = Args::parse();
    if args.verify {
        let checks = zoo::report::verify(&args.results)?;
        let (text, ok) = zoo::report::render_verification(&checks);
        print!("{text}");
        if !ok {
            std::process::exit(1);
        }
        return Ok(());
    }
    if let Some(readme) = &args.readme {
        if args.check {
            if !zoo::report::status_block_is_current(readme, &args.results)? {
                eprintln!(
                    "error: the status block of {} is not what the summaries give: run `cargo \
                     run --bin report -- --readme {}` and commit it",
                    readme.display(),
                    readme.display()
                );
                std::process::exit(1);
            }
            return Ok(());
        }
        zoo::report::write_status_block(readme, &args.results)?;
        tracing::info!("rewrote the status block of {}", readme.display());
        return Ok(());
    }
    let (path, n) = zoo::report::write_readme(&args.results)?;
    tracing::info!("wrote {} ({n} summaries)", path.display());
    Ok(())
}
