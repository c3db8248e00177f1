//! The objectives of the `confidence_penalty` binary against values computed by hand (Python
//! `math`, f64): label smoothing (uniform, unigram), the plain, annealed and thresholded
//! confidence penalties, and their gradients with respect to the logits.
//!
//! One example, logits z = (1, 2, 0), label 1:
//! p = softmax(z) = (0.244728…, 0.665241…, 0.090031…), CE = −ln p₁ = 0.407606…,
//! H(p) = 0.832396….  ∂CE/∂z = p − onehot; ∂H/∂z_j = −p_j (ln p_j + H).

use candle_core::{Device, Tensor, Var};
use zoo::confidence_penalty::method::{annealed_schedule, Hyper, Method, Objective};
use zoo_models::loss::BetaSchedule;

const P: [f64; 3] = [0.24472847105479764, 0.6652409557748219, 0.09003057317038046];
const CE: f64 = 0.4076059644443803;
const H: f64 = 0.8323955818399389;

fn z() -> Var {
    Var::new(&[[1.0f64, 2.0, 0.0]], &Device::Cpu).unwrap()
}

fn y() -> Tensor {
    Tensor::new(&[1u32], &Device::Cpu).unwrap()
}

/// Loss value and gradient w.r.t. the logits of `obj` at `step`.
fn eval(obj: &Objective, step: usize) -> (f64, Vec<f64>) {
    let z = z();
    let l = obj.loss(z.as_tensor(), &y(), step).unwrap();
    let g = l.backward().unwrap();
    let grad = g.get(z.as_tensor()).expect("logits get a gradient");
    (
        l.to_scalar::<f64>().unwrap(),
        grad.flatten_all().unwrap().to_vec1::<f64>().unwrap(),
    )
}

fn close(a: f64, b: f64, what: &str) {
    assert!((a - b).abs() < 1e-12, "{what}: {a} vs {b}");
}

fn close_vec(a: &[f64], b: &[f64], what: &str) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        close(*x, *y, what);
    }
}

fn objective(method: &str, hyper: Hyper, total_steps: usize, frac: f64) -> Objective {
    let m: Method = method.parse().unwrap();
    Objective::new(m, &hyper, &[1, 2, 7], total_steps, frac).unwrap()
}

fn ce_grad() -> Vec<f64> {
    vec![P[0], P[1] - 1.0, P[2]]
}

/// ∂(−βH)/∂z_j = β p_j (ln p_j + H).
fn penalty_grad(beta: f64) -> Vec<f64> {
    P.iter().map(|&p| beta * p * (p.ln() + H)).collect()
}

#[test]
fn cross_entropy_baseline() {
    let (l, g) = eval(&objective("none", Hyper::default(), 10, 1.0), 3);
    close(l, CE, "CE");
    close_vec(&g, &ce_grad(), "∂CE/∂z");
}

#[test]
fn label_smoothing_uniform_and_unigram() {
    let h = Hyper {
        eps: Some(0.2),
        ..Default::default()
    };
    // q = 0.8·onehot + 0.2/3; loss = −Σ q ln p; gradient p − q.
    let (l, g) = eval(&objective("ls_uniform", h, 10, 1.0), 0);
    close(l, 0.6076059644443803, "LS uniform");
    close_vec(
        &g,
        &[
            0.17806180438813096,
            -0.2014257108918448,
            0.023363906503713797,
        ],
        "∂LS uniform/∂z",
    );
    // Unigram prior from class counts (1, 2, 7): u = (0.1, 0.2, 0.7).
    let (l, g) = eval(&objective("ls_unigram", h, 10, 1.0), 0);
    close(l, 0.7076059644443803, "LS unigram");
    close_vec(
        &g,
        &[
            0.22472847105479765,
            -0.17475904422517818,
            -0.04996942682961952,
        ],
        "∂LS unigram/∂z",
    );
    // Dropout does not change the loss.
    let (l2, _) = eval(&objective("dropout+ls_unigram", h, 10, 1.0), 0);
    close(l2, l, "dropout+LS unigram");
}

#[test]
fn plain_confidence_penalty() {
    let h = Hyper {
        beta: Some(0.6),
        ..Default::default()
    };
    let (l, g) = eval(&objective("cp", h, 10, 1.0), 7);
    close(l, CE - 0.6 * H, "CE − βH");
    close(l, -0.09183138465958302, "CE − βH (hand)");
    close_vec(
        &g,
        &[
            0.16026625657301957,
            -0.16520657357751273,
            0.004940317004493183,
        ],
        "∂(CE − βH)/∂z",
    );
}

#[test]
fn annealed_penalty_ramps_linearly_then_holds() {
    // 100 steps, ramp over the first half: β(t) = 1.2 · min(1, t / 50).
    let h = Hyper {
        beta: Some(1.2),
        ..Default::default()
    };
    let obj = objective("cp_annealed", h, 100, 0.5);
    assert_eq!(
        annealed_schedule(1.2, 100, 0.5),
        BetaSchedule::Linear {
            start: 0.0,
            end: 1.2,
            steps: 50
        }
    );
    for (step, beta) in [
        (0, 0.0),
        (10, 0.24),
        (25, 0.6),
        (50, 1.2),
        (99, 1.2),
        (500, 1.2),
    ] {
        close(obj.beta_at(step), beta, &format!("β at step {step}"));
        let (l, g) = eval(&obj, step);
        close(l, CE - beta * H, &format!("loss at step {step}"));
        let want: Vec<f64> = ce_grad()
            .iter()
            .zip(penalty_grad(beta))
            .map(|(a, b)| a + b)
            .collect();
        close_vec(&g, &want, &format!("gradient at step {step}"));
    }
    // Step 0 is plain cross-entropy: the penalty is off while the net learns the task.
    let (l0, _) = eval(&obj, 0);
    close(l0, CE, "annealed at step 0");
    // fraction 0: the full β from the first step.
    let now = objective("cp_annealed", h, 100, 0.0);
    close(now.beta_at(0), 1.2, "no ramp");
}

#[test]
fn thresholded_penalty_is_a_hinge_on_entropy() {
    let beta = 0.5;
    // Γ above H(p) = 0.832…: penalised, β(Γ − H); same gradient as the plain penalty.
    let h = Hyper {
        beta: Some(beta),
        threshold: Some(1.0),
        ..Default::default()
    };
    let (l, g) = eval(&objective("cp_thresholded", h, 10, 1.0), 0);
    close(l, CE + beta * (1.0 - H), "CE + β(Γ − H)");
    let want: Vec<f64> = ce_grad()
        .iter()
        .zip(penalty_grad(beta))
        .map(|(a, b)| a + b)
        .collect();
    close_vec(&g, &want, "gradient below the threshold");
    // Γ below H(p): the output is not confident enough to be penalised; no penalty, no gradient from it.
    let h = Hyper {
        threshold: Some(0.5),
        ..h
    };
    let (l, g) = eval(&objective("cp_thresholded", h, 10, 1.0), 0);
    close(l, CE, "above the threshold: plain CE");
    close_vec(&g, &ce_grad(), "above the threshold: CE gradient");
}

#[test]
fn missing_hyper_parameters_are_errors() {
    for m in ["ls_uniform", "cp", "cp_annealed", "cp_thresholded"] {
        let method: Method = m.parse().unwrap();
        assert!(
            Objective::new(method, &Hyper::default(), &[1, 1, 1], 10, 1.0).is_err(),
            "{m} built without its hyper-parameters"
        );
    }
    let only_beta = Hyper {
        beta: Some(1.0),
        ..Default::default()
    };
    assert!(Objective::new("cp_thresholded".parse().unwrap(), &only_beta, &[1], 10, 1.0).is_err());
}

/// The paper's link (§3.2): label smoothing adds KL(u ‖ p) to the cross-entropy and the
/// confidence penalty adds KL(p ‖ u), the other direction, each up to the constant ln C:
/// LS_ε = (1 − ε) CE + ε (KL(u ‖ p) + ln C) and CP_β = CE + β (KL(p ‖ u) − ln C).
/// Checked on random logits against KLs computed here from the softmax in f64.
#[test]
fn label_smoothing_and_the_penalty_are_the_two_directions_of_kl_to_uniform() {
    use rand::{Rng, SeedableRng};
    let (n, c) = (16usize, 10usize);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let logits: Vec<f64> = (0..n * c).map(|_| rng.random_range(-4.0..4.0)).collect();
    let labels: Vec<u32> = (0..n).map(|_| rng.random_range(0..c as u32)).collect();
    let (mut ce, mut kl_up, mut kl_pu) = (0.0, 0.0, 0.0);
    for (row, &label) in logits.chunks(c).zip(&labels) {
        let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let z: f64 = row.iter().map(|v| (v - m).exp()).sum();
        let p: Vec<f64> = row.iter().map(|v| (v - m).exp() / z).collect();
        let u = 1.0 / c as f64;
        ce -= p[label as usize].ln() / n as f64;
        kl_up += p.iter().map(|pj| u * (u / pj).ln()).sum::<f64>() / n as f64;
        kl_pu += p.iter().map(|pj| pj * (pj / u).ln()).sum::<f64>() / n as f64;
    }
    let ln_c = (c as f64).ln();
    let z = Tensor::from_vec(logits, (n, c), &Device::Cpu).unwrap();
    let y = Tensor::new(labels.as_slice(), &Device::Cpu).unwrap();
    let counts = vec![1usize; c];
    let loss = |method: &str, hyper: Hyper| -> f64 {
        let m: Method = method.parse().unwrap();
        let obj = Objective::new(m, &hyper, &counts, 10, 1.0).unwrap();
        obj.loss(&z, &y, 0).unwrap().to_scalar::<f64>().unwrap()
    };
    let plain = loss("none", Hyper::default());
    assert!((plain - ce).abs() < 1e-12, "CE {plain} vs {ce}");
    for eps in [0.1, 0.4] {
        let ls = loss(
            "ls_uniform",
            Hyper {
                eps: Some(eps),
                ..Default::default()
            },
        );
        let want = (1.0 - eps) * ce + eps * (kl_up + ln_c);
        assert!((ls - want).abs() < 1e-12, "LS ε={eps}: {ls} vs {want}");
    }
    for beta in [0.5, 2.0] {
        let cp = loss(
            "cp",
            Hyper {
                beta: Some(beta),
                ..Default::default()
            },
        );
        let want = ce + beta * (kl_pu - ln_c);
        assert!((cp - want).abs() < 1e-12, "CP β={beta}: {cp} vs {want}");
    }
    // The two directions differ: the link is not a tautology of the test.
    assert!((kl_up - kl_pu).abs() > 1e-3, "{kl_up} vs {kl_pu}");
}
