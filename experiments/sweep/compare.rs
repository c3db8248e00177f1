//! `sweep compare A B`: whether two `summary.json` files have the same numbers (the table's rows
//! and every metric, per seed), ignoring provenance (command, host) and timings (rows in seconds,
//! such as decouple's epoch time: they differ from one process to the next). The Slurm test uses
//! it to check a merged summary against a single process's.

use std::path::Path;

use anyhow::{Context, Result};

use crate::results::Summary;

fn read(p: &Path) -> Result<Summary> {
    serde_json::from_slice(&std::fs::read(p).with_context(|| format!("reading {}", p.display()))?)
        .with_context(|| format!("{}: not a summary.json", p.display()))
}

/// Units of wall-time rows, which no two runs share.
const TIME_UNITS: [&str; 4] = ["s", "ms", "min", "h"];

fn same(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan())
}

fn same_all(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(*x, *y))
}

/// The differences between two summaries' numbers (empty: equal). Values must be equal exactly
/// (NaN equals NaN): a merged summary is built from the same per-run files as a whole run's.
pub fn differences(a: &Summary, b: &Summary) -> Vec<String> {
    let mut d = Vec::new();
    if a.binary != b.binary || a.preset != b.preset || a.seeds != b.seeds {
        d.push(format!(
            "different experiments: {} {} {:?} vs {} {} {:?}",
            a.binary, a.preset, a.seeds, b.binary, b.preset, b.seeds
        ));
    }
    if a.rows.len() != b.rows.len() {
        d.push(format!("{} rows vs {}", a.rows.len(), b.rows.len()));
    }
    for (x, y) in a.rows.iter().zip(&b.rows) {
        if x.name != y.name {
            d.push(format!("row {:?} vs {:?}", x.name, y.name));
        } else if !TIME_UNITS.contains(&x.unit.as_str())
            && !same_all(&x.ours.per_seed, &y.ours.per_seed)
        {
            d.push(format!(
                "row {:?}: {:?} vs {:?}",
                x.name, x.ours.per_seed, y.ours.per_seed
            ));
        }
    }
    let keys = |s: &Summary| s.metrics.keys().cloned().collect::<Vec<_>>();
    if keys(a) != keys(b) {
        d.push(format!("metrics {:?} vs {:?}", keys(a), keys(b)));
    }
    for (k, x) in &a.metrics {
        if let Some(y) = b.metrics.get(k) {
            if !same_all(&x.per_seed, &y.per_seed) {
                d.push(format!("metric {k}: {:?} vs {:?}", x.per_seed, y.per_seed));
            }
        }
    }
    d
}

/// Compares the summaries in two files; `Ok(differences)`.
pub fn compare_files(a: &Path, b: &Path) -> Result<Vec<String>> {
    Ok(differences(&read(a)?, &read(b)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{Row, RunInfo, SeedStats};

    fn summary(err: f64, secs: f64) -> Summary {
        Summary {
            binary: "b".into(),
            preset: "smoke".into(),
            title: String::new(),
            paper: String::new(),
            seeds: vec![0],
            rows: vec![
                Row::new("error", "%", vec![err]),
                Row::new("NaN row", "%", vec![f64::NAN]),
                Row::new("epoch time", "s", vec![secs]),
            ],
            metrics: [("m".to_string(), SeedStats::new(vec![err]))].into(),
            plots: Vec::new(),
            notes: vec![format!("took {secs} s")],
            config: serde_json::Value::Null,
            run: RunInfo::collect(secs, &candle_core::Device::Cpu),
        }
    }

    #[test]
    fn numbers_count_and_timings_do_not() {
        assert!(differences(&summary(1.0, 2.0), &summary(1.0, 3.0)).is_empty());
        let d = differences(&summary(1.0, 2.0), &summary(1.5, 2.0));
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d[0].contains("error") && d[1].contains("metric m"), "{d:?}");
    }
}
