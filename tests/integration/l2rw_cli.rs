//! The `l2rw` binary end to end: the smoke preset (MNIST from the shared HF cache, CIFAR-10 from
//! the shared JPEG copy) writes a complete summary; invalid flags fail before any work.

use std::path::{Path, PathBuf};

use crate::common::{
    assert_ok, assert_rejected_before_work, cifar_dir, read_json, row_names, run_with_out, scratch,
    smoke_summary, svg_plots,
};

fn tmp(name: &str) -> PathBuf {
    scratch("l2rw", name)
}

fn l2rw(args: &[&str], out: &Path) -> std::process::Output {
    run_with_out(env!("CARGO_BIN_EXE_l2rw"), args, out)
}

#[test]
fn smoke_preset_end_to_end() {
    let out = tmp("smoke");
    let cifar = cifar_dir();
    let o = l2rw(
        &["--preset", "smoke", "--cifar-dir", cifar.to_str().unwrap()],
        &out,
    );
    assert_ok(&o, "smoke run");
    let s = smoke_summary(&out, "l2rw");
    let rows = s["rows"].as_array().unwrap();
    let names = row_names(&s);
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
    let results = read_json(&out.join("results.json"));
    // 4 MNIST methods × 1 proportion + 3 CIFAR methods × 2 noise settings, one seed.
    assert_eq!(results.as_array().unwrap().len(), 10);
    for f in ["config.json", "summary.md", "mnist_imbalance.svg"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    // The plots the summary lists: the MNIST sweep and one CIFAR curves plot per noise setting,
    // with a line per method.
    let plots = svg_plots(&s, &out);
    assert_eq!(
        plots,
        [
            "mnist_imbalance.svg",
            "cifar_test_accuracy_uniform_0_4.svg",
            "cifar_test_accuracy_background_0_4.svg"
        ]
    );
    for p in &plots[1..] {
        let svg = std::fs::read_to_string(out.join(p)).expect("curves plot");
        assert!(svg.contains("l2rw"), "{p}: no l2rw line");
    }
    // The refactoring guard: the same numbers as the recorded baseline.
    crate::golden::check("l2rw_smoke", &s);
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn invalid_flags_are_rejected_before_any_work() {
    assert_rejected_before_work(
        env!("CARGO_BIN_EXE_l2rw"),
        "l2rw",
        &[
            vec!["--preset", "smoke", "--proportions", "1.5"],
            vec!["--preset", "smoke", "--proportions", "0.3"],
            vec!["--preset", "smoke", "--mnist-steps", "0"],
            vec!["--preset", "smoke", "--mnist-lr", "-1"],
            vec!["--preset", "smoke", "--mnist-methods", "magic"],
            vec!["--preset", "smoke", "--parts", "imagenet"],
            vec!["--preset", "smoke", "--cifar-dir", "/nonexistent/zoo-l2rw"],
            vec!["--preset", "smoke", "--jobs", "0"],
            vec!["--preset", "smoke", "--set", "cifar.opt.lrr=0.1"],
            vec!["--preset", "smoke", "--set", "cifar.opt.lr=-1"],
            vec!["--preset", "smoke", "--set", "cifar.opt.warmup_steps=2"],
            vec!["--preset", "smoke", "--set", "cifar.augment=sometimes"],
        ],
    );
}

/// `(setting, method, seed) → test error` of every run in a `results.json`.
fn errors_by_run(dir: &Path) -> Vec<(String, String, u64, f64)> {
    let v = read_json(&dir.join("results.json"));
    let mut out: Vec<_> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["setting"].as_str().unwrap().to_string(),
                r["method"].as_str().unwrap().to_string(),
                r["seed"].as_u64().unwrap(),
                r["test_error"].as_f64().unwrap(),
            )
        })
        .collect();
    out.sort_by(|a, b| (&a.0, &a.1, a.2).cmp(&(&b.0, &b.1, b.2)));
    out
}

#[test]
fn runs_side_by_side_give_the_same_numbers() {
    let (one, two) = (tmp("jobs1"), tmp("jobs2"));
    let args = ["--preset", "smoke", "--parts", "mnist", "--seeds", "0,1"];
    let a = l2rw(&args, &one);
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    let b = l2rw(&[&args[..], &["--jobs", "2"]].concat(), &two);
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    let (ea, eb) = (errors_by_run(&one), errors_by_run(&two));
    assert_eq!(ea.len(), 8, "4 methods × 2 seeds: {ea:?}");
    assert_eq!(ea, eb, "--jobs 2 changed the results");
    let md = std::fs::read_to_string(two.join("summary.md")).unwrap();
    assert!(
        md.contains("--jobs 2"),
        "the summary does not say the runs shared the CPU"
    );
    let _ = std::fs::remove_dir_all(&one);
    let _ = std::fs::remove_dir_all(&two);
}
