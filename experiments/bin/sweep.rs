//! Runs a binary's plan as many tasks: on Slurm (an sbatch script of job arrays, one per
//! dependency level, plus a summarise job) or on this machine with a progress bar.
//!
//! ```text
//! sweep slurm distill --preset paper --seeds 0,1,2      # writes sweep-distill.sh; bash it to submit
//! sweep slurm --gpu --time 4:00:00 mwn --preset paper   # one GPU per task
//! sweep local --jobs 2 decouple --preset smoke --out /tmp/d
//! sweep compare a/summary.json b/summary.json           # same numbers?
//! ```
//!
//! Everything after BINARY is passed to each task; the sweep adds `--only` (and `--threads`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use zoo::sweep::local::{self, LocalOptions};
use zoo::sweep::slurm::{self, SlurmOptions};
use zoo::sweep::{compare, Sweep};

#[derive(Parser)]
#[command(
    about = "Run a zoo binary's runs as Slurm array tasks or local tasks, then merge the summary"
)]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write a submit script: `bash FILE` submits one job array per dependency level and a
    /// summarise job.
    Slurm {
        /// Where to write the script [default: sweep-BINARY.sh].
        #[arg(long, value_name = "FILE")]
        script: Option<PathBuf>,
        /// Folder of the per-task logs [default: slurm-logs].
        #[arg(long, value_name = "DIR", default_value = "slurm-logs")]
        logs: PathBuf,
        /// CPUs per task [default: the binary's --threads, else 4].
        #[arg(long)]
        cpus_per_task: Option<usize>,
        /// One GPU per task (also the default when sweep was built with a GPU feature and the
        /// binary's flags have no --cpu).
        #[arg(long)]
        gpu: bool,
        /// At most this many tasks per level (runs grouped round-robin) [default: one per run].
        #[arg(long)]
        tasks: Option<usize>,
        /// Slurm partition.
        #[arg(long)]
        partition: Option<String>,
        /// Time limit per task (Slurm format, e.g. 4:00:00).
        #[arg(long)]
        time: Option<String>,
        /// Memory per task (Slurm format, e.g. 16G).
        #[arg(long)]
        mem: Option<String>,
        /// The binary and its flags.
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            required = true,
            value_name = "BINARY [FLAGS]"
        )]
        command: Vec<String>,
    },
    /// Run the plan here, level by level, with a progress bar; then summarise.
    Local {
        /// Tasks side by side.
        #[arg(long, default_value_t = 1)]
        jobs: usize,
        /// Folder of the per-task logs [default: sweep-logs].
        #[arg(long, value_name = "DIR", default_value = "sweep-logs")]
        logs: PathBuf,
        /// At most this many tasks per level [default: one per run].
        #[arg(long)]
        tasks: Option<usize>,
        /// The binary and its flags.
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            required = true,
            value_name = "BINARY [FLAGS]"
        )]
        command: Vec<String>,
    },
    /// Compare two summary.json files' numbers (rows and metrics, per seed); fails if they differ.
    Compare {
        /// One summary.json.
        a: PathBuf,
        /// The other.
        b: PathBuf,
    },
}

fn absolute(p: &Path) -> Result<String> {
    let p = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()?.join(p)
    };
    Ok(p.to_string_lossy().into_owned())
}

fn sweep_of(command: &[String]) -> Result<Sweep> {
    let (bin, flags) = command
        .split_first()
        .context("give the binary to sweep, e.g. `sweep slurm distill --preset smoke`")?;
    Sweep::new(bin, flags)
}

fn threads_flag(sweep: &Sweep) -> Option<usize> {
    let f = &sweep.flags;
    f.iter().enumerate().find_map(|(i, a)| {
        a.strip_prefix("--threads=")
            .map(str::to_owned)
            .or_else(|| (a == "--threads").then(|| f.get(i + 1).cloned()).flatten())
            .and_then(|v| v.parse().ok())
    })
}

fn main() -> Result<()> {
    let args = Args::parse();
    match args.command {
        Cmd::Slurm {
            script,
            logs,
            cpus_per_task,
            gpu,
            tasks,
            partition,
            time,
            mem,
            command,
        } => {
            let sweep = sweep_of(&command)?;
            if cpus_per_task == Some(0) || tasks == Some(0) {
                bail!("--cpus-per-task and --tasks must be at least 1");
            }
            let o = SlurmOptions {
                cpus_per_task: cpus_per_task.or(threads_flag(&sweep)).unwrap_or(4),
                gpu: slurm::wants_gpu(&sweep, gpu),
                partition,
                time,
                mem,
                logs: absolute(&logs)?,
                workdir: std::env::current_dir()?.to_string_lossy().into_owned(),
                max_tasks: tasks,
            };
            let path = script.unwrap_or_else(|| PathBuf::from(format!("sweep-{}.sh", sweep.name)));
            slurm::write(&path, &slurm::script(&sweep, &o))?;
            let levels = sweep.tasks(tasks);
            println!(
                "wrote {}: {} runs of {} in {} level(s) ({} task(s)), {} CPU(s){} per task; submit with: bash {}",
                path.display(),
                sweep.plan.runs().len(),
                sweep.name,
                levels.len(),
                levels.iter().map(Vec::len).sum::<usize>(),
                o.cpus_per_task,
                if o.gpu { " and 1 GPU" } else { "" },
                path.display()
            );
        }
        Cmd::Local {
            jobs,
            logs,
            tasks,
            command,
        } => {
            let sweep = sweep_of(&command)?;
            local::run(
                &sweep,
                &LocalOptions {
                    jobs,
                    logs,
                    max_tasks: tasks,
                },
            )?;
        }
        Cmd::Compare { a, b } => {
            let d = compare::compare_files(&a, &b)?;
            if !d.is_empty() {
                bail!(
                    "{} and {} differ:\n{}",
                    a.display(),
                    b.display(),
                    d.join("\n")
                );
            }
            println!("{} and {}: same numbers", a.display(), b.display());
        }
    }
    Ok(())
}
