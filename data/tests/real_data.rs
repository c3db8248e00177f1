//! The real files in ../shared: row counts, per-class counts (DATA.md), first MNIST label.

mod common;
use common::shared;
use zoo_data::{load, DataSource, Split};

fn hub() -> DataSource {
    // Cached files must be found with no network at all.
    std::env::set_var("HF_HOME", shared().join("hf"));
    std::env::set_var("HF_HUB_OFFLINE", "1");
    DataSource::Hub
}

#[test]
fn mnist_train_and_test() {
    let src = hub();
    let tr = load("mnist", Split::Train, &src).unwrap();
    assert_eq!(tr.len(), 60_000);
    assert_eq!(tr.images.len(), 60_000 * 784);
    assert_eq!(tr.labels[0], 5, "first MNIST training label");
    assert_eq!(
        tr.class_counts(),
        vec![5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    );
    assert_eq!(tr.source.kind, "hub");
    assert_eq!(
        tr.source.commit.as_deref(),
        Some("ae79b8d3356de2ccd847547a76dadc95103e1ef2")
    );
    // MNIST digits are centred on a black background: border pixels are 0, the centre is not empty.
    let im = tr.image(0);
    assert!((0..28).all(|x| im[x] == 0 && im[27 * 28 + x] == 0));
    assert!(im.iter().map(|&p| p as u32).sum::<u32>() > 10_000);
    let te = load("mnist", Split::Test, &src).unwrap();
    assert_eq!(te.len(), 10_000);
    assert_eq!(te.class_counts().iter().sum::<usize>(), 10_000);
}

#[test]
fn fashion_mnist_balanced() {
    let src = hub();
    let tr = load("fashion_mnist", Split::Train, &src).unwrap();
    assert_eq!(tr.class_counts(), vec![6000; 10]);
    let te = load("fashion_mnist", Split::Test, &src).unwrap();
    assert_eq!(te.class_counts(), vec![1000; 10]);
}

#[test]
fn cifar10_jpeg_copy() {
    let src = DataSource::Dir(shared().join("data/cifar10-jpeg"));
    let tr = load("cifar10", Split::Train, &src).unwrap();
    assert_eq!(
        (tr.len(), tr.channels, tr.height, tr.width),
        (50_000, 3, 32, 32)
    );
    assert_eq!(tr.class_counts(), vec![5000; 10]);
    let te = load("cifar10", Split::Test, &src).unwrap();
    assert_eq!(te.class_counts(), vec![1000; 10]);
    // Per-channel means of CIFAR-10 train are about (125, 123, 114)/255: a channel swap or a
    // grey decode would move them.
    let n = tr.len() as f64;
    let mean = |c: usize| {
        (0..tr.len())
            .map(|i| {
                tr.image(i)[c * 1024..(c + 1) * 1024]
                    .iter()
                    .map(|&p| p as f64)
                    .sum::<f64>()
            })
            .sum::<f64>()
            / (n * 1024.0)
    };
    let (r, g, b) = (mean(0), mean(1), mean(2));
    assert!(
        (r - 125.3).abs() < 3.0 && (g - 123.0).abs() < 3.0 && (b - 113.9).abs() < 3.0,
        "{r} {g} {b}"
    );
}
