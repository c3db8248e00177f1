//! `scripts/gpu-check.sh --cpu` (issue 25, item 8), the prepared GPU check dry-run on the CPU:
//! the l2rw smoke preset under `--backend candle` against the fast path (compared by
//! `scripts/gpu_compare.py`), then its `--dry-run` projection, on the binaries this test build
//! made (`--bin-dir`). Seconds; the whole check (every binary, paper presets) is for a lent GPU.

use std::path::Path;
use std::process::Command;

use super::common::{cifar_dir, hf_home, scratch};

#[test]
fn gpu_check_dry_run_on_the_cpu() {
    cifar_dir();
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_l2rw"))
        .parent()
        .expect("the binaries' folder");
    let out = scratch("gpu-check", "cpu");
    let o = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/gpu-check.sh"))
        .args([
            "--cpu",
            "--only",
            "l2rw",
            "--slice-preset",
            "smoke",
            "--bin-dir",
        ])
        .arg(bin_dir)
        .arg("--out")
        .arg(&out)
        .env("HF_HOME", hf_home())
        .output()
        .expect("running scripts/gpu-check.sh");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "gpu-check.sh --cpu failed:\n{text}");
    let summary = std::fs::read_to_string(out.join("summary.md")).expect("summary.md");
    assert!(
        summary.contains("l2rw smoke: device agrees with the CPU"),
        "{summary}"
    );
    assert!(
        summary.contains("l2rw smoke:") && summary.contains("projected wall time"),
        "{summary}"
    );
    assert!(summary.contains("exit status: 0"), "{summary}");
    let compared = super::common::read_json(&out.join("smoke-l2rw.json"));
    assert!(compared["worst"].is_string(), "{compared}");
    let dry = std::fs::read_to_string(out.join("paper-l2rw.txt")).expect("paper-l2rw.txt");
    assert!(dry.contains("\"backend\": \"candle\""), "{dry}");
    assert!(!out.join("smoke").exists() && !out.join("paper").exists());
    let _ = std::fs::remove_dir_all(&out);
}
