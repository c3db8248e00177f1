//! Helpers of the integration tests: the shared data beside the checkout, scratch directories,
//! running a built binary offline, and the "invalid flags fail before any work" check.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `../shared` (datasets and the Hugging Face cache), asserting that each of `needs` (paths
/// relative to it) is there, with a message saying what is missing.
pub fn shared(needs: &[&str]) -> PathBuf {
    let p = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared"));
    for n in needs {
        assert!(
            p.join(n).exists(),
            "test data missing: expected {}/{n} beside the checkout (see ../shared/DATA.md)",
            p.display()
        );
    }
    p
}

/// The shared Hugging Face cache (MNIST, Fashion-MNIST).
pub fn hf_home() -> PathBuf {
    shared(&["hf/hub"]).join("hf")
}

/// The snapshot folder of a hub dataset repo in the shared cache (`owner/name`), for reading it
/// as a [`zoo_data::DataSource::Dir`] without touching `HF_HOME` (tests share one process).
pub fn hub_snapshot(repo: &str) -> PathBuf {
    let dir = hf_home()
        .join("hub")
        .join(format!("datasets--{}", repo.replace('/', "--")));
    let rev = std::fs::read_to_string(dir.join("refs/main"))
        .unwrap_or_else(|e| panic!("{}/refs/main: {e}", dir.display()));
    dir.join("snapshots").join(rev.trim())
}

/// The shared JPEG copy of CIFAR-10.
pub fn cifar_dir() -> PathBuf {
    shared(&["data/cifar10-jpeg"]).join("data/cifar10-jpeg")
}

/// A fresh (removed if present) scratch directory for one test of `binary`.
pub fn scratch(binary: &str, name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("zoo-{binary}-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Runs the built binary `exe` with `args --out out`, offline, on the shared HF cache, with
/// `--allow-dirty` (tests run from work trees with uncommitted changes).
pub fn run_with_out(exe: &str, args: &[&str], out: &Path) -> Output {
    Command::new(exe)
        .args(args)
        .arg("--allow-dirty")
        .arg("--out")
        .arg(out)
        .env("HF_HOME", hf_home())
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap_or_else(|e| panic!("running {exe}: {e}"))
}

/// A JSON file, with its path in any failure.
pub fn read_json(p: &Path) -> serde_json::Value {
    let bytes = std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The plot files a `summary.json` lists, each checked to be an SVG in `dir`.
pub fn svg_plots(summary: &serde_json::Value, dir: &Path) -> Vec<String> {
    let plots: Vec<String> = summary["plots"]
        .as_array()
        .expect("summary.json lists no plots")
        .iter()
        .map(|p| p.as_str().expect("plot name").to_owned())
        .collect();
    for p in &plots {
        let svg = std::fs::read_to_string(dir.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
        assert!(svg.contains("<svg"), "{p} is not an SVG");
    }
    plots
}

/// Each argument list must make `exe` fail without a panic and without creating its output
/// directory (errors before any work). Returns each run's stderr, for checks of the message.
pub fn assert_rejected_before_work(exe: &str, binary: &str, cases: &[Vec<&str>]) -> Vec<String> {
    cases
        .iter()
        .map(|bad| {
            let out = scratch(binary, "bad");
            let o = run_with_out(exe, bad, &out);
            let err = String::from_utf8_lossy(&o.stderr).into_owned();
            assert!(!o.status.success(), "{bad:?} was accepted");
            assert!(
                !out.exists(),
                "{bad:?}: the output directory was created before the error"
            );
            assert!(!err.contains("panicked"), "{bad:?} panicked: {err}");
            err
        })
        .collect()
}

/// A dataset of random `channels×size×size` images with the given labels (in-memory, for task
/// and classifier tests that need an [`zoo_data::ImageDataset`] but no real data).
pub fn random_images(
    labels: Vec<u32>,
    num_classes: usize,
    (channels, size): (usize, usize),
    rng: &mut rand::rngs::StdRng,
) -> zoo_data::ImageDataset {
    use rand::Rng;
    let n = labels.len() * channels * size * size;
    zoo_data::ImageDataset {
        name: "toy".into(),
        images: (0..n).map(|_| rng.random::<u8>()).collect(),
        labels,
        channels,
        height: size,
        width: size,
        num_classes,
        class_names: (0..num_classes).map(|c| c.to_string()).collect(),
        source: zoo_data::SourceInfo {
            kind: "dir".into(),
            repo: "toy".into(),
            revision: "-".into(),
            commit: None,
            files: vec![],
            paths: vec![],
        },
    }
}

/// An f64 tensor of `shape` with roughly normal entries (a sum of four uniforms) times `scale`,
/// for finite-difference checks.
pub fn randn(rng: &mut rand::rngs::StdRng, shape: &[usize], scale: f64) -> candle_core::Tensor {
    use rand::Rng;
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n)
        .map(|_| (0..4).map(|_| rng.random::<f64>() - 0.5).sum::<f64>() * scale)
        .collect();
    candle_core::Tensor::from_vec(v, shape, &candle_core::Device::Cpu).unwrap()
}

/// A tensor's values, flattened, as f64.
pub fn v1(t: &candle_core::Tensor) -> Vec<f64> {
    t.flatten_all()
        .unwrap()
        .to_dtype(candle_core::DType::F64)
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// Asserts that a run of a binary (`what`, for the message) succeeded, with its stderr.
pub fn assert_ok(o: &Output, what: &str) {
    assert!(
        o.status.success(),
        "{what} failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The `summary.json` a smoke run of `binary` wrote into `out`, checked to be that binary's smoke
/// summary.
pub fn smoke_summary(out: &Path, binary: &str) -> serde_json::Value {
    let s = read_json(&out.join("summary.json"));
    assert_eq!(s["binary"], binary);
    assert_eq!(s["preset"], "smoke");
    s
}

/// The names of a summary's rows, in order.
pub fn row_names(s: &serde_json::Value) -> Vec<&str> {
    let rows = s["rows"].as_array().expect("summary rows");
    rows.iter()
        .map(|r| r["name"].as_str().expect("row name"))
        .collect()
}

/// Every result row of a summary has a finite mean, and one in `% test accuracy` lies in
/// [0, 100].
pub fn assert_rows_in_range(rows: &[serde_json::Value]) {
    for r in rows {
        let v = r["ours"]["mean"].as_f64().unwrap();
        assert!(v.is_finite(), "{}: {v}", r["name"]);
        if r["unit"] == "% test accuracy" {
            assert!((0.0..=100.0).contains(&v), "{}: {v}", r["name"]);
        }
    }
}
