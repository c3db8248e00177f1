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

/// Runs the built binary `exe` with `args --out out`, offline, on the shared HF cache.
pub fn run_with_out(exe: &str, args: &[&str], out: &Path) -> Output {
    Command::new(exe)
        .args(args)
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
