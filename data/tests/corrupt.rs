//! Label noise (realised rates within 4σ of nominal, masks consistent), imbalance profiles, specs.
#![allow(clippy::needless_range_loop)] // parallel arrays indexed by row read clearer

use rand::rngs::StdRng;
use rand::SeedableRng;
use zoo_data::corrupt::*;

fn balanced(n_per: usize, c: usize) -> Vec<u32> {
    (0..n_per * c).map(|i| (i % c) as u32).collect()
}

/// |realised − expected| ≤ 4 binomial standard deviations.
fn within_4_sigma(realised: f64, p: f64, n: usize) {
    let sd = (p * (1.0 - p) / n as f64).sqrt();
    assert!(
        (realised - p).abs() <= 4.0 * sd + 1e-12,
        "realised {realised}, expected {p} ± 4·{sd}"
    );
}

fn mask_consistent(clean: &[u32], c: &Corrupted) {
    assert_eq!(c.labels.len(), clean.len());
    for i in 0..clean.len() {
        assert_eq!(c.changed[i], c.labels[i] != clean[i], "row {i}");
    }
}

#[test]
fn uniform_other_rate_and_targets() {
    let y = balanced(5000, 10);
    let c = uniform_other(&y, 10, 0.4, &mut StdRng::seed_from_u64(1)).unwrap();
    mask_consistent(&y, &c);
    within_4_sigma(c.realised_rate(), 0.4, y.len());
    // New labels of changed rows are spread uniformly over the other 9 classes.
    let mut counts = [[0usize; 10]; 10];
    for i in 0..y.len() {
        if c.changed[i] {
            counts[y[i] as usize][c.labels[i] as usize] += 1;
        }
    }
    for (t, row) in counts.iter().enumerate() {
        assert_eq!(row[t], 0);
        let tot: usize = row.iter().sum();
        for (j, &k) in row.iter().enumerate() {
            if j != t {
                within_4_sigma(k as f64 / tot as f64, 1.0 / 9.0, tot);
            }
        }
    }
}

#[test]
fn uniform_any_changes_rate_times_c_minus_1_over_c() {
    let y = balanced(5000, 10);
    let c = uniform_any(&y, 10, 0.6, &mut StdRng::seed_from_u64(2)).unwrap();
    mask_consistent(&y, &c);
    within_4_sigma(c.realised_rate(), 0.6 * 0.9, y.len());
}

#[test]
fn pair_background_asym() {
    let y = balanced(4000, 10);
    let c = pair_flip(&y, 10, 0.2, &mut StdRng::seed_from_u64(3)).unwrap();
    mask_consistent(&y, &c);
    within_4_sigma(c.realised_rate(), 0.2, y.len());
    assert!((0..y.len()).all(|i| !c.changed[i] || c.labels[i] == (y[i] + 1) % 10));

    let c = background_flip(&y, 10, 0.4, 0, &mut StdRng::seed_from_u64(4)).unwrap();
    mask_consistent(&y, &c);
    within_4_sigma(c.realised_rate(), 0.4 * 0.9, y.len()); // class-0 rows cannot change
    assert!((0..y.len()).all(|i| !c.changed[i] || c.labels[i] == 0));

    let c = cifar10_asymmetric(&y, 0.4, &mut StdRng::seed_from_u64(5)).unwrap();
    mask_consistent(&y, &c);
    within_4_sigma(c.realised_rate(), 0.4 * 0.5, y.len()); // 5 of 10 classes flip
    let map = [(9, 1), (2, 0), (4, 7), (3, 5), (5, 3)];
    for i in 0..y.len() {
        if c.changed[i] {
            assert!(
                map.contains(&(y[i], c.labels[i])),
                "{} -> {}",
                y[i],
                c.labels[i]
            );
        }
    }
    for (from, _) in map {
        let rows: Vec<usize> = (0..y.len()).filter(|&i| y[i] == from).collect();
        let r = rows.iter().filter(|&&i| c.changed[i]).count() as f64 / rows.len() as f64;
        within_4_sigma(r, 0.4, rows.len());
    }
}

#[test]
fn noise_is_seeded_and_rates_validated() {
    let y = balanced(100, 10);
    let a = uniform_other(&y, 10, 0.5, &mut StdRng::seed_from_u64(9)).unwrap();
    let b = uniform_other(&y, 10, 0.5, &mut StdRng::seed_from_u64(9)).unwrap();
    let c = uniform_other(&y, 10, 0.5, &mut StdRng::seed_from_u64(10)).unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_eq!(
        uniform_other(&y, 10, 0.0, &mut StdRng::seed_from_u64(0))
            .unwrap()
            .num_changed(),
        0
    );
    assert_eq!(
        uniform_other(&y, 10, 1.0, &mut StdRng::seed_from_u64(0))
            .unwrap()
            .num_changed(),
        y.len()
    );
    assert!(uniform_other(&y, 10, 1.5, &mut StdRng::seed_from_u64(0)).is_err());
    assert!(pair_flip(&y, 10, f64::NAN, &mut StdRng::seed_from_u64(0)).is_err());
    assert!(uniform_any(&y, 5, 0.1, &mut StdRng::seed_from_u64(0)).is_err()); // label 9 ≥ 5
}

#[test]
fn long_tail_profile_matches_cifar_lt() {
    // CIFAR-10-LT, IF 100 (Cao et al.): 12,406 images.
    let p = long_tail_profile(5000, 10, 100.0);
    assert_eq!(p, vec![5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]);
    assert_eq!(p.iter().sum::<usize>(), 12_406);
    // CIFAR-100-LT, IF 100: 10,847 images; IF 10 (CIFAR-10): 20,431.
    assert_eq!(
        long_tail_profile(500, 100, 100.0).iter().sum::<usize>(),
        10_847
    );
    assert_eq!(
        long_tail_profile(5000, 10, 10.0).iter().sum::<usize>(),
        20_431
    );
    for (c, &n) in p.iter().enumerate() {
        assert_eq!(
            n,
            (5000.0 * 100f64.powf(-(c as f64) / 9.0)).floor() as usize
        );
    }
    assert_eq!(
        step_profile(5000, 10, 10.0),
        vec![5000, 5000, 5000, 5000, 5000, 500, 500, 500, 500, 500]
    );
}

#[test]
fn long_tail_and_step_indices_realise_the_profile() {
    let y = balanced(5000, 10);
    let idx = long_tail_indices(&y, 10, 100.0, &mut StdRng::seed_from_u64(0)).unwrap();
    let sub: Vec<u32> = idx.iter().map(|&i| y[i]).collect();
    assert_eq!(
        zoo_data::class_counts(&sub, 10),
        long_tail_profile(5000, 10, 100.0)
    );
    assert!(idx.windows(2).all(|w| w[0] < w[1]), "sorted, no repeats");
    let idx = step_imbalance(&y, 10, 10.0, &mut StdRng::seed_from_u64(0)).unwrap();
    let sub: Vec<u32> = idx.iter().map(|&i| y[i]).collect();
    assert_eq!(
        zoo_data::class_counts(&sub, 10),
        step_profile(5000, 10, 10.0)
    );
    assert!(long_tail_indices(&y, 10, 0.5, &mut StdRng::seed_from_u64(0)).is_err());
}

#[test]
fn mnist_4v9_counts_and_relabel() {
    let y: Vec<u32> = (0..60_000).map(|i| (i % 10) as u32).collect();
    let (idx, bin) = mnist_4v9(&y, 5000, 0.995, &mut StdRng::seed_from_u64(0)).unwrap();
    assert_eq!(idx.len(), 5000);
    assert_eq!(bin.iter().filter(|&&b| b == 1).count(), 4975);
    for (k, &i) in idx.iter().enumerate() {
        assert!(y[i] == 4 || y[i] == 9);
        assert_eq!(bin[k], u32::from(y[i] == 9));
    }
    let (ti, tb) = relabel_4v9(&y);
    assert_eq!(ti.len(), 12_000);
    assert_eq!(tb.iter().sum::<u32>(), 6000);
    assert!(mnist_4v9(&y, 5000, 1.2, &mut StdRng::seed_from_u64(0)).is_err());
}

#[test]
fn specs_parse_and_reject() {
    assert_eq!(
        "uniform:0.4".parse::<NoiseSpec>().unwrap(),
        NoiseSpec::UniformOther(0.4)
    );
    assert_eq!(
        "uniform_any:0.6".parse::<NoiseSpec>().unwrap(),
        NoiseSpec::UniformAny(0.6)
    );
    assert_eq!(
        "pair:0.2".parse::<NoiseSpec>().unwrap(),
        NoiseSpec::Pair(0.2)
    );
    assert_eq!(
        "background:0.4".parse::<NoiseSpec>().unwrap(),
        NoiseSpec::Background {
            rate: 0.4,
            class: 0
        }
    );
    assert_eq!(
        "background:0.4:3".parse::<NoiseSpec>().unwrap(),
        NoiseSpec::Background {
            rate: 0.4,
            class: 3
        }
    );
    assert_eq!(
        "asym:0.4".parse::<NoiseSpec>().unwrap(),
        NoiseSpec::Cifar10Asym(0.4)
    );
    assert_eq!("none".parse::<NoiseSpec>().unwrap(), NoiseSpec::None);
    for bad in [
        "uniform:1.5",
        "uniform:-0.1",
        "uniform:x",
        "uniform",
        "gauss:0.1",
        "pair:0.1:2",
        "uniform:nan",
    ] {
        let e = bad.parse::<NoiseSpec>().unwrap_err();
        assert!(format!("{e:#}").contains(bad), "{bad}: {e:#}");
    }
    assert!(NoiseSpec::Cifar10Asym(0.4).validate(100).is_err());
    assert!(NoiseSpec::Background {
        rate: 0.1,
        class: 10
    }
    .validate(10)
    .is_err());
    assert_eq!(
        "longtail:100".parse::<ImbalanceSpec>().unwrap(),
        ImbalanceSpec::LongTail(100.0)
    );
    assert_eq!(
        "step:10".parse::<ImbalanceSpec>().unwrap(),
        ImbalanceSpec::Step(10.0)
    );
    for bad in ["longtail:0.5", "longtail", "step:inf", "zipf:2"] {
        assert!(bad.parse::<ImbalanceSpec>().is_err(), "{bad}");
    }
    for s in [
        "uniform:0.4",
        "uniform_any:0.6",
        "pair:0.2",
        "background:0.4:0",
        "asym:0.4",
    ] {
        assert_eq!(s.parse::<NoiseSpec>().unwrap().to_string(), s);
    }
}
