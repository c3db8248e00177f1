//! Pins the pixel layout: C,H,W order, no H/W swap, RGB channel order, for PNG and JPEG bytes,
//! through the full `load` path on parquet files written here.

mod common;
use common::*;
use zoo_data::{load, DataSource, Split};

fn px(img: &[u8], c: usize, y: usize, x: usize, h: usize, w: usize) -> u8 {
    img[c * h * w + y * w + x]
}

#[test]
fn rgb_png_is_chw_rgb_exact() {
    let dir = tempfile::tempdir().unwrap();
    let img = test_rgb(32, 32);
    let png = png_bytes(&image::DynamicImage::ImageRgb8(img.clone()));
    let file = dir.path().join("plain_text/train-00000-of-00001.parquet");
    write_image_parquet(
        &file,
        "img",
        &[Some(png.clone()), Some(png)],
        &[("label", vec![3, 7])],
    );
    let ds = load(
        "cifar10",
        Split::Train,
        &DataSource::Dir(dir.path().to_path_buf()),
    )
    .unwrap();
    assert_eq!(ds.len(), 2);
    assert_eq!(ds.labels, vec![3, 7]);
    assert_eq!((ds.channels, ds.height, ds.width), (3, 32, 32));
    let im = ds.image(1);
    for y in 0..32 {
        for x in 0..32 {
            assert_eq!(px(im, 0, y, x, 32, 32), (x * 8) as u8, "R at y={y} x={x}");
            assert_eq!(px(im, 1, y, x, 32, 32), (y * 8) as u8, "G at y={y} x={x}");
            let b = if x < 16 && y < 16 { 200 } else { 0 };
            assert_eq!(px(im, 2, y, x, 32, 32), b, "B at y={y} x={x}");
        }
    }
    assert_eq!(ds.source.kind, "dir");
    assert_eq!(ds.source.repo, "uoft-cs/cifar10");
}

#[test]
fn rgb_jpeg_is_chw_rgb_within_tolerance_and_matches_image_crate() {
    let dir = tempfile::tempdir().unwrap();
    let img = test_rgb(32, 32);
    let jpg = jpeg_bytes(&img, 98);
    let file = dir.path().join("plain_text/test-00000-of-00001.parquet");
    write_image_parquet(&file, "img", &[Some(jpg.clone())], &[("label", vec![9])]);
    let ds = load(
        "cifar10",
        Split::Test,
        &DataSource::Dir(dir.path().to_path_buf()),
    )
    .unwrap();
    let im = ds.image(0);
    let mut worst = 0i32;
    let mut total = 0i64;
    for y in 0..32 {
        for x in 0..32 {
            let b = if x < 16 && y < 16 { 200 } else { 0 };
            for (c, want) in [(0, (x * 8) as i32), (1, (y * 8) as i32), (2, b)] {
                let d = (px(im, c, y, x, 32, 32) as i32 - want).abs();
                worst = worst.max(d);
                total += d as i64;
            }
        }
    }
    let mean = total as f64 / (3.0 * 1024.0);
    // JPEG is lossy (chroma subsampling smears the B edge), but a swapped layout would be off by ~100.
    assert!(mean < 4.0, "mean abs error {mean}");
    assert!(worst < 60, "worst abs error {worst}");
    // Spot checks far from edges, where a transposition or channel swap would show at once.
    assert!((px(im, 0, 2, 28, 32, 32) as i32 - 224).abs() < 12);
    assert!((px(im, 1, 28, 2, 32, 32) as i32 - 224).abs() < 12);
    assert!(px(im, 2, 4, 4, 32, 32) > 170 && px(im, 2, 27, 27, 32, 32) < 30);
    // The zune-jpeg fast path gives exactly what image::load_from_memory gives.
    let mut reference = vec![0u8; 3 * 32 * 32];
    zoo_data::parquet_io::decode_image_chw_generic(&jpg, 3, 32, 32, &mut reference).unwrap();
    assert_eq!(im, &reference[..]);
}

#[test]
fn grey_png_mnist_layout_and_non_square_orientation() {
    let dir = tempfile::tempdir().unwrap();
    let g = image::GrayImage::from_fn(28, 28, |x, y| image::Luma([(x * 9 + y) as u8]));
    let png = png_bytes(&image::DynamicImage::ImageLuma8(g));
    write_image_parquet(
        &dir.path().join("mnist/train-00000-of-00001.parquet"),
        "image",
        &[Some(png)],
        &[("label", vec![5])],
    );
    let ds = load(
        "mnist",
        Split::Train,
        &DataSource::Dir(dir.path().to_path_buf()),
    )
    .unwrap();
    assert_eq!(ds.image(0)[3 * 28 + 10], (10 * 9 + 3) as u8); // y=3, x=10
    assert_eq!(ds.labels, vec![5]);
    // A 32x28 (w x h) image where 28x32 is expected must be rejected, not silently transposed.
    let mut out = vec![0u8; 3 * 32 * 28];
    let wrong = png_bytes(&image::DynamicImage::ImageRgb8(test_rgb(32, 28)));
    let err = zoo_data::parquet_io::decode_image_chw(&wrong, 3, 32, 28, &mut out).unwrap_err();
    assert!(err.to_string().contains("28x32"), "{err}");
}

#[test]
fn cifar100_fine_and_coarse_columns() {
    let dir = tempfile::tempdir().unwrap();
    let png = png_bytes(&image::DynamicImage::ImageRgb8(test_rgb(32, 32)));
    write_image_parquet(
        &dir.path().join("cifar100/train-00000-of-00001.parquet"),
        "img",
        &[Some(png.clone()), Some(png)],
        &[("fine_label", vec![19, 99]), ("coarse_label", vec![11, 13])],
    );
    let src = DataSource::Dir(dir.path().to_path_buf());
    let fine = load("cifar100", Split::Train, &src).unwrap();
    assert_eq!((fine.labels.clone(), fine.num_classes), (vec![19, 99], 100));
    assert_eq!(fine.class_names[19], "cattle");
    let coarse = load("cifar100_coarse", Split::Train, &src).unwrap();
    assert_eq!(
        (coarse.labels.clone(), coarse.num_classes),
        (vec![11, 13], 20)
    );
    assert_eq!(coarse.image(0), fine.image(0));
}
