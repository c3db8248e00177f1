//! Samplers' class frequencies, splits and the meta set, augmentation, batches.

use candle_core::Device;
use rand::rngs::StdRng;
use rand::SeedableRng;
use zoo_data::augment::{apply_params, AugParams, Augment};
use zoo_data::sampler::*;
use zoo_data::split::{balanced_meta_set, train_val};
use zoo_data::*;

/// Long-tailed labels: class c has counts[c] rows.
fn labels_with(counts: &[usize]) -> Vec<u32> {
    counts
        .iter()
        .enumerate()
        .flat_map(|(c, &n)| std::iter::repeat_n(c as u32, n))
        .collect()
}

fn freqs(idx: &[usize], y: &[u32], c: usize) -> Vec<f64> {
    let mut f = vec![0.0; c];
    for &i in idx {
        f[y[i] as usize] += 1.0;
    }
    f.iter().map(|x| x / idx.len() as f64).collect()
}

fn close(got: &[f64], want: &[f64], n: usize) {
    for (g, w) in got.iter().zip(want) {
        let sd = (w * (1.0 - w) / n as f64).sqrt();
        assert!(
            (g - w).abs() <= 4.0 * sd + 1e-9,
            "got {got:?}, want {want:?}"
        );
    }
}

const COUNTS: [usize; 4] = [8000, 1800, 200, 50];

#[test]
fn instance_class_sqrt_progressive_bootstrap_frequencies() {
    let y = labels_with(&COUNTS);
    let n = y.len();
    let mut rng = StdRng::seed_from_u64(0);
    let ib_p: Vec<f64> = COUNTS.iter().map(|&k| k as f64 / n as f64).collect();

    let mut ib = InstanceBalanced { n };
    let e = ib.epoch_indices(0, &mut rng);
    let mut s = e.clone();
    s.sort_unstable();
    assert_eq!(s, (0..n).collect::<Vec<_>>(), "a permutation");
    assert_ne!(e, s, "shuffled");

    let mut cb = ClassBalanced::new(&y, 4).unwrap();
    let e: Vec<usize> = (0..20)
        .flat_map(|ep| cb.epoch_indices(ep, &mut rng))
        .collect();
    close(&freqs(&e, &y, 4), &[0.25; 4], e.len());

    let mut sq = SquareRoot::new(&y, 4).unwrap();
    let e: Vec<usize> = (0..20)
        .flat_map(|ep| sq.epoch_indices(ep, &mut rng))
        .collect();
    let r: Vec<f64> = COUNTS.iter().map(|&k| (k as f64).sqrt()).collect();
    let t: f64 = r.iter().sum();
    close(
        &freqs(&e, &y, 4),
        &r.iter().map(|x| x / t).collect::<Vec<_>>(),
        e.len(),
    );

    let mut pb = ProgressivelyBalanced::new(&y, 4, 10).unwrap();
    for (ep, a) in [(0usize, 0.0), (5, 0.5), (10, 1.0), (20, 1.0)] {
        let want: Vec<f64> = ib_p.iter().map(|p| (1.0 - a) * p + a * 0.25).collect();
        let e: Vec<usize> = (0..10)
            .flat_map(|_| pb.epoch_indices(ep, &mut rng))
            .collect();
        close(&freqs(&e, &y, 4), &want, e.len());
        assert!(pb
            .probs_at(ep)
            .iter()
            .zip(&want)
            .all(|(a, b)| (a - b).abs() < 1e-12));
    }

    let mut bs = Bootstrap::new(n, &mut rng).unwrap();
    assert_eq!(bs.bag().len(), n);
    let oob = bs.out_of_bag();
    // Expected out-of-bag fraction (1 − 1/n)^n ≈ e^−1.
    let p = (1.0 - 1.0 / n as f64).powi(n as i32);
    let sd = (p * (1.0 - p) / n as f64).sqrt();
    assert!(((oob.len() as f64 / n as f64) - p).abs() < 4.0 * sd);
    let mut a = bs.epoch_indices(0, &mut rng);
    let mut b = bs.bag().to_vec();
    a.sort_unstable();
    b.sort_unstable();
    assert_eq!(a, b, "each epoch visits the same bag");
    assert!(oob.iter().all(|i| b.binary_search(i).is_err()));
}

#[test]
fn splits_and_meta_set() {
    let y = labels_with(&[300, 200, 50]);
    let mut rng = StdRng::seed_from_u64(7);
    let (meta, rest) = balanced_meta_set(&y, 10, &mut rng).unwrap();
    assert_eq!(
        class_counts(&meta.iter().map(|&i| y[i]).collect::<Vec<_>>(), 3),
        vec![10, 10, 10]
    );
    let mut all: Vec<usize> = meta.iter().chain(&rest).copied().collect();
    all.sort_unstable();
    assert_eq!(
        all,
        (0..y.len()).collect::<Vec<_>>(),
        "disjoint and covering"
    );
    let (m2, _) = balanced_meta_set(&y, 10, &mut StdRng::seed_from_u64(7)).unwrap();
    assert_eq!(meta, m2, "seeded");
    assert!(balanced_meta_set(&y, 51, &mut rng)
        .unwrap_err()
        .to_string()
        .contains("class 2"));
    let (tr, va) = train_val(100, 20, &mut rng).unwrap();
    assert_eq!((tr.len(), va.len()), (80, 20));
    assert!(va.iter().all(|i| tr.binary_search(i).is_err()));
    assert!(train_val(10, 11, &mut rng).is_err());
}

fn numbered(c: usize, h: usize, w: usize) -> Vec<u8> {
    (0..c * h * w).map(|i| (i % 251 + 1) as u8).collect()
}

#[test]
fn crop_flip_and_jitter_pixels() {
    let (c, h, w) = (3, 32, 32);
    let src = numbered(c, h, w);
    let mut dst = vec![0u8; c * h * w];
    // Crop at offset (oy, ox) = (1, 6) of the padded image == shift dy = 3, dx = -2, then flip.
    apply_params(
        AugParams {
            dy: 3,
            dx: -2,
            flip: true,
        },
        &src,
        &mut dst,
        c,
        h,
        w,
    );
    for ch in 0..c {
        for y in 0..h {
            for x in 0..w {
                // Padded image P(y', x') = src(y' − 4, x' − 4); crop C(y, x) = P(y + 1, x + 6);
                // flipped F(y, x) = C(y, w − 1 − x).
                let (py, px) = (y as i32 + 1 - 4, (w - 1 - x) as i32 + 6 - 4);
                let want = if py < 0 || px < 0 || py >= h as i32 || px >= w as i32 {
                    0
                } else {
                    src[ch * h * w + py as usize * w + px as usize]
                };
                assert_eq!(dst[ch * h * w + y * w + x], want, "c{ch} y{y} x{x}");
            }
        }
    }
    // Jitter stays within ±2 and covers all 25 shifts; CIFAR offsets cover all 81 crops and both flips.
    let mut rng = StdRng::seed_from_u64(0);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..2000 {
        let p = Augment::Jitter { max_px: 2 }.sample(&mut rng);
        assert!(p.dx.abs() <= 2 && p.dy.abs() <= 2 && !p.flip);
        seen.insert((p.dy, p.dx));
    }
    assert_eq!(seen.len(), 25);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..5000 {
        let p = Augment::CifarCropFlip.sample(&mut rng);
        assert!(p.dx.abs() <= 4 && p.dy.abs() <= 4);
        seen.insert((p.dy, p.dx, p.flip));
    }
    assert_eq!(seen.len(), 162);
    // Seeded.
    let (mut a, mut b) = (vec![0u8; c * h * w], vec![0u8; c * h * w]);
    Augment::CifarCropFlip.apply(&src, &mut a, c, h, w, &mut StdRng::seed_from_u64(5));
    Augment::CifarCropFlip.apply(&src, &mut b, c, h, w, &mut StdRng::seed_from_u64(5));
    assert_eq!(a, b);
}

fn tiny_dataset(n: usize) -> ImageDataset {
    let (c, h, w) = (3, 4, 5);
    ImageDataset {
        name: "cifar10".into(),
        images: (0..n * c * h * w).map(|i| (i % 256) as u8).collect(),
        labels: (0..n).map(|i| (i % 10) as u32).collect(),
        channels: c,
        height: h,
        width: w,
        num_classes: 10,
        class_names: (0..10).map(|i| i.to_string()).collect(),
        source: SourceInfo {
            kind: "dir".into(),
            repo: "test".into(),
            revision: "local".into(),
            commit: None,
            files: vec![],
            paths: vec![],
        },
    }
}

#[test]
fn loader_batches_values_order_and_determinism() {
    let ds = tiny_dataset(23);
    let dev = Device::Cpu;
    let norm = Normalize::new(vec![0.5, 0.25, 0.0], vec![0.5, 2.0, 1.0]).unwrap();
    let mut l = Loader::new(
        &ds,
        8,
        norm.clone(),
        Augment::None,
        Box::new(InstanceBalanced { n: 23 }),
        3,
        &dev,
    )
    .unwrap();
    let it = l.epoch(0);
    assert_eq!(it.num_batches(), 3);
    let batches: Vec<Batch> = it.map(|b| b.unwrap()).collect();
    assert_eq!(
        batches.iter().map(|b| b.indices.len()).collect::<Vec<_>>(),
        vec![8, 8, 7]
    );
    let mut seen: Vec<usize> = batches.iter().flat_map(|b| b.indices.clone()).collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..23).collect::<Vec<_>>());
    let b = &batches[0];
    assert_eq!(b.images.dims(), &[8, 3, 4, 5]);
    let x = b.images.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let labels = b.labels.to_vec1::<u32>().unwrap();
    for (k, &i) in b.indices.iter().enumerate() {
        assert_eq!(labels[k], ds.labels[i]);
        let raw = ds.image(i)[20 + 2 * 5 + 3] as f32; // channel 1, y 2, x 3
        let want = (raw / 255.0 - 0.25) / 2.0;
        assert!((x[((k * 3 + 1) * 4 + 2) * 5 + 3] - want).abs() < 1e-6);
    }
    // Same seed, same epoch → same batches; other epoch → other order; drop_last.
    let again: Vec<usize> = l.epoch(0).flat_map(|b| b.unwrap().indices).collect();
    assert_eq!(
        again,
        batches
            .iter()
            .flat_map(|b| b.indices.clone())
            .collect::<Vec<_>>()
    );
    let other: Vec<usize> = l.epoch(1).flat_map(|b| b.unwrap().indices).collect();
    assert_ne!(again, other);
    let mut l2 = Loader::new(
        &ds,
        8,
        norm,
        Augment::CifarCropFlip,
        Box::new(InstanceBalanced { n: 23 }),
        3,
        &dev,
    )
    .unwrap()
    .drop_last(true);
    let a: Vec<Batch> = l2.epoch(4).map(|b| b.unwrap()).collect();
    assert_eq!(a.len(), 2);
    let b2: Vec<Batch> = l2.epoch(4).map(|b| b.unwrap()).collect();
    let flat = |v: &[Batch]| {
        v.iter()
            .flat_map(|b| b.images.flatten_all().unwrap().to_vec1::<f32>().unwrap())
            .collect::<Vec<f32>>()
    };
    assert_eq!(flat(&a), flat(&b2), "augmentation is seeded per epoch");
    assert!(Normalize::for_dataset("nope").is_err());
    assert_eq!(Normalize::for_dataset("cifar10").unwrap().mean.len(), 3);
}
