//! The `confidence_penalty` binary end to end: the smoke preset writes a valid summary, and
//! invalid flags are rejected before any work (no results directory is created).
//!
//! Needs MNIST in `../shared/hf` (the Hugging Face cache beside the checkout).

use std::path::Path;
use std::process::{Command, Output};

use crate::common::{hf_home, scratch, svg_plots};

const BIN: &str = env!("CARGO_BIN_EXE_confidence_penalty");

fn run(args: &[&str], out: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--allow-dirty")
        .arg("--out")
        .arg(out)
        .env("HF_HOME", hf_home())
        .env("RUST_LOG", "warn")
        .output()
        .expect("start the confidence_penalty binary")
}

#[test]
fn invalid_flags_are_rejected_before_any_work() {
    let cases: &[(&[&str], &str)] = &[
        (&["--preset", "smoke", "--beta", "-1"], "β must be >= 0"),
        (&["--preset", "smoke", "--beta=-0.5,1"], "β must be >= 0"),
        (
            &["--preset", "smoke", "--methods", "none,bogus"],
            "unknown method",
        ),
        (
            &["--preset", "smoke", "--methods", "cp+ls_uniform"],
            "two output regularisers",
        ),
        (
            &["--preset", "smoke", "--eps", "1.5"],
            "ε must be in [0, 1]",
        ),
        (&["--preset", "smoke", "--threshold", "0"], "Γ must be > 0"),
        (
            &["--preset", "smoke", "--epochs", "0"],
            "epochs must be positive",
        ),
        (
            &["--preset", "smoke", "--beta", "abc"],
            "not a finite number",
        ),
        (&["--preset", "smoke", "--run-cifar"], "no CIFAR-10 task"),
        (&["--preset", "huge"], "invalid value"),
    ];
    for (i, (args, expect)) in cases.iter().enumerate() {
        let out = scratch("cp", &format!("bad{i}"));
        let o = run(args, &out);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?} was accepted");
        assert!(
            err.contains(expect),
            "{args:?}: expected {expect:?} in stderr:\n{err}"
        );
        assert!(
            !out.exists(),
            "{args:?}: {} was created before the flags were checked",
            out.display()
        );
    }
}

#[test]
fn smoke_preset_writes_a_valid_summary() {
    let out = scratch("cp", "smoke");
    let o = run(&["--preset", "smoke", "--cpu"], &out);
    assert!(
        o.status.success(),
        "smoke run failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let read = |name: &str| -> serde_json::Value {
        let p = out.join(name);
        serde_json::from_slice(
            &std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
        )
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", p.display()))
    };
    let s = read("summary.json");
    assert_eq!(s["binary"], "confidence_penalty");
    assert_eq!(s["preset"], "smoke");
    let seeds = s["seeds"].as_array().expect("seeds").len();
    assert!(
        seeds >= 2,
        "smoke uses at least two seeds (t-tests need two)"
    );
    let rows = s["rows"].as_array().expect("rows");
    let methods = s["config"]["tasks"][0]["methods"]
        .as_array()
        .expect("methods")
        .len();
    // Error, NLL, ECE and entropy rows for every method.
    assert_eq!(rows.len(), 4 * methods, "rows: {rows:#?}");
    for r in rows {
        let per_seed = r["ours"]["per_seed"].as_array().expect("per_seed");
        assert_eq!(per_seed.len(), seeds);
        for v in per_seed {
            let v = v.as_f64().expect("number");
            assert!(v.is_finite() && v >= 0.0, "{}: {v}", r["name"]);
        }
    }
    // The paper's three MNIST rows carry the paper's numbers.
    let paper: Vec<f64> = rows
        .iter()
        .filter_map(|r| r["paper"]["value"].as_f64())
        .collect();
    assert_eq!(paper, vec![1.28, 1.23, 1.17]);
    // Every row but the baseline's error row has a t-test note; error rows note the chosen values.
    let notes: Vec<&str> = rows.iter().filter_map(|r| r["note"].as_str()).collect();
    assert_eq!(notes.len(), methods);
    assert!(
        notes.iter().skip(1).all(|n| n.contains("Welch")),
        "{notes:?}"
    );
    // Tuning record: grids and chosen values, on the validation split.
    let t = read("tuning.json");
    let tuned = t[0]["methods"].as_array().expect("tuned methods");
    assert_eq!(tuned.len(), methods);
    let cp = tuned
        .iter()
        .find(|m| m["method"] == "cp")
        .expect("cp tuned");
    assert_eq!(cp["grid"].as_array().expect("grid").len(), 2);
    assert!(cp["chosen"]["beta"].as_f64().is_some());
    // Plots exist and are SVG, the penalty's β trade-off among them.
    let plots = svg_plots(&s, &out);
    assert!(
        plots.iter().any(|p| p == "mnist_cp_beta_tradeoff.svg"),
        "{plots:?}"
    );
    // Validation ECE is scored for every grid point, and the notes name the β best by error
    // and by NLL and read the ordering with paired tests.
    assert!(cp["grid"][0]["val"]["ece"]
        .as_f64()
        .is_some_and(|e| e >= 0.0));
    let summary_notes: Vec<&str> = s["notes"]
        .as_array()
        .expect("notes")
        .iter()
        .filter_map(|n| n.as_str())
        .collect();
    assert!(
        summary_notes
            .iter()
            .any(|n| n.contains("best by error β =") && n.contains("best by NLL β =")),
        "{summary_notes:#?}"
    );
    assert!(
        summary_notes
            .iter()
            .any(|n| n.contains("Paired t-tests over seeds")),
        "{summary_notes:#?}"
    );
    assert!(out.join("methods.md").is_file() && out.join("summary.md").is_file());
    let _ = std::fs::remove_dir_all(&out);
}
