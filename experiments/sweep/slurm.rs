//! `sweep slurm`: a bash file that submits a binary's plan to Slurm when run (`bash FILE`), and
//! is itself the sbatch script of every job it submits: one job array per dependency level (one
//! task per run, or per group of runs with `--tasks`), each level `afterok` on the one before,
//! and a summarise job `afterany` on all of them, so that it also runs after a failure and names
//! the missing runs in its log.

use std::fmt::Write as _;
use std::path::Path;

use super::{shell_quote, Sweep};

/// Slurm resources of the sweep's tasks.
#[derive(Debug, Clone)]
pub struct SlurmOptions {
    /// CPUs per task (the binary's `--threads` follows it).
    pub cpus_per_task: usize,
    /// Ask for one GPU per task (`--gres=gpu:1`).
    pub gpu: bool,
    /// `--partition`.
    pub partition: Option<String>,
    /// `--time` per task.
    pub time: Option<String>,
    /// `--mem` per task.
    pub mem: Option<String>,
    /// Folder of the per-task logs (absolute).
    pub logs: String,
    /// Working folder of every job (absolute; relative flags such as `--out` resolve there).
    pub workdir: String,
    /// At most this many tasks per level (`None`: one per run).
    pub max_tasks: Option<usize>,
}

/// Whether the tasks need a GPU: asked for with `--gpu`, or the binaries were built with a GPU
/// feature and the flags do not force the CPU.
pub fn wants_gpu(sweep: &Sweep, forced: bool) -> bool {
    forced || (cfg!(any(feature = "cuda", feature = "metal")) && !sweep.has_flag("--cpu"))
}

/// The script's text.
pub fn script(sweep: &Sweep, o: &SlurmOptions) -> String {
    let tasks = sweep.tasks(o.max_tasks);
    let name = &sweep.name;
    let mut s = String::new();
    let flags: Vec<String> = sweep.flags.iter().map(|f| shell_quote(f)).collect();
    let runs = sweep.plan.runs().len();
    let _ = writeln!(
        s,
        "#!/usr/bin/env bash\n\
         # Slurm sweep of `{name} {}`: {runs} runs in {} dependency level(s), written by\n\
         # `sweep slurm` (candle-zoo). Submit it with `bash {{this file}}` (not sbatch): it submits one\n\
         # job array per level, each after the previous level succeeded, and a summarise job after\n\
         # all of them (its log names any missing run). Logs: {}/{name}-L<level>-<task>.log.\n\
         set -euo pipefail",
        sweep.flags.join(" "),
        tasks.len(),
        o.logs
    );
    let _ = writeln!(s, "BIN={}", shell_quote(&sweep.exe.to_string_lossy()));
    let _ = writeln!(s, "ARGS=({})", flags.join(" "));
    let _ = writeln!(s, "WORKDIR={}", shell_quote(&o.workdir));
    let _ = writeln!(s, "LOGS={}", shell_quote(&o.logs));
    // Run ids are [A-Za-z0-9._-]: no quoting needed.
    s.push_str("\n# The runs of task <level>:<array index>.\nruns() {\n  case \"$1\" in\n");
    for (l, level) in tasks.iter().enumerate() {
        for (k, ids) in level.iter().enumerate() {
            let _ = writeln!(s, "    {l}:{k}) echo {} ;;", ids.join(","));
        }
    }
    s.push_str("    *) echo \"no task $1\" >&2; exit 2 ;;\n  esac\n}\n\n");
    let mut res = format!("--cpus-per-task={}", o.cpus_per_task);
    if o.gpu {
        res.push_str(" --gres=gpu:1");
    }
    for (flag, v) in [
        ("--partition", &o.partition),
        ("--time", &o.time),
        ("--mem", &o.mem),
    ] {
        if let Some(v) = v {
            let _ = write!(res, " {flag}={}", shell_quote(v));
        }
    }
    let threads = if sweep.has_flag("--threads") {
        ""
    } else {
        " --threads \"${SLURM_CPUS_PER_TASK:-1}\""
    };
    s.push_str("case \"${1:-submit}\" in\nsubmit)\n  mkdir -p \"$LOGS\"\n  self=\"$(readlink -f \"$0\")\"\n");
    s.push_str("  common=(--parsable --chdir=\"$WORKDIR\")\n");
    let mut prev: Option<String> = None;
    let mut all = Vec::new();
    for (l, level) in tasks.iter().enumerate() {
        let dep = prev.as_ref().map_or(String::new(), |p| {
            format!(" --dependency=afterok:${p} --kill-on-invalid-dep=yes")
        });
        let _ = writeln!(
            s,
            "  j{l}=$(sbatch \"${{common[@]}}\" --job-name=zoo-{name}-L{l} --array=0-{} {res}{dep} \
             --output=\"$LOGS/{name}-L{l}-%a.log\" \"$self\" task {l})\n  j{l}=${{j{l}%%;*}}",
            level.len() - 1
        );
        prev = Some(format!("j{l}"));
        all.push(format!("$j{l}"));
    }
    let _ = writeln!(
        s,
        "  js=$(sbatch \"${{common[@]}}\" --job-name=zoo-{name}-summarise --cpus-per-task=1 \
         --dependency=afterany:{} --output=\"$LOGS/{name}-summarise.log\" \"$self\" summarise)\n  \
         js=${{js%%;*}}\n  echo {} \"$js\" > \"$LOGS/{name}.jobs\"\n  \
         echo \"{name}: submitted level job(s) {} and summarise job $js (ids also in $LOGS/{name}.jobs)\"\n  ;;",
        all.join(":"),
        all.join(" "),
        all.join(" ")
    );
    let _ = writeln!(
        s,
        "task)\n  cd \"$WORKDIR\"\n  exec \"$BIN\" \"${{ARGS[@]}}\"{threads} --only \"$(runs \"$2:${{SLURM_ARRAY_TASK_ID:?not in a job array}}\")\"\n  ;;\n\
         summarise)\n  cd \"$WORKDIR\"\n  exec \"$BIN\" \"${{ARGS[@]}}\" --summarise\n  ;;\n\
         *)\n  echo \"usage: bash $0 [submit]\" >&2; exit 2 ;;\nesac"
    );
    s
}

/// Writes the script to `path` (executable).
pub fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    crate::results::atomic_write(path, text.as_bytes())?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Plan, RunSpec};
    use std::path::PathBuf;

    #[test]
    fn levels_become_dependent_arrays_and_a_summarise_job() {
        let sweep = Sweep {
            name: "distill".into(),
            exe: PathBuf::from("/x/distill"),
            flags: vec!["--preset".into(), "smoke".into()],
            plan: Plan::new(vec![
                RunSpec::new("teacher", ""),
                RunSpec::new("s0.a", "").after(["teacher"]),
                RunSpec::new("s0.b", "").after(["teacher"]),
            ])
            .unwrap(),
        };
        let o = SlurmOptions {
            cpus_per_task: 3,
            gpu: true,
            partition: None,
            time: Some("1:00:00".into()),
            mem: None,
            logs: "/l".into(),
            workdir: "/w".into(),
            max_tasks: None,
        };
        let s = script(&sweep, &o);
        assert!(
            s.contains("--array=0-0 --cpus-per-task=3 --gres=gpu:1 --time=1:00:00 --output"),
            "{s}"
        );
        assert!(s.contains("--array=0-1 --cpus-per-task=3 --gres=gpu:1 --time=1:00:00 --dependency=afterok:$j0"), "{s}");
        assert!(s.contains("--dependency=afterany:$j0:$j1"), "{s}");
        assert!(s.contains("    1:1) echo s0.b ;;"), "{s}");
        assert!(s.contains("--threads \"${SLURM_CPUS_PER_TASK:-1}\""), "{s}");
        assert!(s.contains("ARGS=(--preset smoke)"), "{s}");
        assert!(!script(&sweep, &SlurmOptions { gpu: false, ..o }).contains("gres"));
    }
}
