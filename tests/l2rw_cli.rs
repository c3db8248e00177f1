//! The `l2rw` binary end to end: the smoke preset (MNIST from the shared HF cache, CIFAR-10 from
//! the shared JPEG copy) writes a complete summary; invalid flags fail before any work.

use std::path::{Path, PathBuf};
use std::process::Command;

fn shared() -> PathBuf {
    let p = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared"));
    assert!(
        p.join("hf").is_dir() && p.join("data/cifar10-jpeg").is_dir(),
        "test data missing: expected {}/hf (MNIST) and {}/data/cifar10-jpeg (see DATA.md)",
        p.display(),
        p.display()
    );
    p
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("zoo-l2rw-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn l2rw(args: &[&str], out: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_l2rw"))
        .args(args)
        .arg("--out")
        .arg(out)
        .env("HF_HOME", shared().join("hf"))
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("running the l2rw binary")
}

#[test]
fn smoke_preset_end_to_end() {
    let out = tmp("smoke");
    let cifar = shared().join("data/cifar10-jpeg");
    let o = l2rw(
        &["--preset", "smoke", "--cifar-dir", cifar.to_str().unwrap()],
        &out,
    );
    assert!(
        o.status.success(),
        "smoke run failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["binary"], "l2rw");
    assert_eq!(s["preset"], "smoke");
    let rows = s["rows"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    for m in ["plain", "proportional", "resample", "l2rw"] {
        assert!(
            names
                .iter()
                .any(|n| n.starts_with("MNIST 4-vs-9") && n.ends_with(m)),
            "no MNIST {m} row: {names:?}"
        );
    }
    for noise in ["uniform:0.4", "background:0.4"] {
        assert!(
            names
                .iter()
                .any(|n| n.contains(noise) && n.ends_with("l2rw")),
            "no CIFAR {noise} row: {names:?}"
        );
    }
    for r in rows {
        let v = r["ours"]["mean"].as_f64().unwrap();
        assert!(v.is_finite() && v >= 0.0, "{}: {v}", r["name"]);
    }
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    // 4 MNIST methods × 1 proportion + 3 CIFAR methods × 2 noise settings, one seed.
    assert_eq!(results.as_array().unwrap().len(), 10);
    for f in ["config.json", "summary.md", "mnist_imbalance.svg"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn invalid_flags_are_rejected_before_any_work() {
    for bad in [
        vec!["--preset", "smoke", "--proportions", "1.5"],
        vec!["--preset", "smoke", "--proportions", "0.3"],
        vec!["--preset", "smoke", "--mnist-steps", "0"],
        vec!["--preset", "smoke", "--mnist-lr", "-1"],
        vec!["--preset", "smoke", "--mnist-methods", "magic"],
        vec!["--preset", "smoke", "--parts", "imagenet"],
        vec!["--preset", "smoke", "--cifar-dir", "/nonexistent/zoo-l2rw"],
    ] {
        let out = tmp("bad");
        let o = l2rw(&bad, &out);
        assert!(!o.status.success(), "{bad:?} was accepted");
        assert!(
            !out.exists(),
            "{bad:?}: the output directory was created before the error"
        );
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!err.contains("panicked"), "{bad:?} panicked: {err}");
    }
}
