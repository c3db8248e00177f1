//! End to end: the `bagging` binary's smoke preset writes a complete results directory, and bad
//! flags are rejected before any work.

use std::process::Command;

use crate::common::{hf_home, scratch};

#[test]
fn smoke_preset_end_to_end() {
    let hf = hf_home();
    assert!(
        hf.is_dir(),
        "Fashion-MNIST is expected in the shared Hugging Face cache at {} (see shared/DATA.md)",
        hf.display()
    );
    let out = scratch("bagging", "smoke");
    let o = Command::new(env!("CARGO_BIN_EXE_bagging"))
        .args([
            "--preset",
            "smoke",
            "--threads",
            "2",
            "--allow-dirty",
            "--out",
        ])
        .arg(&out)
        .arg("--hf-home")
        .arg(&hf)
        .output()
        .expect("running the bagging binary");
    assert!(
        o.status.success(),
        "bagging --preset smoke failed: {}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    for f in [
        "config.json",
        "summary.json",
        "summary.md",
        "repetitions.json",
        "bags_curve.csv",
        "error_vs_bags_classification.svg",
        "error_vs_bags_regression.svg",
        "neural.json",
        "neural_error_vs_members.svg",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["binary"], "bagging");
    assert_eq!(s["preset"], "smoke");
    let rows = s["rows"].as_array().unwrap();
    let row = |name: &str| {
        rows.iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("row {name:?} missing"))
    };
    let single = row("waveform: single pruned tree");
    assert_eq!(single["paper"]["value"], 29.0);
    let v = single["ours"]["mean"].as_f64().unwrap();
    assert!(v > 0.0 && v < 100.0, "waveform error {v}");
    let bagged = row("waveform: bagged trees")["ours"]["mean"]
        .as_f64()
        .unwrap();
    assert!(bagged.is_finite());
    assert!(
        row("friedman1: single pruned tree")["ours"]["mean"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert!(rows
        .iter()
        .any(|r| r["name"].as_str().unwrap().contains("student distilled")));
    for r in rows {
        assert!(
            r["ours"]["mean"].as_f64().is_some_and(f64::is_finite),
            "{r}"
        );
    }
    // The curve's point at `bags` trees is the bagged predictor of the table.
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap();
    let (bags, curve_bags) = (
        cfg["bags"].as_u64().unwrap(),
        cfg["curve_bags"].as_u64().unwrap(),
    );
    let csv = std::fs::read_to_string(out.join("bags_curve.csv")).unwrap();
    let waveform: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|f| f[0] == "waveform")
        .collect();
    assert_eq!(waveform.len() as u64, curve_bags);
    let at_bags: f64 = waveform[bags as usize - 1][2].parse().unwrap();
    assert!(
        (at_bags - bagged).abs() < 1e-9,
        "curve at {bags} trees {at_bags} vs bagged {bagged}"
    );
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn invalid_flags_are_rejected_before_any_work() {
    for bad in [
        vec!["--reps", "0"],
        vec!["--datasets", "waveform,nope"],
        vec!["--bag-pruning", "sometimes"],
        vec!["--bags", "60", "--curve-bags", "50"],
        vec!["--se-rule", "-1"],
    ] {
        let out = scratch("bagging", "bad");
        let o = Command::new(env!("CARGO_BIN_EXE_bagging"))
            .args(["--preset", "smoke", "--allow-dirty", "--out"])
            .arg(&out)
            .args(&bad)
            .output()
            .expect("running the bagging binary");
        assert!(!o.status.success(), "{bad:?} accepted");
        assert!(!out.exists(), "{bad:?} created {}", out.display());
    }
}
