//! Error paths: missing files offline, corrupt parquet, corrupt image, bad labels, unknown names.
//! The hub test changes process environment, so it is the only test here touching HF_*.

mod common;
use common::*;
use zoo_data::{load, DataSource, Split};

#[test]
fn missing_file_offline_names_repo_revision_file_and_fix() {
    let empty = tempfile::tempdir().unwrap();
    std::env::set_var("HF_HOME", empty.path());
    std::env::set_var("HF_HUB_OFFLINE", "1");
    let err = load("fashion_mnist", Split::Test, &DataSource::Hub)
        .unwrap_err()
        .to_string();
    for want in [
        "zalando-datasets/fashion_mnist",
        "revision 'main'",
        "fashion_mnist/test-00000-of-00001.parquet",
        "huggingface-cli download --repo-type dataset",
        "HF_HOME",
        "HF_HUB_OFFLINE",
    ] {
        assert!(err.contains(want), "error lacks '{want}': {err}");
    }
    // Nothing was created in the (empty) cache.
    assert_eq!(std::fs::read_dir(empty.path()).unwrap().count(), 0);
}

#[test]
fn missing_file_in_dir_source_names_path() {
    let d = tempfile::tempdir().unwrap();
    let err = load("cifar10", Split::Train, &DataSource::Dir(d.path().into()))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("plain_text/train-00000-of-00001.parquet"),
        "{err}"
    );
}

#[test]
fn corrupt_parquet_names_the_file() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("plain_text/train-00000-of-00001.parquet");
    std::fs::create_dir_all(f.parent().unwrap()).unwrap();
    std::fs::write(&f, b"PAR1 this is not a parquet file at all PAR1").unwrap();
    let err = format!(
        "{:#}",
        load("cifar10", Split::Train, &DataSource::Dir(d.path().into())).unwrap_err()
    );
    assert!(err.contains(&f.display().to_string()), "{err}");
}

#[test]
fn corrupt_image_names_file_and_first_bad_row() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("plain_text/train-00000-of-00001.parquet");
    let good = png_bytes(&image::DynamicImage::ImageRgb8(test_rgb(32, 32)));
    let mut truncated = jpeg_bytes(&test_rgb(32, 32), 90);
    truncated.truncate(40);
    let imgs = vec![
        Some(good.clone()),
        Some(good.clone()),
        Some(b"garbage".to_vec()),
        Some(truncated),
        Some(good),
    ];
    write_image_parquet(&f, "img", &imgs, &[("label", vec![0, 1, 2, 3, 4])]);
    let err = format!(
        "{:#}",
        load("cifar10", Split::Train, &DataSource::Dir(d.path().into())).unwrap_err()
    );
    assert!(
        err.contains(&f.display().to_string()) && err.contains("row 2"),
        "{err}"
    );
}

#[test]
fn null_image_and_bad_label_are_errors_with_row() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("plain_text/train-00000-of-00001.parquet");
    let good = png_bytes(&image::DynamicImage::ImageRgb8(test_rgb(32, 32)));
    write_image_parquet(
        &f,
        "img",
        &[Some(good.clone()), None],
        &[("label", vec![0, 1])],
    );
    let err = format!(
        "{:#}",
        load("cifar10", Split::Train, &DataSource::Dir(d.path().into())).unwrap_err()
    );
    assert!(err.contains("row 1") && err.contains("null"), "{err}");
    write_image_parquet(
        &f,
        "img",
        &[Some(good.clone()), Some(good)],
        &[("label", vec![0, 10])],
    );
    let err = format!(
        "{:#}",
        load("cifar10", Split::Train, &DataSource::Dir(d.path().into())).unwrap_err()
    );
    assert!(err.contains("row 1") && err.contains("label 10"), "{err}");
}

#[test]
fn wrong_schema_and_unknown_dataset() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("plain_text/train-00000-of-00001.parquet");
    let good = png_bytes(&image::DynamicImage::ImageRgb8(test_rgb(32, 32)));
    write_image_parquet(&f, "image", &[Some(good)], &[("label", vec![0])]);
    let err = format!(
        "{:#}",
        load("cifar10", Split::Train, &DataSource::Dir(d.path().into())).unwrap_err()
    );
    assert!(
        err.contains("img.bytes") && err.contains("image.bytes"),
        "{err}"
    );
    let err = load("imagenet", Split::Train, &DataSource::Hub)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unknown dataset 'imagenet'") && err.contains("cifar100_coarse"),
        "{err}"
    );
}
