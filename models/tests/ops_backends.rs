//! A few SGD steps with the fast path and with candle's reference ops give the same losses:
//! a small conv-BN-pool net (f64 and f32), ResNet-32 and LeNet from `zoo_models::models`.
//!
//! `ops::set_backend` sets the calling (test) thread's backend only, so other tests of the
//! binary keep theirs.

mod ops_common;

use candle_core::{DType, Device, Result, Tensor, Var};
use ops_common::randn;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use zoo_models::loss::{cross_entropy, Reduction};
use zoo_models::models::{LeNet, LeNetConfig, ResNetCifar, ResNetCifarConfig};
use zoo_models::ops::{self, Backend};
use zoo_models::{Classifier, Ctx};

fn labels(n: usize, classes: u32, seed: u64) -> Tensor {
    let mut rng = StdRng::seed_from_u64(seed);
    let v: Vec<u32> = (0..n).map(|_| rng.random_range(0..classes)).collect();
    Tensor::from_vec(v, n, &Device::Cpu).unwrap()
}

/// conv(3→8, 3×3) → BN → ReLU → max-pool 2 → conv(8→8, 3×3, stride 2, groups 2) → BN → ReLU →
/// max-pool 3/2/1 → global average → linear; SGD steps; returns the losses.
fn small_net_losses(backend: Backend, dtype: DType, steps: usize) -> Vec<f64> {
    ops::set_backend(backend);
    let mk = |shape: &[usize], seed: u64, scale: f64| {
        Var::from_tensor(&(randn(shape, seed, dtype) * scale).unwrap()).unwrap()
    };
    let params = vec![
        mk(&[8, 3, 3, 3], 1, 0.4),
        Var::from_tensor(&Tensor::ones(8, dtype, &Device::Cpu).unwrap()).unwrap(),
        Var::from_tensor(&Tensor::zeros(8, dtype, &Device::Cpu).unwrap()).unwrap(),
        mk(&[8, 4, 3, 3], 2, 0.4),
        Var::from_tensor(&Tensor::ones(8, dtype, &Device::Cpu).unwrap()).unwrap(),
        Var::from_tensor(&Tensor::zeros(8, dtype, &Device::Cpu).unwrap()).unwrap(),
        mk(&[5, 8], 3, 0.5),
        mk(&[5], 4, 0.1),
    ];
    let x = randn(&[6, 3, 13, 13], 5, dtype);
    let y = labels(6, 5, 6);
    let fwd = |p: &[Var]| -> Result<Tensor> {
        let h = ops::conv2d(&x, &p[0], 1, 1, 1)?;
        let h = ops::relu(&ops::batch_norm_train(&h, &p[1], &p[2], 1e-5)?.0)?;
        let h = ops::max_pool2d(&h, 2)?;
        let h = ops::conv2d(&h, &p[3], 2, 1, 2)?;
        let h = ops::relu(&ops::batch_norm_train(&h, &p[4], &p[5], 1e-5)?.0)?;
        let h = ops::max_pool2d_ext(&h, 3, 2, 1)?;
        ops::linear(&ops::global_avg_pool(&h)?, &p[6], Some(&p[7]))
    };
    let mut losses = vec![];
    for _ in 0..steps {
        let loss = cross_entropy(&fwd(&params).unwrap(), &y, Reduction::Mean).unwrap();
        losses.push(
            loss.to_dtype(DType::F64)
                .unwrap()
                .to_scalar::<f64>()
                .unwrap(),
        );
        let g = loss.backward().unwrap();
        for v in &params {
            let gv = g.get(v).expect("every parameter gets a gradient");
            v.set(&(v.as_tensor() - (gv * 0.5).unwrap()).unwrap())
                .unwrap();
        }
    }
    losses
}

fn model_losses(
    backend: Backend,
    model: &dyn Classifier,
    x: &Tensor,
    y: &Tensor,
    steps: usize,
    lr: f64,
) -> Vec<f64> {
    ops::set_backend(backend);
    let store = model.store();
    let start: Vec<(String, Tensor)> = store
        .vars()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().copy().unwrap()))
        .collect();
    let mut losses = vec![];
    for _ in 0..steps {
        let p = store.params();
        let logits = model.forward(&p, x, &mut Ctx::train_no_rng(false)).unwrap();
        let loss = cross_entropy(&logits, y, Reduction::Mean).unwrap();
        losses.push(loss.to_scalar::<f32>().unwrap() as f64);
        let g = loss.backward().unwrap();
        for (name, v) in store.vars() {
            let gv = g
                .get(v.as_tensor())
                .unwrap_or_else(|| panic!("{name} received no gradient"));
            v.set(&(v.as_tensor() - (gv * lr).unwrap()).unwrap())
                .unwrap();
        }
    }
    // Restore the initial weights for the other backend.
    for (k, t) in start {
        store.vars()[&k].set(&t).unwrap();
    }
    losses
}

fn assert_same(what: &str, a: &[f64], b: &[f64], tol: f64) {
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tol * y.abs().max(1.0),
            "{what}: step {i}: fast {x} vs reference {y} ({a:?} vs {b:?})"
        );
    }
    // The steps must actually train, or equal losses would prove nothing.
    assert!(a.last() < a.first(), "{what}: loss did not decrease: {a:?}");
}

#[test]
fn fast_and_reference_backends_train_identically() {
    let steps = 4;
    let r64 = small_net_losses(Backend::Candle, DType::F64, steps);
    let f64_ = small_net_losses(Backend::Fast, DType::F64, steps);
    assert_same("small net f64", &f64_, &r64, 1e-10);
    let r32 = small_net_losses(Backend::Candle, DType::F32, steps);
    let f32_ = small_net_losses(Backend::Fast, DType::F32, steps);
    assert_same("small net f32", &f32_, &r32, 1e-4);

    let mut rng = StdRng::seed_from_u64(7);
    let resnet = ResNetCifar::new(ResNetCifarConfig::new(32, 10), &mut rng, &Device::Cpu).unwrap();
    let x = randn(&[8, 3, 32, 32], 8, DType::F32);
    let y = labels(8, 10, 9);
    let r = model_losses(Backend::Candle, &resnet, &x, &y, 3, 0.05);
    let f = model_losses(Backend::Fast, &resnet, &x, &y, 3, 0.05);
    assert_same("resnet32", &f, &r, 1e-3);

    let lenet = LeNet::new(LeNetConfig::mnist(10), &mut rng, &Device::Cpu).unwrap();
    let x = randn(&[16, 1, 28, 28], 10, DType::F32);
    let y = labels(16, 10, 11);
    let r = model_losses(Backend::Candle, &lenet, &x, &y, 3, 0.002);
    let f = model_losses(Backend::Fast, &lenet, &x, &y, 3, 0.002);
    assert_same("lenet", &f, &r, 1e-3);
    ops::set_backend(Backend::Fast);
}
