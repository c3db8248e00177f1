//! Runs the `datasets` binary on MNIST from ../shared/hf and checks its output and error cases.

use std::process::{Command, Output};

use crate::common::hf_home;

fn run(args: &[&str], hf_home: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_datasets"))
        .args(args)
        .env("HF_HOME", hf_home)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("running datasets")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn info_mnist_text_and_json() {
    let hf = hf_home();
    let o = run(&["info", "mnist"], &hf);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    for want in [
        "rows       60000",
        "1x28x28",
        "ylecun/mnist",
        "mnist/train-00000-of-00001.parquet",
        "5923",
        "6742",
    ] {
        assert!(out.contains(want), "missing '{want}' in:\n{out}");
    }
    let o = run(
        &[
            "info",
            "mnist",
            "--split",
            "test",
            "--json",
            "--noise",
            "uniform:0.4",
            "--seed",
            "1",
        ],
        &hf,
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
    assert_eq!(v["rows"], 10_000);
    assert_eq!(v["split"], "test");
    assert_eq!(v["image_shape"], serde_json::json!([1, 28, 28]));
    let rate = v["realised_noise_rate"].as_f64().unwrap();
    assert!(
        (rate - 0.4).abs() < 4.0 * (0.4f64 * 0.6 / 10_000.0).sqrt(),
        "realised rate {rate}"
    );
    let counts: usize = v["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["count"].as_u64().unwrap() as usize)
        .sum();
    assert_eq!(counts, 10_000);
}

#[test]
fn preview_writes_png_with_the_requested_grid() {
    let hf = hf_home();
    let dir = std::env::temp_dir().join(format!("zoo-datasets-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let png = dir.join("grid.png");
    let o = run(
        &[
            "preview",
            "mnist",
            "--out",
            png.to_str().unwrap(),
            "--count",
            "16",
            "--cols",
            "4",
            "--noise",
            "pair:0.5",
        ],
        &hf,
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("realised noise rate"), "{out}");
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    // IHDR width: 4 columns of 28·3 + 4 px cells plus a 4 px margin.
    let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    assert_eq!(width, 4 * (28 * 3 + 4) + 4);
    // No temporary files left behind.
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn errors_exit_nonzero_and_write_nothing() {
    let hf = hf_home();
    let dir = std::env::temp_dir().join(format!("zoo-datasets-cli-err-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let png = dir.join("grid.png");
    let p = png.to_str().unwrap();
    let empty = dir.join("empty-hf");
    std::fs::create_dir_all(&empty).unwrap();
    let cases: Vec<(Vec<&str>, &std::path::Path, &str)> = vec![
        (
            vec!["preview", "imagenet", "--out", p],
            &hf,
            "unknown dataset 'imagenet'",
        ),
        (
            vec!["preview", "mnist", "--out", p, "--noise", "uniform:1.5"],
            &hf,
            "must lie in [0, 1]",
        ),
        (
            vec![
                "preview",
                "mnist",
                "--out",
                p,
                "--imbalance",
                "longtail:0.5",
            ],
            &hf,
            ">= 1",
        ),
        (
            vec!["preview", "mnist", "--out", p, "--noise", "asym:0.2"],
            &hf,
            "CIFAR-10",
        ),
        (
            vec!["preview", "mnist", "--out", p],
            &empty,
            "huggingface-cli download --repo-type dataset",
        ),
        (
            vec!["info", "mnist", "--split", "validation"],
            &hf,
            "unknown split",
        ),
    ];
    for (args, home, want) in cases {
        let o = run(&args, home);
        let (_, err) = text(&o);
        assert!(!o.status.success(), "{args:?} should fail");
        assert!(
            err.contains(want),
            "{args:?}: stderr lacks '{want}':\n{err}"
        );
        assert!(!png.exists(), "{args:?} wrote the output");
    }
    assert_eq!(
        std::fs::read_dir(&empty).unwrap().count(),
        0,
        "nothing written into the cache"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
