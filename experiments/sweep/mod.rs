//! The `sweep` command's logic: a binary's plan (read through its `--list-runs`) cut into tasks,
//! one dependency level after another, then run on Slurm ([`slurm`]: an sbatch script of job
//! arrays) or on this machine ([`local`]), and summaries compared ([`compare`]).

pub mod compare;
pub mod local;
pub mod slurm;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};

use crate::plan::Plan;

/// One binary's sweep: the executable, its flags (without the plan flags) and its plan.
#[derive(Debug, Clone)]
pub struct Sweep {
    /// Binary name (`distill`).
    pub name: String,
    /// Absolute path of the executable.
    pub exe: PathBuf,
    /// The flags every task passes (preset, seeds, `--out`, …).
    pub flags: Vec<String>,
    /// The plan those flags give.
    pub plan: Plan,
}

/// Flags the sweep sets itself, per task.
const PLAN_FLAGS: [&str; 4] = ["--list-runs", "--only", "--shard", "--summarise"];

/// The executable of `binary`: a path if it has a `/`, else the file of that name beside the
/// running `sweep` (cargo builds every binary of the package into one folder).
pub fn resolve_exe(binary: &str) -> Result<PathBuf> {
    let p = if binary.contains('/') {
        PathBuf::from(binary)
    } else {
        let me = std::env::current_exe().context("locating the sweep executable")?;
        me.parent()
            .context("the sweep executable has no folder")?
            .join(binary)
    };
    ensure!(
        p.is_file(),
        "{}: no such executable (build it first: cargo build --release --bin {binary})",
        p.display()
    );
    Ok(std::fs::canonicalize(&p)?)
}

impl Sweep {
    /// Reads the plan of `binary` run with `flags`.
    pub fn new(binary: &str, flags: &[String]) -> Result<Self> {
        for f in flags {
            let name = f.split('=').next().unwrap_or(f);
            ensure!(
                !PLAN_FLAGS.contains(&name),
                "{f}: the sweep chooses the runs of each task itself; give the binary's other flags"
            );
        }
        let exe = resolve_exe(binary)?;
        let out = Command::new(&exe)
            .args(flags)
            .arg("--list-runs")
            .output()
            .with_context(|| format!("running {} --list-runs", exe.display()))?;
        if !out.status.success() {
            bail!(
                "{} {} --list-runs failed:\n{}",
                exe.display(),
                flags.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let plan = Plan::parse_listing(&String::from_utf8_lossy(&out.stdout))
            .with_context(|| format!("reading the plan of {binary}"))?;
        ensure!(!plan.runs().is_empty(), "{binary}: the plan has no runs");
        let name = Path::new(binary)
            .file_name()
            .map_or(binary.to_string(), |n| n.to_string_lossy().into_owned());
        Ok(Self {
            name,
            exe,
            flags: flags.to_vec(),
            plan,
        })
    }

    /// Tasks per dependency level: each task a list of run ids. One task per run, or with
    /// `max_tasks` at most that many per level (the level's runs dealt round-robin).
    pub fn tasks(&self, max_tasks: Option<usize>) -> Vec<Vec<Vec<String>>> {
        let levels = self.plan.levels();
        let depth = levels.iter().max().map_or(0, |m| m + 1);
        (0..depth)
            .map(|l| {
                let ids: Vec<String> = self
                    .plan
                    .runs()
                    .iter()
                    .zip(&levels)
                    .filter(|(_, lv)| **lv == l)
                    .map(|(r, _)| r.id.clone())
                    .collect();
                let n = max_tasks.unwrap_or(ids.len()).clamp(1, ids.len().max(1));
                let mut tasks = vec![Vec::new(); n];
                for (k, id) in ids.into_iter().enumerate() {
                    tasks[k % n].push(id);
                }
                tasks
            })
            .collect()
    }

    /// Whether a flag is among the binary's flags (`--cpu`, `--threads`).
    pub fn has_flag(&self, flag: &str) -> bool {
        let eq = format!("{flag}=");
        self.flags.iter().any(|f| f == flag || f.starts_with(&eq))
    }
}

/// `s` quoted for bash (single quotes; a quote inside becomes `'\''`).
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::RunSpec;

    fn sweep() -> Sweep {
        Sweep {
            name: "x".into(),
            exe: PathBuf::from("/bin/x"),
            flags: vec!["--cpu".into(), "--threads=2".into()],
            plan: Plan::new(vec![
                RunSpec::new("t", ""),
                RunSpec::new("a", "").after(["t"]),
                RunSpec::new("b", "").after(["t"]),
                RunSpec::new("c", "").after(["t"]),
                RunSpec::new("h", ""),
            ])
            .unwrap(),
        }
    }

    #[test]
    fn tasks_follow_levels_and_the_task_limit() {
        let s = sweep();
        assert_eq!(
            s.tasks(None),
            vec![
                vec![vec!["t".to_string()], vec!["h".to_string()]],
                vec![vec!["a".into()], vec!["b".into()], vec!["c".into()]],
            ]
        );
        let two = s.tasks(Some(2));
        assert_eq!(two[0].len(), 2);
        assert_eq!(two[1], vec![vec!["a", "c"], vec!["b"]]);
        assert!(s.has_flag("--cpu") && s.has_flag("--threads") && !s.has_flag("--gpu"));
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("--preset"), "--preset");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
