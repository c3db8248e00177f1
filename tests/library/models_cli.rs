//! The `models` binary: list, info, help and the unknown-name error.

use std::process::{Command, Output};

fn models(args: &[&str]) -> (Output, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_models"))
        .args(args)
        .output()
        .expect("running models");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    (o, out, err)
}

#[test]
fn info_describes_one_model_with_hand_checked_flops() {
    let (o, out, err) = models(&["info", "resnet8"]);
    assert!(o.status.success(), "{err}");
    // ResNet-8 on 3×32×32: 12,239,488 multiply-accumulates (see models/tests/registry.rs).
    for want in [
        "forward FLOPs per input 24478976",
        "parameters 75290",
        "input 3×32×32, output 10",
        "layer3.0.conv2",
        "layer1.0.bn1.running_mean",
        r#""arch":"resnet_cifar""#,
    ] {
        assert!(out.contains(want), "missing `{want}` in:\n{out}");
    }
    let (o, out, _) = models(&["info", "lenet", "--classes", "2"]);
    assert!(o.status.success());
    assert!(out.contains("output 2"), "{out}");
}

#[test]
fn unknown_names_fail_listing_the_zoo_and_help_works() {
    let (o, _, err) = models(&["info", "resnet9"]);
    assert!(!o.status.success());
    assert!(
        err.contains("unknown model `resnet9`") && err.contains("resnet32"),
        "{err}"
    );
    let (o, out, _) = models(&["--help"]);
    assert!(o.status.success());
    assert!(out.contains("list") && out.contains("info"), "{out}");
}

#[test]
fn list_prints_every_model() {
    let (o, out, err) = models(&["list"]);
    assert!(o.status.success(), "{err}");
    for name in zoo_models::registry::names() {
        assert!(
            out.lines().any(|l| l.starts_with(name)),
            "{name} in:\n{out}"
        );
    }
    // ResNet-8: 75,290 parameters, 24.5 MFLOPs; 3×32×32 input.
    let line = out.lines().find(|l| l.starts_with("resnet8 ")).unwrap();
    assert!(
        line.contains("75.3 K") && line.contains("24.5 M") && line.contains("3×32×32"),
        "{line}"
    );
}
