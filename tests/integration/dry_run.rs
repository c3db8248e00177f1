//! `--dry-run` (issue 25, item 7): the smoke presets of the binaries that have one print the
//! resolved configuration, their runs and steps and a projected wall time, exit 0, and create
//! no output folder (nor read any dataset: no data flag is given).

use std::process::Command;

use super::common::scratch;

fn dry_run(binary: &str, exe: &str, extra: &[&str]) -> String {
    let out = scratch(binary, "dry-run");
    let o = Command::new(exe)
        .args(["--preset", "smoke", "--cpu", "--dry-run", "--out"])
        .arg(&out)
        .args(extra)
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_HOME", "/nonexistent/zoo-dry-run")
        .output()
        .unwrap_or_else(|e| panic!("running {exe}: {e}"));
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{binary} --dry-run failed: {stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        !out.exists(),
        "{binary} --dry-run created {}",
        out.display()
    );
    assert!(
        stdout.contains("\"preset\": \"smoke\"") && stdout.contains("\"backend\": \"fast\""),
        "{binary}: no resolved configuration:\n{stdout}"
    );
    assert!(
        stdout.contains("projected wall time") && stdout.contains("ms/step"),
        "{binary}: no projection:\n{stdout}"
    );
    stdout
}

#[test]
fn l2rw_dry_run_plans_both_parts() {
    let s = dry_run("l2rw", env!("CARGO_BIN_EXE_l2rw"), &[]);
    // MNIST: 1 proportion × 4 methods; CIFAR: 2 noise settings × 3 methods, 2 steps each.
    assert!(s.contains("mnist: 4 runs, 8 steps"), "{s}");
    assert!(s.contains("cifar: 6 runs, 12 steps"), "{s}");
    // The CIFAR warm-up step of L2RW is a plain step.
    assert!(s.contains("cifar10 ResNet-8, batch 10: plain"), "{s}");
    assert!(s.contains("10 runs, 20 steps: projected wall time"), "{s}");
}

#[test]
fn mwn_dry_run_plans_only_the_parts_asked_for() {
    let s = dry_run("mwn", env!("CARGO_BIN_EXE_mwn"), &["--parts", "noise"]);
    assert!(s.contains("noise: 5 runs, 10 steps"), "{s}");
    assert!(!s.contains("long_tail:"), "{s}");
}

#[test]
fn mlnt_dry_run_counts_the_second_iterations() {
    let s = dry_run("mlnt", env!("CARGO_BIN_EXE_mlnt"), &[]);
    // CE, MLNT and MLNT first order, each with its second round (CE's too in smoke).
    assert!(s.contains("cifar: 6 runs, 24 steps"), "{s}");
    assert!(s.contains("round 2"), "{s}");
}

#[test]
fn confidence_penalty_dry_run_counts_tuning_and_final_runs() {
    let s = dry_run(
        "confidence_penalty",
        env!("CARGO_BIN_EXE_confidence_penalty"),
        &[],
    );
    // Smoke: β is the only grid with two points (tune_single_points is off); 9 methods × 2 seeds
    // final runs on 1,500 images in batches of 100 for 3 epochs, tuning on the first 1,000.
    assert!(
        s.contains("2 tuning runs × 30 steps + 18 final runs × 45 steps = 870 steps"),
        "{s}"
    );
}
