//! Losses against values computed by hand (python3, math module) and gradients against central
//! finite differences in f64.

use candle_core::{DType, Device, Result, Tensor, Var};
use zoo_models::loss::{self, BetaSchedule, Reduction, SmoothingPrior};

const Z: [[f64; 3]; 2] = [[1.0, 2.0, 3.0], [0.5, -1.0, 0.2]];
const Y: [u32; 2] = [1, 0];
const TEACHER: [[f64; 3]; 2] = [[0.5, 0.0, 2.0], [2.0, 1.0, 0.0]];

fn logits() -> Tensor {
    Tensor::new(&Z, &Device::Cpu).unwrap()
}
fn labels() -> Tensor {
    Tensor::new(&Y, &Device::Cpu).unwrap()
}
fn v1(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}
fn s(t: &Tensor) -> f64 {
    t.to_dtype(DType::F64).unwrap().to_scalar().unwrap()
}
fn close(a: &[f64], b: &[f64], tol: f64) {
    assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
    for (x, y) in a.iter().zip(b) {
        assert!(
            (x - y).abs() <= tol * (1.0 + y.abs()),
            "{a:?} vs {b:?} (tol {tol})"
        );
    }
}

/// Central finite differences of a scalar function of the logits, step 1e-5.
fn fd_grad(f: &dyn Fn(&Tensor) -> Result<Tensor>, z: &[f64], shape: (usize, usize)) -> Vec<f64> {
    let h = 1e-5;
    (0..z.len())
        .map(|i| {
            let mut zp = z.to_vec();
            zp[i] += h;
            let mut zm = z.to_vec();
            zm[i] -= h;
            let tp = Tensor::from_vec(zp, shape, &Device::Cpu).unwrap();
            let tm = Tensor::from_vec(zm, shape, &Device::Cpu).unwrap();
            (s(&f(&tp).unwrap()) - s(&f(&tm).unwrap())) / (2.0 * h)
        })
        .collect()
}

/// Checks backward() of `f` against finite differences at Z.
fn check_grad(f: &dyn Fn(&Tensor) -> Result<Tensor>) {
    let z: Vec<f64> = Z.iter().flatten().copied().collect();
    let var = Var::from_tensor(&logits()).unwrap();
    let out = f(var.as_tensor()).unwrap();
    let g = out.backward().unwrap();
    let analytic = v1(g
        .get(var.as_tensor())
        .expect("no gradient reached the logits"));
    let numeric = fd_grad(f, &z, (2, 3));
    close(&analytic, &numeric, 1e-7);
}

#[test]
fn cross_entropy_values_and_reductions() -> Result<()> {
    let per = loss::cross_entropy(&logits(), &labels(), Reduction::None)?;
    close(&v1(&per), &[1.4076059644443806, 0.6749569269138376], 1e-12);
    let mean = loss::cross_entropy(&logits(), &labels(), Reduction::Mean)?;
    close(&[s(&mean)], &[1.041281445679109], 1e-12);
    let sum = loss::cross_entropy(&logits(), &labels(), Reduction::Sum)?;
    close(&[s(&sum)], &[2.082562891358218], 1e-12);
    // Agrees with candle's own (gather-based) cross-entropy at first order.
    let reference = candle_nn::loss::cross_entropy(&logits(), &labels())?;
    close(&[s(&mean)], &[s(&reference)], 1e-12);
    // f32 works too.
    let m32 = loss::cross_entropy(&logits().to_dtype(DType::F32)?, &labels(), Reduction::Mean)?;
    assert_eq!(m32.dtype(), DType::F32);
    close(&[s(&m32)], &[1.041281445679109], 1e-6);
    check_grad(&|z| loss::cross_entropy(z, &labels(), Reduction::Mean));
    Ok(())
}

#[test]
fn cross_entropy_is_exact_at_second_order() -> Result<()> {
    // s(z) = Σ (∂CE_sum/∂z)² = Σ (softmax(z) − onehot)²; its gradient needs CE's second derivative.
    let var = Var::from_tensor(&logits())?;
    let ce = loss::cross_entropy(var.as_tensor(), &labels(), Reduction::Sum)?;
    let g = ce.backward()?;
    let gz = g.get(var.as_tensor()).unwrap();
    let sq = gz.sqr()?.sum_all()?;
    let g2 = sq.backward()?;
    let analytic = v1(g2.get(var.as_tensor()).expect(
        "no second-order gradient: is CANDLE_GRAD_DO_NOT_DETACH set (.cargo/config.toml)?",
    ));
    let f = |z: &Tensor| -> Result<Tensor> {
        let p = candle_nn::ops::softmax(z, 1)?;
        let oh = loss::one_hot(&labels(), 3, DType::F64)?;
        (p - oh)?.sqr()?.sum_all()
    };
    let z: Vec<f64> = Z.iter().flatten().copied().collect();
    close(&analytic, &fd_grad(&f, &z, (2, 3)), 1e-7);
    Ok(())
}

#[test]
fn weighted_and_soft_target_ce() -> Result<()> {
    let w = Tensor::new(&[0.5f64, 2.0], &Device::Cpu)?;
    let m = loss::weighted_ce(&logits(), &labels(), &w, Reduction::Mean)?;
    close(&[s(&m)], &[1.0268584180249327], 1e-12);
    let sm = loss::weighted_ce(&logits(), &labels(), &w, Reduction::Sum)?;
    close(&[s(&sm)], &[2.0537168360498654], 1e-12);
    check_grad(&|z| loss::weighted_ce(z, &labels(), &w, Reduction::Mean));

    let q = Tensor::new(&[[0.2f64, 0.3, 0.5], [0.6, 0.1, 0.3]], &Device::Cpu)?;
    let soft = loss::soft_target_ce(&logits(), &q, Reduction::None)?;
    close(&v1(&soft), &[1.1076059644443805, 0.9149569269138376], 1e-12);
    check_grad(&|z| loss::soft_target_ce(z, &q, Reduction::Sum));

    let bad = Tensor::new(&[1.0f64], &Device::Cpu)?;
    assert!(loss::weighted_ce(&logits(), &labels(), &bad, Reduction::Mean).is_err());
    let bad_labels = Tensor::new(&[0u32, 3], &Device::Cpu)?;
    let e = loss::cross_entropy(&logits(), &bad_labels, Reduction::Mean).unwrap_err();
    assert!(e.to_string().contains("out of range"), "{e}");
    Ok(())
}

#[test]
fn kd_loss_values() -> Result<()> {
    let t = Tensor::new(&TEACHER, &Device::Cpu)?;
    let kl = loss::distill_kl(&logits(), &t, 2.0)?;
    close(&[s(&kl)], &[0.059964636163427606], 1e-12);
    let kd = loss::kd_loss(&logits(), &t, &labels(), 2.0, 0.7)?;
    close(&[s(&kd)], &[0.48028541496133004], 1e-12);
    // KL of identical distributions is zero.
    let zero = loss::distill_kl(&logits(), &logits(), 3.0)?;
    assert!(s(&zero).abs() < 1e-14);
    check_grad(&|z| loss::kd_loss(z, &t, &labels(), 2.0, 0.7));
    // The teacher gets no gradient.
    let tv = Var::from_tensor(&t)?;
    let g = loss::kd_loss(&logits(), tv.as_tensor(), &labels(), 2.0, 0.7)?.backward()?;
    assert!(g.get(tv.as_tensor()).is_none());
    assert!(loss::kd_loss(&logits(), &t, &labels(), 0.0, 0.5).is_err());
    assert!(loss::kd_loss(&logits(), &t, &labels(), 2.0, 1.5).is_err());
    Ok(())
}

#[test]
fn kd_gradient_scale_with_and_without_t_squared() -> Result<()> {
    // Zero-mean logits, one example, 3 classes.
    let st = vec![1.0, 2.0, -3.0];
    let tt = [0.5, 0.0, -0.5];
    let student = Var::from_tensor(&Tensor::from_vec(st.clone(), (1, 3), &Device::Cpu)?)?;
    let teacher = Tensor::new(&[tt], &Device::Cpu)?;
    let y = Tensor::new(&[0u32], &Device::Cpu)?;
    let softmax = |z: &[f64], temp: f64| -> Vec<f64> {
        let e: Vec<f64> = z.iter().map(|x| (x / temp).exp()).collect();
        let s: f64 = e.iter().sum();
        e.iter().map(|x| x / s).collect()
    };
    for temp in [1.0, 4.0, 1000.0] {
        let with = loss::kd_loss(student.as_tensor(), &teacher, &y, temp, 1.0)?.backward()?;
        let without = loss::distill_kl(student.as_tensor(), &teacher, temp)?.backward()?;
        let g_with = v1(with.get(student.as_tensor()).unwrap());
        let g_without = v1(without.get(student.as_tensor()).unwrap());
        // ∂KL/∂s = (p_s − p_t)/T exactly; the T² factor multiplies it by T².
        let (ps, pt) = (softmax(&st, temp), softmax(&tt, temp));
        let exact: Vec<f64> = ps.iter().zip(&pt).map(|(a, b)| (a - b) / temp).collect();
        close(&g_without, &exact, 1e-9);
        let scaled: Vec<f64> = exact.iter().map(|g| g * temp * temp).collect();
        close(&g_with, &scaled, 1e-9);
        if temp == 1000.0 {
            // Hinton's high-temperature limit: with T², the gradient → (s − t)/C, independent of T;
            // without it the gradient vanishes like 1/T².
            let limit: Vec<f64> = st.iter().zip(&tt).map(|(a, b)| (a - b) / 3.0).collect();
            close(&g_with, &limit, 2e-3);
            assert!(g_without.iter().all(|g| g.abs() < 1e-6));
        }
    }
    Ok(())
}

#[test]
fn label_smoothing_uniform_and_unigram() -> Result<()> {
    let u = loss::label_smoothing_ce(
        &logits(),
        &labels(),
        0.1,
        &SmoothingPrior::Uniform,
        Reduction::None,
    )?;
    close(&v1(&u), &[1.4076059644443804, 0.7349569269138375], 1e-12);
    let prior = SmoothingPrior::Unigram(vec![0.5, 0.3, 0.2]);
    let g = loss::label_smoothing_ce(&logits(), &labels(), 0.1, &prior, Reduction::None)?;
    close(&v1(&g), &[1.4376059644443806, 0.7259569269138376], 1e-12);
    let zero = loss::label_smoothing_ce(&logits(), &labels(), 0.0, &prior, Reduction::Mean)?;
    close(&[s(&zero)], &[1.041281445679109], 1e-12);
    check_grad(&|z| loss::label_smoothing_ce(z, &labels(), 0.1, &prior, Reduction::Mean));
    assert_eq!(
        SmoothingPrior::unigram_from_counts(&[5, 3, 2])?,
        SmoothingPrior::Unigram(vec![0.5, 0.3, 0.2])
    );
    assert!(SmoothingPrior::unigram_from_counts(&[0, 0]).is_err());
    let bad = SmoothingPrior::Unigram(vec![0.5, 0.6, 0.2]);
    assert!(loss::label_smoothing_ce(&logits(), &labels(), 0.1, &bad, Reduction::Mean).is_err());
    Ok(())
}

#[test]
fn entropy_and_confidence_penalty() -> Result<()> {
    let h = loss::entropy(&logits())?;
    close(&v1(&h), &[0.8323955818399389, 0.9585390779842977], 1e-12);
    // Uniform logits: entropy log C.
    let flat = Tensor::zeros((1, 4), DType::F64, &Device::Cpu)?;
    close(&v1(&loss::entropy(&flat)?), &[4f64.ln()], 1e-12);
    check_grad(&|z| loss::entropy(z)?.sum_all());

    let plain = loss::confidence_penalty(&logits(), &labels(), 0.3, None, Reduction::None)?;
    close(
        &v1(&plain),
        &[1.1578872898923989, 0.3873952035185483],
        1e-12,
    );
    // Γ = 0.95 lies between the two entropies: only the first example is penalised.
    let thr = loss::confidence_penalty(&logits(), &labels(), 0.3, Some(0.95), Reduction::None)?;
    close(&v1(&thr), &[1.4428872898923988, 0.6749569269138376], 1e-12);
    check_grad(&|z| loss::confidence_penalty(z, &labels(), 0.3, None, Reduction::Mean));
    check_grad(&|z| loss::confidence_penalty(z, &labels(), 0.3, Some(0.95), Reduction::Mean));

    let c = BetaSchedule::Constant(0.5);
    assert_eq!(c.beta_at(0), 0.5);
    assert_eq!(c.beta_at(1000), 0.5);
    let lin = BetaSchedule::Linear {
        start: 0.0,
        end: 1.0,
        steps: 4,
    };
    assert_eq!(
        (0..6).map(|t| lin.beta_at(t)).collect::<Vec<_>>(),
        vec![0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    );
    Ok(())
}

#[test]
fn focal_loss() -> Result<()> {
    let f = loss::focal(&logits(), &labels(), 2.0, Reduction::None)?;
    close(&v1(&f), &[0.8029478243641429, 0.16260109927591573], 1e-12);
    let f0 = loss::focal(&logits(), &labels(), 0.0, Reduction::Mean)?;
    close(&[s(&f0)], &[1.041281445679109], 1e-12);
    check_grad(&|z| loss::focal(z, &labels(), 2.0, Reduction::Mean));
    check_grad(&|z| loss::focal(z, &labels(), 0.5, Reduction::Sum));
    assert!(loss::focal(&logits(), &labels(), -1.0, Reduction::Mean).is_err());
    Ok(())
}

#[test]
fn class_balanced() -> Result<()> {
    let w = loss::class_balanced_weights(&[100, 10, 1], 0.9)?;
    close(
        &w,
        &[0.2393292360088335, 0.3674419730958617, 2.3932287908953045],
        1e-12,
    );
    close(&[w.iter().sum::<f64>()], &[3.0], 1e-12);
    // β = 0: equal weights, plain CE.
    close(
        &loss::class_balanced_weights(&[100, 10, 1], 0.0)?,
        &[1.0, 1.0, 1.0],
        1e-12,
    );
    let m = loss::class_balanced_ce(&logits(), &labels(), &w, Reduction::Mean)?;
    close(&[s(&m)], &[0.33937521928705267], 1e-12);
    check_grad(&|z| loss::class_balanced_ce(z, &labels(), &w, Reduction::Mean));
    assert!(loss::class_balanced_weights(&[10, 0], 0.9).is_err());
    assert!(loss::class_balanced_weights(&[10, 3], 1.0).is_err());
    assert!(loss::class_balanced_ce(&logits(), &labels(), &[1.0, 2.0], Reduction::Mean).is_err());
    Ok(())
}
