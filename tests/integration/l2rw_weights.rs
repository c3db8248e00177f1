//! L2RW's weighting rule: non-negative weights summing to 1, the all-zero guard, and on a toy
//! problem with half the labels flipped, lower weight on the flipped examples.

use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use zoo::reweight::rules::{
    l2rw_example_weights, normalised_weights, proportional_class_weights, AllZero,
};
use zoo_models::models::{Mlp, MlpConfig};
use zoo_models::Classifier;

fn vec1(t: &Tensor) -> Vec<f32> {
    t.to_vec1::<f32>().unwrap()
}

#[test]
fn weights_are_clipped_and_normalised() {
    let g = Tensor::new(&[-2f32, 1.0, -1.0, 0.0, -1.0], &Device::Cpu).unwrap();
    let (w, zero) = normalised_weights(&g, AllZero::ZeroStep).unwrap();
    assert!(!zero);
    // max(−g, 0) = [2, 0, 1, 0, 1], sum 4.
    let expect = [0.5f32, 0.0, 0.25, 0.0, 0.25];
    for (a, b) in vec1(&w).iter().zip(expect) {
        assert!((a - b).abs() < 1e-7, "{:?}", vec1(&w));
    }
}

#[test]
fn all_zero_guard() {
    let g = Tensor::new(&[1f32, 0.0, 3.0], &Device::Cpu).unwrap();
    let (w, zero) = normalised_weights(&g, AllZero::ZeroStep).unwrap();
    assert!(zero);
    assert_eq!(vec1(&w), vec![0.0; 3]);
    let (w, zero) = normalised_weights(&g, AllZero::Uniform).unwrap();
    assert!(zero);
    for x in vec1(&w) {
        assert!((x - 1.0 / 3.0).abs() < 1e-7);
    }
    let bad = Tensor::new(&[f32::NAN, -1.0], &Device::Cpu).unwrap();
    assert!(normalised_weights(&bad, AllZero::ZeroStep).is_err());
}

#[test]
fn proportional_weights_have_mean_one() {
    // 95 nines, 5 fours: 4s get 100/(2·5) = 10, 9s 100/(2·95).
    let w = proportional_class_weights(&[5, 95]);
    assert!((w[0] - 10.0).abs() < 1e-12);
    assert!((w[1] - 100.0 / 190.0).abs() < 1e-12);
    let mean = (5.0 * w[0] + 95.0 * w[1]) / 100.0;
    assert!((mean - 1.0).abs() < 1e-12);
    assert_eq!(proportional_class_weights(&[0, 4]), vec![0.0, 1.0]);
}

/// Two Gaussian blobs in 2-D; `flip` labels of the training batch flipped.
fn blobs(n: usize, flip: &[bool], rng: &mut StdRng) -> (Tensor, Tensor, Vec<u32>) {
    let noise = Normal::new(0.0, 0.7).unwrap();
    let mut x = Vec::new();
    let mut y = Vec::new();
    let mut clean = Vec::new();
    for i in 0..n {
        let c = (i % 2) as u32;
        let centre = if c == 0 { -1.0 } else { 1.0 };
        x.push(centre + noise.sample(rng) as f32);
        x.push(centre + noise.sample(rng) as f32);
        clean.push(c);
        y.push(if flip.get(i).copied().unwrap_or(false) {
            1 - c
        } else {
            c
        });
    }
    (
        Tensor::from_vec(x, (n, 2), &Device::Cpu).unwrap(),
        Tensor::from_vec(y, n, &Device::Cpu).unwrap(),
        clean,
    )
}

#[test]
fn flipped_examples_get_lower_weight() {
    for seed in 0..3u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let model = Mlp::new(MlpConfig::new(&[2, 32, 2]), &mut rng, &Device::Cpu).unwrap();
        // Half of a batch of 100 flipped, chosen at random.
        let mut flip = vec![false; 100];
        let mut k = 0;
        while k < 50 {
            let i = rng.random_range(0..100);
            if !flip[i] {
                flip[i] = true;
                k += 1;
            }
        }
        let (x, y, _) = blobs(100, &flip, &mut rng);
        let (xm, ym, _) = blobs(20, &[], &mut rng);
        let theta = model.store().params();
        let ew = l2rw_example_weights(
            &model,
            &theta,
            (&x, &y),
            (&xm, &ym),
            0.1,
            AllZero::ZeroStep,
            None,
        )
        .unwrap();
        assert!(!ew.all_zero);
        let w = vec1(&ew.weights);
        assert!(w.iter().all(|&v| v >= 0.0), "negative weight: {w:?}");
        let s: f32 = w.iter().sum();
        assert!((s - 1.0).abs() < 1e-5, "weights sum to {s}");
        let mean = |f: bool| {
            let v: Vec<f32> = w
                .iter()
                .zip(&flip)
                .filter(|(_, &fl)| fl == f)
                .map(|(&v, _)| v)
                .collect();
            v.iter().sum::<f32>() / v.len() as f32
        };
        let (wf, wc) = (mean(true), mean(false));
        assert!(
            wf < 0.5 * wc,
            "seed {seed}: flipped mean weight {wf} not well below clean {wc}"
        );
    }
}

/// `n` random 3×6×6 images, labels alternating 0/1, flipped from row `flip_from` on.
fn toy_images(n: usize, flip_from: usize, rng: &mut StdRng) -> zoo_data::ImageDataset {
    let labels = (0..n)
        .map(|i| ((i % 2) as u32 + u32::from(i >= flip_from)) % 2)
        .collect();
    crate::common::random_images(labels, 2, (3, 6), rng)
}

/// During `warmup_steps` an L2RW task takes exactly plain mean-CE steps (same parameters as a
/// plain task after them); after it, L2RW's weighting starts (parameters differ, weights logged).
#[test]
fn warmup_steps_are_plain_then_l2rw_starts() {
    use zoo::l2rw::Method;
    use zoo::runner::{EpochTask, StepMonitor};
    let mut rng = StdRng::seed_from_u64(3);
    let train = toy_images(40, 30, &mut rng);
    let meta = toy_images(8, 8, &mut rng);
    let test = toy_images(8, 8, &mut rng);
    let flagged: Vec<bool> = (0..40).map(|i| i >= 30).collect();
    let opt = crate::reweight_core::toy_opt(4, 10, 2);
    let params_after =
        |method: Method, rounds: usize| -> (Vec<Vec<f32>>, Vec<zoo::runner::Metrics>) {
            let rule = method.rule(AllZero::ZeroStep, &train.class_counts());
            let data = (&train, flagged.as_slice(), &meta, &test);
            let mut task = crate::reweight_core::toy_task(data, &[108, 8, 2], 5, rule, &opt);
            let mut monitor = StepMonitor::detached(0, 0);
            let mut metrics = Vec::new();
            for r in 0..rounds {
                let mut rng = StdRng::seed_from_u64(100 + r as u64);
                metrics.push(task.train_epoch(r, &mut rng, &mut monitor).unwrap());
            }
            (crate::reweight_core::params(&task), metrics)
        };
    let (plain1, _) = params_after(Method::Plain, 1);
    let (l2rw1, m1) = params_after(Method::L2rw, 1);
    assert_eq!(plain1, l2rw1, "warm-up steps must be plain mean-CE steps");
    assert!(
        m1[0].get("weight_ess").is_none(),
        "no weighted step in warm-up"
    );
    let (plain2, _) = params_after(Method::Plain, 2);
    let (l2rw2, m2) = params_after(Method::L2rw, 2);
    assert_ne!(
        plain2, l2rw2,
        "L2RW must weight the steps after the warm-up"
    );
    let ess = m2[1]
        .get("weight_ess")
        .expect("weights logged after warm-up");
    assert!(
        ess > 0.0 && ess <= 1.0 + 1e-9,
        "effective sample size fraction {ess}"
    );
}
