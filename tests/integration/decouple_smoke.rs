//! The `decouple` binary end to end: the smoke preset on CIFAR-10-LT (shared JPEG copy) writes a
//! complete summary with every sampler and classifier; invalid flags fail before any work; the
//! presets validate.

use std::path::{Path, PathBuf};
use std::process::Command;

use zoo::cli::{ExperimentConfig, Preset};
use zoo::decouple::DecoupleConfig;

use crate::common::{cifar_dir, read_json, run_with_out, scratch};

fn tmp(name: &str) -> PathBuf {
    scratch("decouple", name)
}

fn decouple(args: &[&str], out: &Path) -> std::process::Output {
    run_with_out(env!("CARGO_BIN_EXE_decouple"), args, out)
}

#[test]
fn smoke_preset_end_to_end() {
    let out = tmp("smoke");
    let data = cifar_dir();
    let o = decouple(
        &["--preset", "smoke", "--data-dir", data.to_str().unwrap()],
        &out,
    );
    assert!(
        o.status.success(),
        "smoke run failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let s = read_json(&out.join("summary.json"));
    assert_eq!(s["binary"], "decouple");
    assert_eq!(s["preset"], "smoke");
    let rows = s["rows"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    for sampler in [
        "instance-balanced",
        "class-balanced",
        "square-root",
        "progressively balanced",
    ] {
        assert!(
            names
                .iter()
                .any(|n| n.contains(&format!("joint, {sampler} sampling"))),
            "no joint row for {sampler}: {names:?}"
        );
    }
    for c in ["NCM (cosine)", "NCM (Euclidean)", "cRT", "τ-norm", "LWS"] {
        assert!(
            names
                .iter()
                .any(|n| n.contains(&format!("{c} on the instance-balanced"))),
            "no {c} row: {names:?}"
        );
        assert!(
            names
                .iter()
                .any(|n| n.contains(c) && n.ends_with("tail half of the classes")),
            "no tail-half row for {c}"
        );
    }
    for r in rows {
        let v = r["ours"]["mean"].as_f64().unwrap();
        assert!(v.is_finite() && v >= 0.0, "{}: {v}", r["name"]);
    }
    let notes = s["notes"].as_array().unwrap();
    assert!(
        notes.iter().any(|n| n.as_str().unwrap().contains("claim")),
        "the claim check is missing from the notes"
    );
    // 4 samplers × 6 classifiers × 1 seed.
    let results = read_json(&out.join("results.json"));
    assert_eq!(results.as_array().unwrap().len(), 24);
    for r in results.as_array().unwrap() {
        let pc = r["eval"]["per_class"].as_array().unwrap();
        assert_eq!(pc.len(), 10);
    }
    for f in [
        "config.json",
        "summary.md",
        "grid.md",
        "diagnostics.json",
        "weight_norms_cifar10_lt_if100.svg",
        "per_class_accuracy_cifar10_lt_if100.svg",
        "tau_sweep_cifar10_lt_if100.svg",
        "samplers_cifar10_lt_if100.svg",
        "seed_0/cifar10_lt_if100/instance/log.csv",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn bad_flags_fail_before_any_work() {
    for (args, msg) in [
        (vec!["--settings", "cifar10:0.5"], "imbalance factor"),
        (vec!["--settings", "mnist:10"], "expected cifar10:IF"),
        (vec!["--samplers", "balanced"], "invalid value"),
        (vec!["--epochs", "0"], "epochs"),
        (vec!["--stage2-epochs", "0"], "stage2.epochs"),
        (vec!["--lt-lists", "/nonexistent/zoo"], "not a directory"),
    ] {
        let out = tmp("bad");
        let mut a = vec!["--preset", "smoke"];
        a.extend(&args);
        let o = decouple(&a, &out);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?} accepted");
        assert!(err.contains(msg), "{args:?}: {err}");
        assert!(!out.exists(), "{args:?} created the output directory");
    }
}

#[test]
fn help_describes_the_flags() {
    let o = Command::new(env!("CARGO_BIN_EXE_decouple"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(o.status.success());
    let h = String::from_utf8_lossy(&o.stdout);
    for f in [
        "--settings",
        "--samplers",
        "--lt-lists",
        "--preset",
        "--seeds",
    ] {
        assert!(h.contains(f), "--help lacks {f}");
    }
}

#[test]
fn presets_validate() {
    for p in [Preset::Paper, Preset::Cpu, Preset::Smoke] {
        let c = DecoupleConfig::preset(p);
        c.validate().unwrap_or_else(|e| panic!("{p}: {e:#}"));
    }
    let paper = DecoupleConfig::paper();
    assert!(paper
        .settings
        .iter()
        .any(|s| s.data.tag() == "ImageNet_LT" && s.stage1.epochs == 90));
    assert!(paper
        .settings
        .iter()
        .any(|s| s.data.tag() == "cifar10_lt_if100" && s.stage1.epochs == 200));
    let mut bad = DecoupleConfig::cpu();
    bad.settings[0].stage2.tau_grid = vec![];
    assert!(bad.validate().is_err());
}
