//! Optimisers against PyTorch's update rules computed by hand (python3) for three steps, and
//! learning-rate schedules against closed forms.

use candle_core::{backprop::GradStore, Device, Result, Tensor};
use zoo_models::optim::{Adam, AdamW, LrSchedule, Optimizer, Sgd};
use zoo_models::ParamStore;

const THETA0: [f64; 2] = [1.0, -2.0];
const GRADS: [[f64; 2]; 3] = [[0.5, 1.0], [-1.0, 0.5], [0.2, 0.2]];

/// A store with `w` = THETA0 and an extra variable `no_grad` that never receives a gradient.
fn store() -> ParamStore {
    let mut s = ParamStore::new(&Device::Cpu);
    s.add_var("w", Tensor::new(&THETA0, &Device::Cpu).unwrap())
        .unwrap();
    s.add_var("no_grad", Tensor::new(&[3.0f64], &Device::Cpu).unwrap())
        .unwrap();
    s
}

fn grads_for(store: &ParamStore, g: &[f64; 2]) -> GradStore {
    let mut gs = GradStore::default();
    let w = store.var("w").unwrap();
    gs.insert(w.as_tensor(), Tensor::new(g, &Device::Cpu).unwrap());
    gs
}

fn w(store: &ParamStore) -> Vec<f64> {
    store.var("w").unwrap().as_tensor().to_vec1().unwrap()
}

fn close(a: &[f64], b: &[f64], tol: f64) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= tol, "{a:?} vs {b:?}");
    }
}

/// Runs three steps and compares every iterate with the hand-computed ones.
fn run(opt: &mut dyn Optimizer, lr: f64, expected: [[f64; 2]; 3]) {
    let s = store();
    for (g, e) in GRADS.iter().zip(expected) {
        opt.step(&s, &grads_for(&s, g), lr).unwrap();
        close(&w(&s), &e, 1e-12);
        assert_eq!(opt.last_skipped(), ["no_grad".to_string()]);
    }
    let untouched: Vec<f64> = s.var("no_grad").unwrap().as_tensor().to_vec1().unwrap();
    assert_eq!(untouched, vec![3.0]);
}

#[test]
fn sgd_matches_pytorch() -> Result<()> {
    run(
        &mut Sgd::new(0.0, false, 0.0)?,
        0.1,
        [[0.95, -2.1], [1.05, -2.15], [1.03, -2.17]],
    );
    run(
        &mut Sgd::new(0.9, false, 0.1)?,
        0.1,
        [
            [0.94, -2.08],
            [0.9765999999999999, -2.1812],
            [0.9797739999999999, -2.270468],
        ],
    );
    run(
        &mut Sgd::new(0.9, true, 0.1)?,
        0.1,
        [
            [0.886, -2.152],
            [1.010566, -2.270912],
            [0.983448646, -2.347153472],
        ],
    );
    assert!(Sgd::new(0.0, true, 0.0).is_err());
    assert!(Sgd::new(-0.1, false, 0.0).is_err());
    Ok(())
}

#[test]
fn adam_and_adamw_match_pytorch() {
    run(
        &mut Adam::new(0.1),
        0.01,
        [
            [0.9900000001666667, -2.009999999875],
            [0.9924819887658624, -2.018882483414848],
            [0.9926279837468459, -2.0257345151085957],
        ],
    );
    run(
        &mut AdamW::new(0.1),
        0.01,
        [
            [0.9890000002, -2.0079999999],
            [0.9916720354238566, -2.015313796170284],
            [0.9923405385380873, -2.021517332373766],
        ],
    );
}

/// Two steps, save the state, restore it into a fresh optimiser, and the third step must equal
/// the uninterrupted run's.
fn resume_equals_continuous(mk: &dyn Fn() -> Box<dyn Optimizer>, lr: f64) {
    let (a, b) = (store(), store());
    let mut o1 = mk();
    let mut o2 = mk();
    for g in &GRADS[..2] {
        o1.step(&a, &grads_for(&a, g), lr).unwrap();
        o2.step(&b, &grads_for(&b, g), lr).unwrap();
    }
    let mut o3 = mk();
    o3.load_state(&o2.state()).unwrap();
    o1.step(&a, &grads_for(&a, &GRADS[2]), lr).unwrap();
    o3.step(&b, &grads_for(&b, &GRADS[2]), lr).unwrap();
    assert_eq!(w(&a), w(&b));
}

#[test]
fn state_round_trip() {
    resume_equals_continuous(&|| Box::new(Sgd::new(0.9, true, 0.1).unwrap()), 0.1);
    resume_equals_continuous(&|| Box::new(Adam::new(0.1)), 0.01);
    resume_equals_continuous(&|| Box::new(AdamW::new(0.1)), 0.01);
    let mut sgd = Sgd::new(0.9, false, 0.0).unwrap();
    let s = store();
    sgd.step(&s, &grads_for(&s, &GRADS[0]), 0.1).unwrap();
    let keys: Vec<String> = sgd.state().into_keys().collect();
    assert_eq!(keys, vec!["momentum_buffer.w".to_string()]);
    let mut adam = Adam::new(0.0);
    adam.step(&s, &grads_for(&s, &GRADS[0]), 0.1).unwrap();
    let keys: Vec<String> = adam.state().into_keys().collect();
    assert_eq!(keys, vec!["exp_avg.w", "exp_avg_sq.w", "step.w"]);
    // Adam state does not load into SGD.
    assert!(sgd.load_state(&adam.state()).is_err());
}

#[test]
fn frozen_variables_are_neither_updated_nor_reported() -> Result<()> {
    let s = store();
    s.set_trainable("no_grad", false)?;
    let mut sgd = Sgd::new(0.0, false, 0.0)?;
    sgd.step(&s, &grads_for(&s, &GRADS[0]), 0.1)?;
    assert!(sgd.last_skipped().is_empty());
    close(&w(&s), &[0.95, -2.1], 1e-12);
    assert!(sgd.step(&s, &grads_for(&s, &GRADS[0]), f64::NAN).is_err());
    Ok(())
}

#[test]
fn lr_schedules() {
    let c = LrSchedule::Constant(0.1);
    assert_eq!(c.lr_at(0), 0.1);
    assert_eq!(c.lr_at(99), 0.1);

    let m = LrSchedule::MultiStep {
        base: 0.1,
        milestones: vec![2, 4],
        gamma: 0.1,
    };
    let got: Vec<f64> = (0..6).map(|t| m.lr_at(t)).collect();
    close(&got, &[0.1, 0.1, 0.01, 0.01, 0.001, 0.001], 1e-15);

    let cos = LrSchedule::Cosine {
        base: 0.1,
        total: 10,
        min: 0.0,
    };
    close(&[cos.lr_at(0)], &[0.1], 1e-15);
    close(&[cos.lr_at(5)], &[0.05], 1e-15);
    // 0.1·(1 + cos(0.3π))/2
    close(
        &[cos.lr_at(3)],
        &[(0.1 + 0.058778525229247314) / 2.0],
        1e-15,
    );
    assert_eq!(cos.lr_at(10), 0.0);
    assert_eq!(cos.lr_at(11), 0.0);

    let warm = LrSchedule::Warmup {
        steps: 5,
        then: Box::new(m.clone()),
    };
    let got: Vec<f64> = (0..6).map(|t| warm.lr_at(t)).collect();
    close(&got, &[0.02, 0.04, 0.006, 0.008, 0.001, 0.001], 1e-15);

    assert!(m.validate().is_ok());
    assert!(LrSchedule::Constant(-1.0).validate().is_err());
    assert!(LrSchedule::MultiStep {
        base: 0.1,
        milestones: vec![4, 2],
        gamma: 0.1
    }
    .validate()
    .is_err());
}

/// The CPU fast path updates variables and momentum buffers in place; it must give exactly the
/// numbers of the tensor-op path (`ops::Backend::Candle`) for every SGD variant, in f32.
#[test]
fn in_place_sgd_is_bit_identical_to_tensor_ops() -> Result<()> {
    use zoo_models::ops::{set_backend, Backend};
    let dev = Device::Cpu;
    let n = 1000;
    let init: Vec<f32> = (0..n)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0)
        .collect();
    let grads: Vec<Vec<f32>> = (0..4)
        .map(|k| {
            (0..n)
                .map(|i| ((i * (k + 3) * 13 % 97) as f32 - 48.0) / 31.0)
                .collect()
        })
        .collect();
    let variants: [(f64, f64, bool, f64); 4] = [
        (0.0, 0.0, false, 0.0),
        (0.9, 0.0, false, 5e-4),
        (0.9, 0.9, false, 0.0),
        (0.9, 0.0, true, 1e-2),
    ];
    for (momentum, dampening, nesterov, wd) in variants {
        let run = |backend: Backend| -> Result<(Vec<f32>, Vec<f32>)> {
            set_backend(backend);
            let mut s = ParamStore::new(&dev);
            s.add_var("w", Tensor::new(init.as_slice(), &dev)?)?;
            let mut opt = Sgd::new(momentum, nesterov, wd)?;
            opt.dampening = dampening;
            for (k, g) in grads.iter().enumerate() {
                let mut gs = GradStore::default();
                gs.insert(s.var("w")?.as_tensor(), Tensor::new(g.as_slice(), &dev)?);
                opt.step(&s, &gs, 0.05 * (k + 1) as f64)?;
            }
            let buf = match opt.state().get("momentum_buffer.w") {
                Some(b) => b.to_vec1()?,
                None => vec![],
            };
            Ok((s.var("w")?.as_tensor().to_vec1()?, buf))
        };
        let reference = run(Backend::Candle)?;
        let fast = run(Backend::Fast)?;
        set_backend(Backend::Fast);
        assert_eq!(
            fast, reference,
            "momentum {momentum} dampening {dampening} nesterov {nesterov} wd {wd}"
        );
    }
    Ok(())
}
