//! `sweep local`: the same tasks as `sweep slurm`, on this machine: one level after another,
//! `--jobs` tasks side by side, one log per task, a progress bar over the runs, then the summary.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};

use super::Sweep;

/// How to run the sweep here.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    /// Tasks side by side.
    pub jobs: usize,
    /// Folder of the per-task logs.
    pub logs: PathBuf,
    /// At most this many tasks per level (`None`: one per run).
    pub max_tasks: Option<usize>,
}

/// Runs every task, then `--summarise` (whose output is passed through). Fails if a task failed,
/// after the summarise step has named the missing runs.
pub fn run(sweep: &Sweep, o: &LocalOptions) -> Result<()> {
    std::fs::create_dir_all(&o.logs).with_context(|| format!("creating {}", o.logs.display()))?;
    let tasks = sweep.tasks(o.max_tasks);
    let bar = ProgressBar::new(sweep.plan.runs().len() as u64).with_style(
        ProgressStyle::with_template(
            "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} runs {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_prefix(sweep.name.clone());
    let failed = Mutex::new(Vec::new());
    for (l, level) in tasks.iter().enumerate() {
        let queue = Mutex::new(level.iter().enumerate().collect::<VecDeque<_>>());
        let (bar, failed) = (&bar, &failed);
        std::thread::scope(|scope| {
            for _ in 0..o.jobs.max(1) {
                // The queue's lock is released before the task runs.
                let next = || queue.lock().ok().and_then(|mut q| q.pop_front());
                scope.spawn(move || {
                    while let Some((k, ids)) = next() {
                        let log = o.logs.join(format!("{}-L{l}-{k}.log", sweep.name));
                        let ok = run_task(sweep, ids, &log);
                        let line = match &ok {
                            Ok(()) => format!("done {}", ids.join(",")),
                            Err(e) => {
                                format!("FAILED {} ({e:#}; log {})", ids.join(","), log.display())
                            }
                        };
                        say(bar, line);
                        bar.inc(ids.len() as u64);
                        if ok.is_err() {
                            if let Ok(mut f) = failed.lock() {
                                f.push(ids.join(","));
                            }
                        }
                    }
                });
            }
        });
        if failed.lock().map(|f| !f.is_empty()).unwrap_or(true) {
            say(bar, format!("level {l} had failures: later levels skipped"));
            break;
        }
    }
    bar.finish_and_clear();
    let status = Command::new(&sweep.exe)
        .args(&sweep.flags)
        .arg("--summarise")
        .status()
        .with_context(|| format!("running {} --summarise", sweep.exe.display()))?;
    let failed = failed.into_inner().unwrap_or_default();
    if !failed.is_empty() {
        bail!("{} task(s) failed: {}", failed.len(), failed.join(" "));
    }
    if !status.success() {
        bail!("{} --summarise failed ({status})", sweep.name);
    }
    Ok(())
}

/// A line above the bar, or on stderr when there is no bar (not a terminal).
fn say(bar: &ProgressBar, line: String) {
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
}

fn run_task(sweep: &Sweep, ids: &[String], log: &std::path::Path) -> Result<()> {
    let f = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let status = Command::new(&sweep.exe)
        .args(&sweep.flags)
        .arg("--only")
        .arg(ids.join(","))
        .stdout(Stdio::from(f.try_clone()?))
        .stderr(Stdio::from(f))
        .status()
        .with_context(|| format!("running {}", sweep.exe.display()))?;
    if !status.success() {
        bail!("{status}");
    }
    Ok(())
}
