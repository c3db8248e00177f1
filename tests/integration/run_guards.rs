//! What a reliability test of the runner found (issue 24), each case reproduced: a stale
//! checkpoint resumed under another configuration, two runs into one `--out`, a run failing late
//! on missing data, unclear messages, checkpoints with another file mode than the rest, colour
//! codes in redirected logs, and the shared flags (`--seeds`, `--jobs`, `--steps`, `--set`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Result;
use candle_core::{Device, Tensor};
use clap::Parser;
use serde::{Deserialize, Serialize};
use zoo::out_lock::LOCK_FILE;
use zoo::results::ResultsDir;
use zoo::runner::{EpochTask, Metrics, NonFinite, Runner, StepMonitor, TaskState};
use zoo::{CommonArgs, Experiment, ExperimentConfig, Preset};

use crate::common::assert_rejected_before_work;

fn temp_dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("run_guards_{name}_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A config shaped like the paper binaries': seeds and jobs kept in it, one learning rate.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Toy {
    seeds: Vec<u64>,
    epochs: usize,
    lr: f64,
    jobs: usize,
}

impl ExperimentConfig for Toy {
    fn preset(_: Preset) -> Self {
        Toy {
            seeds: vec![4, 5],
            epochs: 2,
            lr: 0.1,
            jobs: 1,
        }
    }
    fn validate(&self) -> Result<()> {
        anyhow::ensure!(self.lr > 0.0, "lr must be positive");
        Ok(())
    }
    zoo::seeds_in_config!(jobs);
}

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    #[arg(long)]
    lr: Option<f64>,
}

fn setup(argv: &[&str]) -> Result<Experiment<Toy>> {
    // Tests run from work trees with uncommitted changes.
    let args = Args::try_parse_from([&["toy"], argv, &["--allow-dirty"]].concat())?;
    let mut cfg = Toy::preset(args.common.preset);
    zoo::apply_overrides!(cfg, args; lr);
    Experiment::setup("toy", &args.common, cfg)
}

/// One weight that walks down by `lr` per step; its value after training says which learning
/// rates trained it.
struct Walk {
    w: f64,
    lr: f64,
    /// Evaluation finds non-finite logits after this epoch (0-based).
    diverge_in_eval: Option<usize>,
}

impl Walk {
    fn new(lr: f64) -> Self {
        Self {
            w: 1.0,
            lr,
            diverge_in_eval: None,
        }
    }
}

impl EpochTask for Walk {
    fn train_epoch(
        &mut self,
        _epoch: usize,
        _rng: &mut rand::rngs::StdRng,
        m: &mut StepMonitor,
    ) -> Result<Metrics> {
        for _ in 0..4 {
            m.step(self.w)?;
            self.w -= self.lr;
        }
        Ok(Metrics::new().with("w", self.w))
    }
    fn evaluate(&mut self, epoch: usize) -> Result<Metrics> {
        if self.diverge_in_eval == Some(epoch) {
            // What zoo_models::metrics::Predictions reports on NaN logits.
            anyhow::bail!("non-finite logits in evaluation");
        }
        Ok(Metrics::new().with("w", self.w))
    }
    fn state(&self) -> Result<TaskState> {
        let w = Tensor::new(&[self.w as f32], &Device::Cpu)?;
        Ok(TaskState {
            tensors: [("w".to_string(), w)].into(),
            json: serde_json::json!({}),
        })
    }
    fn restore(&mut self, s: TaskState) -> Result<()> {
        self.w = f64::from(s.tensors["w"].to_vec1::<f32>()?[0]);
        Ok(())
    }
}

fn train(exp: &Experiment<Toy>) -> Result<Vec<f64>> {
    let out = Runner::new(exp, exp.config.epochs).run(|_| Ok(Walk::new(exp.config.lr)))?;
    out.final_values("w")
}

/// The three steps: seeds 0,1 at one lr; seed 0 alone at another lr into the same
/// folder; resume of seeds 0,1. Seed 1's checkpoint is from the first lr while config.json says
/// the second: the resume must refuse it, naming the field (before the fix it trained on).
#[test]
fn a_checkpoint_from_another_configuration_is_not_resumed() {
    let out = temp_dir("stale");
    let o = out.to_str().unwrap();
    let first = setup(&["--out", o, "--seeds", "0,1", "--lr", "0.1"]).unwrap();
    train(&first).unwrap();
    drop(first);
    let second = setup(&["--out", o, "--seeds", "0", "--lr", "0.2"]).unwrap();
    train(&second).unwrap();
    drop(second);
    let third = setup(&["--out", o, "--seeds", "0,1", "--lr", "0.2", "--resume"]).unwrap();
    let msg = format!("{:#}", train(&third).unwrap_err());
    assert!(
        msg.contains("seed 1")
            && msg.contains("trained under another configuration")
            && msg.contains("lr: 0.1 → 0.2"),
        "{msg}"
    );
    drop(third);
    // The saved config now names lr 0.2: a resume at 0.1 is refused by config.json, which
    // names the field too.
    let msg = format!(
        "{:#}",
        setup(&["--out", o, "--seeds", "0,1", "--lr", "0.1", "--resume"]).unwrap_err()
    );
    assert!(
        msg.contains("differs") && msg.contains("lr: 0.2 → 0.1"),
        "{msg}"
    );
}

/// Adding seeds and changing `--jobs` are legitimate on resume: neither is part of a
/// checkpoint's stamp.
#[test]
fn more_seeds_and_other_jobs_still_resume() {
    let out = temp_dir("more_seeds");
    let o = out.to_str().unwrap();
    let a = setup(&["--out", o, "--seeds", "0"]).unwrap();
    let w0 = train(&a).unwrap();
    drop(a);
    let b = setup(&["--out", o, "--seeds", "0,1", "--jobs", "2", "--resume"]).unwrap();
    assert_eq!(b.config.jobs, 2);
    let w = train(&b).unwrap();
    assert_eq!(w, vec![w0[0], w0[0]]);
}

#[test]
fn preset_seeds_unless_seeds_and_flag_fields_are_not_settable() {
    let out = temp_dir("seeds");
    let o = out.to_str().unwrap();
    let e = setup(&["--out", o]).unwrap();
    assert_eq!(
        (e.common.seeds(), e.config.seeds.as_slice()),
        (&[4, 5][..], &[4, 5][..])
    );
    drop(e);
    let e = setup(&["--out", o, "--seeds", "1"]).unwrap();
    assert_eq!(
        (e.common.seeds(), e.config.seeds.as_slice()),
        (&[1][..], &[1][..])
    );
    drop(e);
    let fresh = out.join("fresh");
    let f = fresh.to_str().unwrap();
    for (set, flag) in [
        ("preset=cpu", "--preset"),
        ("seeds=[7]", "--seeds"),
        ("jobs=3", "--jobs"),
    ] {
        let msg = format!("{:#}", setup(&["--out", f, "--set", set]).unwrap_err());
        assert!(msg.contains(flag), "--set {set}: {msg}");
    }
    let msg = format!(
        "{:#}",
        setup(&["--out", f, "--set", "lr=fast"]).unwrap_err()
    );
    assert!(msg.contains("--set lr="), "{msg}");
    let msg = format!("{:#}", setup(&["--out", f, "--steps", "10"]).unwrap_err());
    assert!(msg.contains("--steps 10: not an option of toy"), "{msg}");
    assert!(
        !fresh.exists(),
        "a rejected set-up created its output folder"
    );
}

#[test]
fn a_second_run_into_a_locked_folder_is_refused() {
    let out = temp_dir("lock");
    let o = out.to_str().unwrap();
    let held = setup(&["--out", o]).unwrap();
    assert!(held.lock_file().is_file());
    let msg = format!("{:#}", setup(&["--out", o]).unwrap_err());
    let pid = std::process::id().to_string();
    assert!(
        msg.contains("in use by another run") && msg.contains(&pid),
        "{msg}"
    );
    // Another process: a real binary, refused before it writes anything.
    let o2 = Command::new(env!("CARGO_BIN_EXE_bagging"))
        .args([
            "--preset",
            "smoke",
            "--no-neural",
            "--allow-dirty",
            "--out",
            o,
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o2.stderr);
    assert!(!o2.status.success(), "the second run was accepted: {err}");
    assert!(
        err.contains("in use by another run") && err.contains(&pid),
        "{err}"
    );
    drop(held);
    assert!(
        !out.join(LOCK_FILE).exists(),
        "the lock file outlived its run"
    );
    drop(setup(&["--out", o]).unwrap());
}

#[test]
fn a_lock_left_by_a_dead_process_is_taken_over() {
    let out = temp_dir("stale_lock");
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    std::fs::write(out.join(LOCK_FILE), format!("{dead}\n")).unwrap();
    let e = setup(&["--out", out.to_str().unwrap()]).unwrap();
    let owner = std::fs::read_to_string(e.lock_file()).unwrap();
    assert_eq!(owner.trim(), std::process::id().to_string());
}

#[cfg(unix)]
#[test]
fn checkpoints_get_the_mode_of_every_other_file() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let out = temp_dir("modes");
    let e = setup(&["--out", out.to_str().unwrap(), "--seeds", "0"]).unwrap();
    train(&e).unwrap();
    let probe = out.join("probe");
    std::fs::write(&probe, b"x").unwrap();
    let want = mode(&probe);
    let ckpt = out.join("seed_0/checkpoint");
    for f in ["epoch_0002.safetensors", "epoch_0002.json", "latest.json"] {
        assert_eq!(mode(&ckpt.join(f)), want, "{f}: {:o}", mode(&ckpt.join(f)));
    }
    assert_eq!(mode(&out.join("config.json")), want);
    let weights = out.join("weights.safetensors");
    let t = Tensor::new(&[1f32, 2.0], &Device::Cpu).unwrap();
    zoo_models::checkpoint::save_tensors(&weights, &[("w".to_string(), t)].into()).unwrap();
    assert_eq!(mode(&weights), want, "{:o}", mode(&weights));
}

#[test]
fn divergence_found_in_evaluation_names_the_step_seed_run_and_kept_checkpoint() {
    let dir = temp_dir("eval_nan");
    let results = ResultsDir::create(&dir).unwrap();
    let mut task = Walk::new(0.1);
    task.diverge_in_eval = Some(2);
    let e = Runner::with_dir(&results, &[3], 4)
        .label("cifar_uniform_0.4/l2rw")
        .run_seed(3, &mut task)
        .unwrap_err();
    let nf = e.downcast_ref::<NonFinite>().expect("a NonFinite error");
    assert!(nf.in_evaluation);
    assert_eq!((nf.step, nf.epoch, nf.seed), (12, 2, 3));
    assert_eq!(
        nf.kept_checkpoint,
        Some((2, dir.join("seed_3/cifar_uniform_0.4/l2rw/checkpoint")))
    );
    let msg = e.to_string();
    for part in [
        "non-finite logits in evaluation after global step 12",
        "seed 3, run cifar_uniform_0.4/l2rw, epoch 3",
        "last good checkpoint kept",
        "(after epoch 2)",
    ] {
        assert!(msg.contains(part), "{part:?} not in {msg}");
    }
}

/// Logs redirected to a file carry no colour codes.
#[test]
fn logs_to_a_pipe_have_no_colour_codes() {
    let dir = temp_dir("ansi");
    let o = Command::new(env!("CARGO_BIN_EXE_report"))
        .args(["--results", dir.to_str().unwrap()])
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("INFO") && err.contains("wrote"), "{err}");
    assert!(
        !err.contains('\u{1b}'),
        "colour codes in a redirected log: {err:?}"
    );
}

/// Missing data fails before any training, naming the repo and file: `l2rw`'s smoke preset
/// without CIFAR-10 (offline, only MNIST in the cache) and `decouple`'s, whose presets read the
/// hub unless `--data-dir` is given.
#[test]
fn missing_data_fails_before_any_work() {
    for (exe, binary) in [
        (env!("CARGO_BIN_EXE_l2rw"), "l2rw"),
        (env!("CARGO_BIN_EXE_decouple"), "decouple"),
    ] {
        let errs = assert_rejected_before_work(exe, binary, &[vec!["--preset", "smoke"]]);
        assert!(
            errs[0].contains("uoft-cs/cifar10")
                && errs[0].contains("plain_text/train-00000-of-00001.parquet")
                && errs[0].contains("before any training"),
            "{binary}: {}",
            errs[0]
        );
    }
    let errs = assert_rejected_before_work(
        env!("CARGO_BIN_EXE_bagging"),
        "bagging",
        &[
            vec!["--preset", "smoke", "--set", "preset=cpu"],
            vec!["--preset", "smoke", "--set", "reps=many"],
            vec!["--preset", "smoke", "--jobs", "2"],
        ],
    );
    assert!(errs[0].contains("--preset only"), "{}", errs[0]);
    assert!(errs[1].contains("--set reps="), "{}", errs[1]);
    assert!(errs[2].contains("--jobs 2"), "{}", errs[2]);
}
