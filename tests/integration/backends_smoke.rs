//! Every binary with a recorded smoke baseline (`tests/golden/<binary>_smoke.json`, the fast
//! path's numbers) runs its smoke preset again under `--backend candle` (candle's own ops: the
//! op sequence a CUDA or Metal device runs) and must reproduce the baseline's results, L2RW and
//! MWN weight statistics and final metrics within [`RTOL`] (or [`PCT_ATOL`] for percentages of a
//! small test set). The two paths differ only in f32 summation order, which a few hundred SGD
//! steps amplify; a wrong gradient, a different ReLU convention or a wrong pooling would not stay
//! within these bounds. Each case also checks that `config.json` and the summary record the
//! backend. Measured here (2026-12-08): largest relative difference 7.4e-4 (l2rw, an L2RW weight
//! statistic), 3.4e-6 (mwn), 0 (mlnt). Per-step losses are not compared: the baselines hold
//! summaries only.

use std::path::Path;

use serde_json::Value;

use crate::common::{cifar_dir, read_json, run_with_out, scratch};

/// Relative tolerance for every number but percentages.
const RTOL: f64 = 5e-3;
/// Absolute tolerance, in percentage points, for `%` rows and `*_pct` metrics: a smoke test set
/// has 50–200 images, so one flipped prediction moves them by 0.5–2 points.
const PCT_ATOL: f64 = 4.0;

/// Runs `binary`'s smoke preset under `--backend candle` and compares it with its baseline.
fn candle_matches_baseline(exe: &str, binary: &str, data_flag: &str, extra: &[&str]) {
    let out = scratch(binary, "candle-backend");
    let dir = cifar_dir();
    let o = run_with_out(
        exe,
        &[
            "--preset",
            "smoke",
            "--backend",
            "candle",
            data_flag,
            dir.to_str().expect("utf-8 path"),
        ]
        .iter()
        .chain(extra)
        .copied()
        .collect::<Vec<_>>(),
        &out,
    );
    assert!(
        o.status.success(),
        "{binary} --backend candle failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(read_json(&out.join("config.json"))["backend"], "candle");
    let summary = read_json(&out.join("summary.json"));
    assert_eq!(summary["run"]["backend"], "candle", "{binary}: summary");
    let golden_file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{binary}_smoke.json"));
    let golden = read_json(&golden_file);
    let now = crate::golden::canonical(&summary);
    let mut diffs = Vec::new();
    let mut worst = (0.0f64, String::new());
    compare("", &golden["smoke"], &now, &mut diffs, &mut worst);
    eprintln!(
        "{binary}: candle vs fast baseline, largest relative difference {:.2e} at {}",
        worst.0, worst.1
    );
    assert!(
        diffs.is_empty(),
        "{binary}: --backend candle differs from the fast path's baseline {} beyond rtol {RTOL} \
         / {PCT_ATOL} points ({} differences):\n{}",
        golden_file.display(),
        diffs.len(),
        diffs.join("\n")
    );
    let _ = std::fs::remove_dir_all(&out);
}

/// Whether the value at `path` is a percentage (`per_seed` of a `%` row, or a `*_pct` metric).
fn is_pct(path: &str, unit: Option<&str>) -> bool {
    unit.is_some_and(|u| u.starts_with('%')) || path.contains("_pct")
}

/// Records in `out` every number of `b` off `a` beyond the tolerances (structure must match),
/// and the largest relative difference of non-percentage numbers in `worst`.
fn compare(at: &str, a: &Value, b: &Value, out: &mut Vec<String>, worst: &mut (f64, String)) {
    compare_in(at, a, b, None, out, worst)
}

fn compare_in(
    at: &str,
    a: &Value,
    b: &Value,
    unit: Option<&str>,
    out: &mut Vec<String>,
    worst: &mut (f64, String),
) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let unit = x.get("unit").and_then(Value::as_str).or(unit);
            for k in x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))) {
                let here = format!("{at}/{k}");
                match (x.get(k), y.get(k)) {
                    (Some(p), Some(q)) => compare_in(&here, p, q, unit, out, worst),
                    (p, q) => out.push(format!("{here}: {p:?} vs {q:?}")),
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                compare_in(&format!("{at}[{i}]"), p, q, unit, out, worst);
            }
        }
        (Value::Number(x), Value::Number(y)) => {
            let (p, q) = (
                x.as_f64().unwrap_or(f64::NAN),
                y.as_f64().unwrap_or(f64::NAN),
            );
            let d = (p - q).abs();
            let ok = if is_pct(at, unit) {
                d <= PCT_ATOL
            } else {
                let rel = d / p.abs().max(q.abs()).max(1e-6);
                if rel > worst.0 {
                    *worst = (rel, at.to_string());
                }
                rel <= RTOL || d <= 1e-6
            };
            if !ok {
                out.push(format!("{at}: fast {x} vs candle {y}"));
            }
        }
        _ if a == b => {}
        _ => out.push(format!("{at}: fast {a} vs candle {b}")),
    }
}

#[test]
fn l2rw_smoke_on_the_candle_backend() {
    candle_matches_baseline(env!("CARGO_BIN_EXE_l2rw"), "l2rw", "--cifar-dir", &[]);
}

#[test]
fn mwn_smoke_on_the_candle_backend() {
    candle_matches_baseline(
        env!("CARGO_BIN_EXE_mwn"),
        "mwn",
        "--data-dir",
        &["--jobs", "2"],
    );
}

#[test]
fn mlnt_smoke_on_the_candle_backend() {
    candle_matches_baseline(env!("CARGO_BIN_EXE_mlnt"), "mlnt", "--data-dir", &[]);
}
