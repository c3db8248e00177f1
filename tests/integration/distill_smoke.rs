//! The `distill` binary end to end on the smoke preset: it must write a valid summary, save its
//! teacher, reuse a saved teacher with `--teacher`, and reject bad flags before doing any work.

use std::process::Command;

use crate::common::{hf_home, read_json, scratch, svg_plots};

fn run(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_distill"))
        .env("HF_HOME", hf_home())
        .env("RUST_LOG", "warn")
        .args(args)
        .arg("--allow-dirty")
        .output()
        .expect("running the distill binary")
}

#[test]
fn smoke_preset_writes_a_valid_summary_and_reuses_its_teacher() {
    let out = scratch("distill", "smoke");
    let o = out.to_str().unwrap();
    let r = run(&["--preset", "smoke", "--cpu", "--seeds", "0,1", "--out", o]);
    assert!(
        r.status.success(),
        "distill failed:\n{}",
        String::from_utf8_lossy(&r.stderr)
    );

    let s = read_json(&out.join("summary.json"));
    assert_eq!(s["binary"], "distill");
    assert_eq!(s["preset"], "smoke");
    assert_eq!(s["seeds"], serde_json::json!([0, 1]));
    let rows = s["rows"].as_array().expect("rows");
    assert!(rows.len() >= 10, "{} rows", rows.len());
    let n_test = 500.0;
    for row in rows {
        let per_seed = row["ours"]["per_seed"].as_array().expect("per_seed");
        assert_eq!(per_seed.len(), 2, "row {}", row["name"]);
        if row["unit"] == "test errors" {
            for v in per_seed {
                let v = v.as_f64().expect("a number");
                assert!((0.0..=n_test).contains(&v), "{}: {v}", row["name"]);
            }
        }
    }
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert!(names.iter().any(|n| n.contains("hard labels")));
    assert!(names.iter().any(|n| n.contains("without 3s")));
    assert!(rows.iter().any(|r| r["paper"]["value"] == 74.0));
    assert_eq!(s["config"]["kd"]["temperature"], 20.0);

    // Every run left its log; the teacher was saved; the plots exist.
    for run in [
        "student_hard",
        "distill_T20",
        "omit3_T20",
        "only78_T20",
        "distill_T1",
    ] {
        let log = out.join("seed_0").join(run).join("log.csv");
        assert!(log.is_file(), "missing {}", log.display());
    }
    assert!(out.join("seed_0/teacher/log.csv").is_file());
    let teacher = out.join("teacher.safetensors");
    assert!(teacher.is_file());
    assert!(out.join("summary.md").is_file() && out.join("config.json").is_file());
    svg_plots(&s, &out);
    let res = read_json(&out.join("results.json"));
    let omit = &res["seeds"][0]["omit"];
    assert!(
        omit["bias"]["delta"].is_number(),
        "no bias choice in {omit}"
    );

    // Reusing the saved teacher gives the same teacher numbers and trains no teacher.
    let out2 = scratch("distill", "reuse");
    let o2 = out2.to_str().unwrap();
    let t = teacher.to_str().unwrap();
    let r = run(&[
        "--preset",
        "smoke",
        "--cpu",
        "--out",
        o2,
        "--teacher",
        t,
        "--sweep",
        "20",
    ]);
    assert!(
        r.status.success(),
        "distill --teacher failed:\n{}",
        String::from_utf8_lossy(&r.stderr)
    );
    let res2 = read_json(&out2.join("results.json"));
    assert_eq!(
        res2["teacher"]["test_errors"],
        res["teacher"]["test_errors"]
    );
    assert!(
        !out2.join("seed_0/teacher").exists(),
        "a teacher was trained despite --teacher"
    );
    // Same seed, same teacher: the students are reproduced exactly.
    assert_eq!(
        res2["seeds"][0]["distilled"]["test_errors"],
        res["seeds"][0]["distilled"]["test_errors"]
    );

    let _ = std::fs::remove_dir_all(&out);
    let _ = std::fs::remove_dir_all(&out2);
}

#[test]
fn tune_mode_scores_the_grid_on_validation() {
    let out = scratch("distill", "tune");
    let o = out.to_str().unwrap();
    let r = run(&[
        "--preset",
        "smoke",
        "--cpu",
        "--tune",
        "--out",
        o,
        "--tune-hard-lrs",
        "0.05",
        "--tune-kd-lrs",
        "0.02,0.05",
        "--tune-alphas",
        "0.5",
    ]);
    assert!(
        r.status.success(),
        "distill --tune failed:\n{}",
        String::from_utf8_lossy(&r.stderr)
    );
    let t = read_json(&out.join("tune.json"));
    let points = t["points"].as_array().expect("points");
    assert_eq!(points.len(), 3);
    for p in points {
        let e = p["val_errors"].as_u64().expect("val errors");
        assert!(e <= 300, "{e} errors of 300 validation images");
    }
    let md = std::fs::read_to_string(out.join("tune.md")).unwrap();
    assert!(md.contains("Best distilled") && md.contains("val errors"));
    // No summary: tuning is not the experiment.
    assert!(!out.join("summary.json").exists());
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn bad_flags_are_rejected_before_any_work() {
    let out = scratch("distill", "bad");
    let o = out.to_str().unwrap();
    for args in [
        vec![
            "--preset",
            "smoke",
            "--out",
            o,
            "--teacher",
            "/nonexistent/teacher.safetensors",
        ],
        vec!["--preset", "smoke", "--out", o, "--alpha", "1.5"],
        vec!["--preset", "smoke", "--out", o, "--sweep", "1,-2"],
        vec!["--preset", "smoke", "--out", o, "--temperature", "0"],
        vec!["--preset", "smoke", "--out", o, "--tune-alphas", "2"],
        vec!["--preset", "smoke", "--out", o, "--kd-batch", "0"],
    ] {
        let r = run(&args);
        assert!(!r.status.success(), "{args:?} accepted");
        assert!(
            !out.join("config.json").exists(),
            "{args:?} wrote config.json before failing"
        );
    }
    // A file that is not a teacher of the right shape is an error, not a silent retrain.
    let bogus = std::env::temp_dir().join(format!(
        "zoo_distill_bogus_{}.safetensors",
        std::process::id()
    ));
    std::fs::write(&bogus, b"not safetensors").unwrap();
    let r = run(&[
        "--preset",
        "smoke",
        "--out",
        o,
        "--teacher",
        bogus.to_str().unwrap(),
    ]);
    assert!(!r.status.success());
    assert!(String::from_utf8_lossy(&r.stderr).contains("--teacher"));
    let _ = std::fs::remove_file(&bogus);
    let _ = std::fs::remove_dir_all(&out);
}
