//! The distillation objective as the `distill` binary uses it: its value against a hand
//! computation, and the gradient scale that the `T²` factor is there to fix.

use candle_core::{Device, Tensor, Var};
use rand::{rngs::StdRng, Rng, SeedableRng};
use zoo_models::loss::{distill_kl, kd_loss};

fn t2(rows: &[[f64; 3]]) -> Tensor {
    let flat: Vec<f64> = rows.iter().flatten().copied().collect();
    Tensor::from_vec(flat, (rows.len(), 3), &Device::Cpu).unwrap()
}

/// softmax(z/T) in plain f64.
fn softmax(z: &[f64], t: f64) -> Vec<f64> {
    let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = z.iter().map(|v| ((v - m) / t).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

#[test]
fn kd_loss_matches_hand_computed_value() {
    // Two examples, three classes, T = 2, α = 0.7.
    // Row 1: teacher/T = [1.5, 1.0, 0.5], student/T = [0.5, 1.0, 1.5] (mirror images), so
    //   KL₁ = Σ p (log p − log q) with p = softmax([1.5,1,.5]) = [.5065, .3072, .1863] and q its
    //   reverse: KL₁ = (.5065 − .1863)·(1.5 − 0.5) = 0.3202 (the log-normalisers cancel).
    // Row 2: teacher/T = [0, 2, −1], student/T = [.25, −.5, 1] gives KL₂ = 1.35505.
    // batchmean KL = 0.837602148; CE at T = 1 with labels [2, 1]: 1.824458631.
    // loss = 0.7·4·0.837602148 + 0.3·1.824458631 = 2.892623604.
    let s = t2(&[[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]]);
    let t = t2(&[[3.0, 2.0, 1.0], [0.0, 4.0, -2.0]]);
    let y = Tensor::new(&[2u32, 1], &Device::Cpu).unwrap();
    let kl = distill_kl(&s, &t, 2.0).unwrap().to_scalar::<f64>().unwrap();
    assert!((kl - 0.837_602_148_108_949_3).abs() < 1e-12, "KL {kl}");
    let row1 = 0.506_480_391_06 - 0.186_323_723_23;
    let p = softmax(&[3.0, 2.0, 1.0], 2.0);
    assert!((p[0] - p[2] - row1).abs() < 1e-9);
    assert!((kl * 2.0 - row1 - 1.355_047_628).abs() < 1e-8, "row 2");
    let l = kd_loss(&s, &t, &y, 2.0, 0.7)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    assert!((l - 2.892_623_603_870_288_4).abs() < 1e-12, "kd_loss {l}");
    // α = 1: the soft term alone, T² times the KL.
    let l1 = kd_loss(&s, &t, &y, 2.0, 1.0)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    assert!((l1 - 4.0 * kl).abs() < 1e-12);
}

/// ‖∂loss/∂z_s‖ for random logits (batch 16, 10 classes) at temperature `t`.
fn grad_norm(t: f64, with_t2: bool) -> f64 {
    let mut rng = StdRng::seed_from_u64(7);
    let s: Vec<f64> = (0..160).map(|_| rng.random_range(-4.0..4.0)).collect();
    let te: Vec<f64> = (0..160).map(|_| rng.random_range(-6.0..6.0)).collect();
    let s = Var::from_tensor(&Tensor::from_vec(s, (16, 10), &Device::Cpu).unwrap()).unwrap();
    let te = Tensor::from_vec(te, (16, 10), &Device::Cpu).unwrap();
    let y = Tensor::zeros(16, candle_core::DType::U32, &Device::Cpu).unwrap();
    let loss = if with_t2 {
        kd_loss(s.as_tensor(), &te, &y, t, 1.0).unwrap()
    } else {
        distill_kl(s.as_tensor(), &te, t).unwrap()
    };
    let g = loss.backward().unwrap();
    let g = g.get(s.as_tensor()).expect("student logits get a gradient");
    g.sqr()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
        .sqrt()
}

#[test]
fn t_squared_keeps_soft_gradient_scale() {
    // Without T² the soft term's gradient shrinks as 1/T²: doubling T twice divides it by ~16.
    let (g10, g40) = (grad_norm(10.0, false), grad_norm(40.0, false));
    let r = g10 / g40;
    assert!((14.0..17.0).contains(&r), "no-T² ratio {r} (expected ≈ 16)");
    // With T² it is nearly independent of T at high temperature ...
    let (h10, h20, h40) = (
        grad_norm(10.0, true),
        grad_norm(20.0, true),
        grad_norm(40.0, true),
    );
    for (a, b) in [(h10, h40), (h20, h40)] {
        assert!((0.9..1.1).contains(&(a / b)), "with-T² ratio {}", a / b);
    }
    // ... and equals T² times the plain gradient exactly.
    assert!((h20 / grad_norm(20.0, false) - 400.0).abs() < 1e-6);
    // The high-T limit (Hinton et al. 2015, eq. 3-4): ∂/∂z_s ≈ (z_s − z_t)/(C·n) for centred
    // logits, so the scale is set by the logit gap, not by T.
    assert!(h40 > 0.01 && h40 < 1.0, "{h40}");
}
