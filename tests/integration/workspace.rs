//! The workspace promise of the README: every experiment binary is owned by a package that has the
//! GPU/BLAS features, so `cargo run --release --bin <name> --features cuda` works from the root.

use std::process::Command;

const BINARIES: &[&str] = &[
    "datasets",
    "distill",
    "confidence_penalty",
    "decouple",
    "l2rw",
    "mlnt",
    "mwn",
    "bagging",
    "report",
];
const FEATURES: &[&str] = &["cuda", "cudnn", "metal", "mkl", "accelerate"];

fn metadata() -> serde_json::Value {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON")
}

#[test]
fn every_binary_is_owned_by_a_package_with_the_device_features() {
    let meta = metadata();
    let packages = meta["packages"].as_array().expect("packages");
    let mut found = 0;
    for bin in BINARIES {
        let owners: Vec<&serde_json::Value> = packages
            .iter()
            .filter(|p| {
                p["targets"].as_array().is_some_and(|ts| {
                    ts.iter()
                        .any(|t| t["name"] == *bin && t["kind"][0] == "bin")
                })
            })
            .collect();
        assert!(
            owners.len() <= 1,
            "binary {bin} is defined in several packages"
        );
        let Some(owner) = owners.first() else {
            continue;
        };
        found += 1;
        assert_eq!(
            owner["name"], "candle-zoo",
            "binary {bin} must live in the root package"
        );
        for f in FEATURES {
            assert!(
                owner["features"].get(*f).is_some(),
                "package owning {bin} lacks feature {f}"
            );
        }
    }
    assert!(found >= 1, "no experiment binary found at all");
}

#[test]
fn every_candle_crate_passes_the_device_features_through() {
    let meta = metadata();
    for p in meta["packages"].as_array().expect("packages") {
        let uses_candle = p["dependencies"]
            .as_array()
            .is_some_and(|ds| ds.iter().any(|d| d["name"] == "candle-core"));
        if !uses_candle {
            continue;
        }
        for f in FEATURES {
            let list = p["features"][*f]
                .as_array()
                .unwrap_or_else(|| panic!("{} uses candle but lacks feature {f}", p["name"]));
            assert!(
                list.iter()
                    .any(|x| x.as_str() == Some(&format!("candle-core/{f}"))
                        || x.as_str().is_some_and(|s| s.ends_with(&format!("/{f}")))),
                "{}: feature {f} does not reach candle: {list:?}",
                p["name"]
            );
        }
    }
}
