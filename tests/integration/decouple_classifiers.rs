//! Stage-2 classifiers of Kang et al. (2020) on hand-made features: τ-normalisation, NCM, LWS,
//! cRT, and the many/medium/few-shot evaluation.

use candle_core::{DType, Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use zoo::decouple::{
    evaluate, extract_features, lws_logits, row_norms, tau_normalize, train_crt, train_lws,
    HeadTraining, LinearHead, Ncm, NcmMetric,
};
use zoo_data::{ImageDataset, Normalize};
use zoo_models::metrics::Predictions;
use zoo_models::models::{ResNetCifar, ResNetCifarConfig};
use zoo_models::Classifier;

fn t2(rows: &[Vec<f32>]) -> Tensor {
    let (r, c) = (rows.len(), rows[0].len());
    Tensor::from_vec(rows.concat(), (r, c), &Device::Cpu).unwrap()
}

fn mat(t: &Tensor) -> Vec<Vec<f32>> {
    t.to_vec2::<f32>().unwrap()
}

#[test]
fn tau_zero_is_identity_and_tau_one_equalises_norms() {
    let w = t2(&[
        vec![3.0, 4.0],
        vec![0.0, 0.5],
        vec![-1.0, 0.0],
        vec![0.0, 0.0],
    ]);
    assert_eq!(mat(&tau_normalize(&w, 0.0).unwrap()), mat(&w));
    let unit = tau_normalize(&w, 1.0).unwrap();
    let n = row_norms(&unit).unwrap();
    for (i, &x) in n[..3].iter().enumerate() {
        assert!((x - 1.0).abs() < 1e-6, "row {i}: norm {x}");
    }
    assert_eq!(n[3], 0.0, "a zero row stays zero (no NaN)");
    assert_eq!(mat(&unit)[0], vec![0.6, 0.8]);
    // τ = ½: ‖w̃_i‖ = ‖w_i‖^½ (5 → √5, 0.5 → √0.5).
    let half = row_norms(&tau_normalize(&w, 0.5).unwrap()).unwrap();
    assert!((half[0] - 5f64.sqrt()).abs() < 1e-5, "{half:?}");
    assert!((half[1] - 0.5f64.sqrt()).abs() < 1e-6, "{half:?}");
    // The τ-normalised head drops the bias, as Kang et al.'s code does.
    let head = LinearHead {
        weight: w.clone(),
        bias: Some(Tensor::new(&[10f32, 0.0, 0.0, 0.0], &Device::Cpu).unwrap()),
    };
    let x = t2(&[vec![1.0, 1.0]]);
    assert_eq!(
        mat(&head.tau_normalized(0.0).unwrap().logits(&x).unwrap()),
        vec![vec![7.0, 0.5, -1.0, 0.0]]
    );
}

#[test]
fn ncm_on_separable_features_is_exact() {
    // Three classes around distinct directions, different sizes (long tail), small noise.
    let mut rng = StdRng::seed_from_u64(0);
    let centres = [[5.0f32, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 5.0]];
    let sizes = [50usize, 10, 3];
    let (mut rows, mut labels) = (Vec::new(), Vec::new());
    for (c, &n) in sizes.iter().enumerate() {
        for _ in 0..n {
            rows.push(
                centres[c]
                    .iter()
                    .map(|&m| m + rng.random_range(-0.5f32..0.5))
                    .collect::<Vec<f32>>(),
            );
            labels.push(c as u32);
        }
    }
    let f = t2(&rows);
    let ncm = Ncm::fit(&f, &labels, 3).unwrap();
    // The means are the class averages, computed here by hand.
    let means = mat(&ncm.means);
    for (c, mean) in means.iter().enumerate() {
        for (d, &got) in mean.iter().enumerate() {
            let v: Vec<f32> = rows
                .iter()
                .zip(&labels)
                .filter(|(_, &l)| l as usize == c)
                .map(|(r, _)| r[d])
                .collect();
            let m = v.iter().sum::<f32>() / v.len() as f32;
            assert!((got - m).abs() < 1e-5, "mean[{c}][{d}]");
        }
    }
    let y = Tensor::from_vec(labels.clone(), labels.len(), &Device::Cpu).unwrap();
    for metric in [NcmMetric::Cosine, NcmMetric::Euclidean] {
        let p = Predictions::from_logits(&ncm.logits(&f, metric).unwrap(), &y).unwrap();
        assert_eq!(p.error_count(), 0, "{metric:?}");
    }
    // Euclidean scores are minus the distances: a point at the class-0 mean scores 0 there.
    let at_mean = t2(&[means[0].clone()]);
    let s = mat(&ncm.logits(&at_mean, NcmMetric::Euclidean).unwrap());
    assert!(s[0][0].abs() < 1e-3 && s[0][1] < -4.0, "{s:?}");
    assert!(
        Ncm::fit(&f, &labels, 4).is_err(),
        "an empty class must be an error"
    );
}

fn tiny_images(n: usize, num_classes: usize, rng: &mut StdRng) -> ImageDataset {
    let labels = (0..n).map(|i| (i % num_classes) as u32).collect();
    crate::common::random_images(labels, num_classes, (3, 32), rng)
}

#[test]
fn lws_leaves_the_representation_untouched() {
    let dev = Device::Cpu;
    let mut rng = StdRng::seed_from_u64(1);
    let net = ResNetCifar::new(ResNetCifarConfig::new(8, 3), &mut rng, &dev).unwrap();
    let mut ds = tiny_images(24, 3, &mut rng);
    // A long tail: 16 / 6 / 2 images.
    ds.labels = (0..24)
        .map(|i| {
            if i < 16 {
                0
            } else if i < 22 {
                1
            } else {
                2
            }
        })
        .collect();
    let norm = Normalize::unit(3);
    let before = net.store().state_dict().unwrap();
    let feats = extract_features(&net, &ds, &norm, 8, &dev).unwrap();
    let p = net.store().params();
    let head = LinearHead {
        weight: p.get("linear.weight").unwrap().detach(),
        bias: Some(p.get("linear.bias").unwrap().detach()),
    };
    let w0 = mat(&head.weight);
    let cfg = HeadTraining {
        epochs: 20,
        batch_size: 8,
        lr: 0.5,
        momentum: 0.9,
        weight_decay: 0.0,
    };
    let scales = train_lws(&feats, &ds.labels, &head, &cfg, &mut rng).unwrap();
    // Backbone, BN buffers and head: bit-identical; features unchanged.
    let after = net.store().state_dict().unwrap();
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    for (k, v) in &before {
        let a = v.flatten_all().unwrap().to_dtype(DType::F64).unwrap();
        let b = after[k]
            .flatten_all()
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap();
        assert_eq!(
            a.to_vec1::<f64>().unwrap(),
            b.to_vec1::<f64>().unwrap(),
            "{k} changed"
        );
    }
    assert_eq!(mat(&head.weight), w0);
    let again = extract_features(&net, &ds, &norm, 8, &dev).unwrap();
    assert_eq!(mat(&feats), mat(&again));
    // The scales did learn something, and LWS logits are the joint logits scaled per class.
    let s = scales.to_vec1::<f32>().unwrap();
    assert_eq!(s.len(), 3);
    assert!(
        s.iter().any(|&x| (x - 1.0).abs() > 1e-3),
        "scales stayed at 1: {s:?}"
    );
    let z = mat(&head.logits(&feats).unwrap());
    let zl = mat(&lws_logits(&head, &scales, &feats).unwrap());
    for (r, rl) in z.iter().zip(&zl) {
        for c in 0..3 {
            assert!((r[c] * s[c] - rl[c]).abs() < 1e-4);
        }
    }
}

#[test]
fn crt_learns_a_separable_problem_and_balances_the_tail() {
    // 1-d features: class 0 (many) around −1, class 1 (few) around +1. cRT's class-balanced
    // training must classify both correctly.
    let mut rng = StdRng::seed_from_u64(2);
    let (mut rows, mut labels) = (Vec::new(), Vec::new());
    for i in 0..105 {
        let c = u32::from(i >= 100);
        let m = if c == 0 { -1.0 } else { 1.0 };
        rows.push(vec![m + rng.random_range(-0.3f32..0.3), 1.0]);
        labels.push(c);
    }
    let f = t2(&rows);
    let cfg = HeadTraining {
        epochs: 30,
        batch_size: 16,
        lr: 0.5,
        momentum: 0.9,
        weight_decay: 0.0,
    };
    let head = train_crt(&f, &labels, 2, &cfg, &mut rng).unwrap();
    let y = Tensor::from_vec(labels.clone(), labels.len(), &Device::Cpu).unwrap();
    let p = Predictions::from_logits(&head.logits(&f).unwrap(), &y).unwrap();
    assert_eq!(p.error_count(), 0);
}

#[test]
fn shot_groups_and_halves_follow_the_paper() {
    // Four classes with 150, 100, 20, 19 training images: many = {0}, medium = {1, 2},
    // few = {3}; head half {0, 1}, tail half {2, 3}.
    let counts = [150, 100, 20, 19];
    // Test: two images per class; predictions right for class 0 (both), class 1 (one),
    // class 2 (none), class 3 (both).
    let labels = vec![0u32, 0, 1, 1, 2, 2, 3, 3];
    let pred = [0usize, 0, 1, 0, 0, 1, 3, 3];
    let mut logits = vec![0f32; 8 * 4];
    for (i, &p) in pred.iter().enumerate() {
        logits[i * 4 + p] = 5.0;
    }
    let z = Tensor::from_vec(logits, (8, 4), &Device::Cpu).unwrap();
    let y = Tensor::from_vec(labels, 8, &Device::Cpu).unwrap();
    let p = Predictions::from_logits(&z, &y).unwrap();
    let e = evaluate(&p, &p, &counts).unwrap();
    assert_eq!(e.accuracy, 62.5);
    assert_eq!(e.many, Some(100.0));
    assert_eq!(e.medium, Some(25.0));
    assert_eq!(e.few, Some(100.0));
    assert_eq!(e.head_half, 75.0);
    assert_eq!(e.tail_half, 50.0);
    assert_eq!(e.per_class, vec![100.0, 50.0, 0.0, 100.0]);
    // No few-shot class: the group is reported as absent, not as 0.
    let e = evaluate(&p, &p, &[500, 400, 300, 200]).unwrap();
    assert_eq!((e.medium, e.few), (None, None));
}
