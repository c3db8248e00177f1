//! The refactoring guard: a smoke run's numbers against a recorded baseline
//! (`tests/golden/<binary>_smoke.json`).
//!
//! Only what a smoke run measured is compared: the summary's result rows (name, unit, per-seed
//! values) and metrics, with wall times, revision, paths and prose left out, plus the seeds,
//! plots and config that produced them. On the machine that recorded the baseline (same CPU model
//! and instruction sets) every number must be bit-identical; elsewhere (another CPU may take other
//! gemm kernels) they are compared with a relative tolerance (`ZOO_GOLDEN_RTOL`, default 1e-3) and
//! a note says so. `ZOO_GOLDEN_RECORD=1` rewrites the baseline instead (`scripts/smoke-guard.sh
//! --record`).

use std::path::PathBuf;

use serde_json::{json, Map, Value};

/// Units of rows that hold wall times or ratios of them: never reproducible, left out.
const TIME_UNITS: &[&str] = &["ms", "×"];

/// The machine facts that decide whether numbers can be bit-identical.
fn machine() -> Value {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or("unknown", str::trim)
        .to_string();
    let flags: Vec<&str> = info
        .lines()
        .find(|l| l.starts_with("flags"))
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default();
    let isa: Vec<&str> = ["avx512f", "avx2", "fma", "sse4_2"]
        .into_iter()
        .filter(|f| flags.contains(f))
        .collect();
    json!({ "cpu": model, "isa": isa })
}

/// The reproducible part of a `summary.json`.
pub fn canonical(summary: &Value) -> Value {
    let mut rows = Map::new();
    for r in summary["rows"].as_array().expect("summary rows") {
        let unit = r["unit"].as_str().unwrap_or_default();
        if TIME_UNITS.contains(&unit) {
            continue;
        }
        let name = r["name"].as_str().expect("row name").to_string();
        rows.insert(
            name,
            json!({ "unit": unit, "per_seed": r["ours"]["per_seed"] }),
        );
    }
    json!({
        "binary": summary["binary"],
        "preset": summary["preset"],
        "seeds": summary["seeds"],
        "rows": rows,
        "metrics": summary["metrics"],
        "plots": summary["plots"],
        "config": summary["config"],
    })
}

fn golden_path(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden")).join(format!("{name}.json"))
}

/// Compares `summary` (a smoke run's `summary.json`) with `tests/golden/<name>.json`, or records
/// it there under `ZOO_GOLDEN_RECORD=1`. Panics listing every difference.
pub fn check(name: &str, summary: &Value) {
    let now = canonical(summary);
    let path = golden_path(name);
    if std::env::var("ZOO_GOLDEN_RECORD").is_ok_and(|v| v == "1") {
        let commit = std::process::Command::new("git")
            .args(["rev-parse", "HEAD"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        let doc = json!({ "recorded_on": machine(), "commit": commit, "smoke": now });
        std::fs::create_dir_all(path.parent().expect("golden dir")).expect("tests/golden");
        let text = serde_json::to_string_pretty(&doc).expect("golden JSON") + "\n";
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        eprintln!("recorded {}", path.display());
        return;
    }
    let golden = crate::common::read_json(&path);
    let same_machine = golden["recorded_on"] == machine();
    let rtol = if same_machine {
        0.0
    } else {
        let rtol = std::env::var("ZOO_GOLDEN_RTOL")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1e-3);
        eprintln!(
            "note: {name}: baseline recorded on {}, this machine is {}: comparing with relative \
             tolerance {rtol} instead of bit for bit",
            golden["recorded_on"],
            machine()
        );
        rtol
    };
    let mut diffs = Vec::new();
    diff("", &golden["smoke"], &now, rtol, &mut diffs);
    assert!(
        diffs.is_empty(),
        "{name}: the smoke run differs from {} ({} differences):\n{}",
        path.display(),
        diffs.len(),
        diffs.join("\n")
    );
}

/// Every place where `b` differs from `a` (numbers: beyond `rtol` relative; 0 = bit for bit).
fn diff(at: &str, a: &Value, b: &Value, rtol: f64, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for k in x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))) {
                let here = format!("{at}/{k}");
                match (x.get(k), y.get(k)) {
                    (Some(p), Some(q)) => diff(&here, p, q, rtol, out),
                    (p, q) => out.push(format!("{here}: {p:?} vs {q:?}")),
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                diff(&format!("{at}[{i}]"), p, q, rtol, out);
            }
        }
        (Value::Number(x), Value::Number(y)) => {
            let (p, q) = (
                x.as_f64().unwrap_or(f64::NAN),
                y.as_f64().unwrap_or(f64::NAN),
            );
            let same = if rtol == 0.0 {
                x == y
            } else {
                (p - q).abs() <= rtol * p.abs().max(q.abs()).max(1e-12)
            };
            if !same {
                out.push(format!("{at}: {x} vs {y}"));
            }
        }
        _ if a == b => {}
        _ => out.push(format!("{at}: {a} vs {b}")),
    }
}
