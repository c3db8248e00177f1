//! The `mwn` binary end to end: the smoke preset (CIFAR-10 from the shared JPEG copy), run as two
//! invocations (`--parts noise`, then `--parts long-tail` into the same directory), writes one
//! summary with every method of both parts, the weighting-function plots and the histograms;
//! invalid flags fail before any work.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{
    assert_ok, assert_rejected_before_work, cifar_dir, read_json, row_names, run_with_out, scratch,
    smoke_summary,
};

fn tmp(name: &str) -> PathBuf {
    scratch("mwn", name)
}

fn mwn(args: &[&str], out: &Path) -> std::process::Output {
    run_with_out(env!("CARGO_BIN_EXE_mwn"), args, out)
}

#[test]
fn smoke_preset_end_to_end() {
    let out = tmp("smoke");
    let dir = cifar_dir();
    let d = dir.to_str().unwrap();
    // The long-tail part runs its five methods two at a time (`--jobs 2`).
    for (part, jobs) in [("noise", "1"), ("long-tail", "2")] {
        let o = mwn(
            &[
                "--preset",
                "smoke",
                "--data-dir",
                d,
                "--parts",
                part,
                "--jobs",
                jobs,
            ],
            &out,
        );
        assert_ok(&o, &format!("smoke run ({part})"));
    }
    let s = smoke_summary(&out, "mwn");
    let rows = s["rows"].as_array().unwrap();
    let names = row_names(&s);
    for m in ["ce", "focal", "class_balanced", "l2rw", "mwn"] {
        for setting in ["uniform_any:0.4", "cifar10-LT IF=5"] {
            assert!(
                names
                    .iter()
                    .any(|n| n.contains(setting) && n.ends_with(&format!(": {m}"))),
                "no {setting} {m} row: {names:?}"
            );
        }
    }
    // The paper's CIFAR-10 uniform-40 % numbers sit beside ours.
    let ce = rows
        .iter()
        .find(|r| {
            let n = r["name"].as_str().unwrap();
            n.contains("uniform_any:0.4") && n.ends_with(": ce")
        })
        .unwrap();
    assert_eq!(ce["paper"]["value"].as_f64(), Some(68.07));
    crate::common::assert_rows_in_range(rows);
    let results = read_json(&out.join("results.json"));
    let results = results.as_array().unwrap();
    // 5 methods × 2 parts, one seed: the second invocation kept the first one's results.
    assert_eq!(results.len(), 10);
    for r in results.iter().filter(|r| r["method"] == "mwn") {
        let f = r["weight_fn"].as_array().expect("MWN run without w(ℓ)");
        assert_eq!(f.len(), 101);
        for p in f {
            let w = p[1].as_f64().unwrap();
            assert!(w > 0.0 && w < 1.0, "w(ℓ) = {w} outside (0, 1)");
        }
        assert!(r["vnet_slope"].as_f64().unwrap().is_finite());
    }
    for f in [
        "config.json",
        "summary.md",
        "weight_fn_noise_cifar10_uniform_any_0_4.svg",
        "weight_fn_long_tail_cifar10_IF_5.svg",
        "weights_hist_noise_cifar10_uniform_any_0_4.svg",
        "weights_hist_long_tail_cifar10_IF_5.svg",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    // The refactoring guard: the same numbers as the recorded baseline.
    crate::golden::check("mwn_smoke", &s);
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn invalid_flags_are_rejected_before_any_work() {
    assert_rejected_before_work(
        env!("CARGO_BIN_EXE_mwn"),
        "mwn",
        &[
            // L2RW's "uniform" (always another class) is not MWN's convention.
            vec!["--preset", "smoke", "--noise", "uniform:0.4"],
            vec!["--preset", "smoke", "--noise", "pair:1.5"],
            vec!["--preset", "smoke", "--imbalance", "0.5"],
            vec!["--preset", "smoke", "--meta-every", "0"],
            vec!["--preset", "smoke", "--jobs", "0"],
            vec!["--preset", "smoke", "--steps", "0"],
            vec!["--preset", "smoke", "--methods", "magic"],
            vec!["--preset", "smoke", "--parts", "imagenet"],
            vec!["--preset", "smoke", "--data-dir", "/nonexistent/zoo-mwn"],
        ],
    );
}

#[test]
fn help_describes_the_binary() {
    let o = Command::new(env!("CARGO_BIN_EXE_mwn"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(o.status.success());
    let h = String::from_utf8_lossy(&o.stdout);
    for flag in [
        "--preset",
        "--parts",
        "--methods",
        "--meta-every",
        "--normalise",
    ] {
        assert!(h.contains(flag), "--help lacks {flag}");
    }
}
