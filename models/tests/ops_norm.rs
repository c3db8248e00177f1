//! Fused batch-norm (train and eval) and ReLU against the composed reference and finite
//! differences in f64 at first and second order.

mod ops_common;

use candle_core::{DType, Result, Tensor};
use ops_common::*;
use zoo_models::ops::{self, reference};

const SHAPES: &[&[usize]] = &[&[4, 3, 5, 7], &[3, 5, 4, 4], &[6, 4], &[2, 8, 3, 1]];

#[test]
fn batch_norm_train_matches_reference() {
    for dtype in [DType::F32, DType::F64] {
        let tol = if dtype == DType::F32 { 2e-5 } else { 1e-11 };
        for (i, shape) in SHAPES.iter().enumerate() {
            let c = shape[1];
            let x = (randn(shape, 1 + i as u64, dtype) * 3.0)
                .unwrap()
                .affine(1.0, 0.5)
                .unwrap();
            let g = randn(&[c], 2 + i as u64, dtype).affine(1.0, 1.5).unwrap();
            let b = randn(&[c], 3 + i as u64, dtype);
            let r = randn(shape, 4 + i as u64, dtype);
            let (yf, mf, vf) = ops::batch_norm_train(&x, &g, &b, 1e-5).unwrap();
            let (yr, mr, vr) = reference::batch_norm_train(&x, &g, &b, 1e-5).unwrap();
            let what = format!("bn {shape:?} {dtype:?}");
            assert_close(&format!("{what} y"), &yf, &yr, tol);
            assert_close(&format!("{what} mean"), &mf, &mr, tol);
            assert_close(&format!("{what} var"), &vf, &vr, tol);
            let ff = |t: &[Tensor]| -> Result<Tensor> {
                (ops::batch_norm_train(&t[0], &t[1], &t[2], 1e-5)?.0 * &r)?.sum_all()
            };
            let fr = |t: &[Tensor]| -> Result<Tensor> {
                (reference::batch_norm_train(&t[0], &t[1], &t[2], 1e-5)?.0 * &r)?.sum_all()
            };
            let ins = [x.clone(), g.clone(), b.clone()];
            let gf = grads(&ff, &ins).unwrap();
            let gr = grads(&fr, &ins).unwrap();
            for (k, n) in ["x", "gamma", "beta"].iter().enumerate() {
                assert_close(&format!("{what} grad {n}"), &gf[k], &gr[k], tol * 10.0);
            }
        }
    }
}

#[test]
fn batch_norm_train_first_and_second_order_finite_differences() {
    for (i, shape) in SHAPES.iter().enumerate() {
        let c = shape[1];
        let x = randn(shape, 10 + i as u64, DType::F64);
        let g = randn(&[c], 11 + i as u64, DType::F64)
            .affine(1.0, 1.5)
            .unwrap();
        let b = randn(&[c], 12 + i as u64, DType::F64);
        let r = randn(shape, 13 + i as u64, DType::F64);
        let f = |t: &[Tensor]| -> Result<Tensor> {
            (ops::batch_norm_train(&t[0], &t[1], &t[2], 1e-3)?.0.tanh()? * &r)?.sum_all()
        };
        check_first_and_second_order(&format!("bn {shape:?}"), &f, &[x, g, b], 30);
    }
}

/// conv → BN → ReLU → conv → BN: the meta-step's path through a ResNet block.
#[test]
fn conv_bn_relu_block_second_order() {
    let x = randn(&[3, 2, 6, 5], 1, DType::F64);
    let w1 = randn(&[4, 2, 3, 3], 2, DType::F64);
    let g1 = randn(&[4], 3, DType::F64).affine(0.5, 1.0).unwrap();
    let b1 = randn(&[4], 4, DType::F64);
    let w2 = randn(&[3, 4, 3, 3], 5, DType::F64);
    let r = randn(&[3, 3, 3, 3], 6, DType::F64);
    let f = |t: &[Tensor]| -> Result<Tensor> {
        let h = ops::conv2d(&t[0], &t[1], 1, 1, 1)?;
        let h = ops::relu(&ops::batch_norm_train(&h, &t[2], &t[3], 1e-5)?.0)?;
        let h = ops::conv2d(&h, &t[4], 2, 1, 1)?;
        let (c, n) = (h.dim(1)?, h.dim(0)?);
        let ones = Tensor::ones(c, DType::F64, h.device())?;
        let zeros = Tensor::zeros(c, DType::F64, h.device())?;
        let h = ops::batch_norm_train(&h, &ones, &zeros, 1e-5)?.0;
        assert_eq!(n, 3);
        (h.tanh()? * &r)?.sum_all()
    };
    check_first_and_second_order("conv-bn-relu-conv-bn", &f, &[x, w1, g1, b1, w2], 25);
}

#[test]
fn batch_norm_eval_matches_reference_and_finite_differences() {
    let x = randn(&[3, 4, 5, 5], 1, DType::F64);
    let g = randn(&[4], 2, DType::F64);
    let b = randn(&[4], 3, DType::F64);
    let rm = randn(&[4], 4, DType::F64);
    let rv = randn(&[4], 5, DType::F64).affine(0.2, 1.0).unwrap();
    let y = ops::batch_norm_eval(&x, &g, &b, &rm, &rv, 1e-5).unwrap();
    let c = |t: &Tensor| t.reshape((1, 4, 1, 1)).unwrap();
    let want = x
        .broadcast_sub(&c(&rm))
        .unwrap()
        .broadcast_div(&c(&(&rv + 1e-5).unwrap().sqrt().unwrap()))
        .unwrap()
        .broadcast_mul(&c(&g))
        .unwrap()
        .broadcast_add(&c(&b))
        .unwrap();
    assert_close("bn eval", &y, &want, 1e-13);
    let r = randn(&[3, 4, 5, 5], 6, DType::F64);
    let f = |t: &[Tensor]| -> Result<Tensor> {
        (ops::batch_norm_eval(&t[0], &t[1], &t[2], &rm, &rv, 1e-5)?.tanh()? * &r)?.sum_all()
    };
    check_first_and_second_order("bn eval", &f, &[x, g, b], 30);
}

#[test]
fn relu_matches_candle_and_second_order() {
    let x = randn(&[4, 3, 5, 5], 1, DType::F64);
    assert_close("relu", &ops::relu(&x).unwrap(), &x.relu().unwrap(), 0.0);
    let nan = Tensor::new(&[f32::NAN, -1.0, 2.0], &candle_core::Device::Cpu).unwrap();
    let v = ops::relu(&nan).unwrap().to_vec1::<f32>().unwrap();
    assert!(
        v[0].is_nan() && v[1] == 0.0 && v[2] == 2.0,
        "NaN must propagate through relu: {v:?}"
    );
    let w = randn(&[3, 3, 3, 3], 2, DType::F64);
    let r = randn(&[4, 3, 5, 5], 3, DType::F64);
    // relu between two smooth maps so the second derivative is non-zero.
    let f = |t: &[Tensor]| -> Result<Tensor> {
        let h = ops::relu(&ops::conv2d(&t[0], &t[1], 1, 1, 1)?)?;
        (ops::conv2d(&h, &t[1], 1, 1, 1)?.tanh()? * &r)?.sum_all()
    };
    check_first_and_second_order("conv-relu-conv", &f, &[x, w], 30);
}

#[test]
fn add_relu_matches_relu_of_sum_and_second_order() {
    // `ops::add_relu(a, b)` against `ops::relu(a + b)`: values, NaN, and first and second order
    // through smooth maps on both inputs.
    let a = randn(&[3, 4, 5, 5], 4, DType::F64);
    let b = randn(&[3, 4, 5, 5], 5, DType::F64);
    let sum = (&a + &b).unwrap();
    assert_close(
        "add_relu",
        &ops::add_relu(&a, &b).unwrap(),
        &ops::relu(&sum).unwrap(),
        0.0,
    );
    let dev = candle_core::Device::Cpu;
    let nan = Tensor::new(&[f32::NAN, -1.0, 2.0], &dev).unwrap();
    let one = Tensor::new(&[1f32, -1.0, 1.0], &dev).unwrap();
    let v = ops::add_relu(&nan, &one).unwrap().to_vec1::<f32>().unwrap();
    assert!(
        v[0].is_nan() && v[1] == 0.0 && v[2] == 3.0,
        "add_relu: {v:?}"
    );
    let w = randn(&[4, 4, 3, 3], 6, DType::F64);
    let r = randn(&[3, 4, 5, 5], 7, DType::F64);
    let f = |t: &[Tensor]| -> Result<Tensor> {
        let o = ops::conv2d(&t[0], &t[2], 1, 1, 1)?;
        let h = ops::add_relu(&o, &t[1].tanh()?)?;
        (ops::conv2d(&h, &t[2], 1, 1, 1)?.tanh()? * &r)?.sum_all()
    };
    check_first_and_second_order("conv + shortcut → add_relu → conv", &f, &[a, b, w], 30);
}

#[test]
fn batch_norm_relu_matches_relu_of_batch_norm_and_second_order() {
    // `ops::batch_norm_relu_train` (one fused op on the fast path) against the reference batch
    // norm followed by ReLU: values, statistics and gradients in f32 and f64, and first and
    // second order through a convolution on each side (so the second derivative is non-zero).
    for dtype in [DType::F32, DType::F64] {
        let tol = if dtype == DType::F32 { 2e-5 } else { 1e-11 };
        for (i, shape) in SHAPES.iter().enumerate() {
            let c = shape[1];
            let x = randn(shape, 40 + i as u64, dtype);
            let g = randn(&[c], 41 + i as u64, dtype).affine(1.0, 1.5).unwrap();
            let b = randn(&[c], 42 + i as u64, dtype);
            let r = randn(shape, 43 + i as u64, dtype);
            let (yf, mf, vf) = ops::batch_norm_relu_train(&x, &g, &b, 1e-5).unwrap();
            let (yr, mr, vr) = reference::batch_norm_train(&x, &g, &b, 1e-5).unwrap();
            let what = format!("bn-relu {shape:?} {dtype:?}");
            assert_close(&format!("{what} y"), &yf, &yr.relu().unwrap(), tol);
            assert_close(&format!("{what} mean"), &mf, &mr, tol);
            assert_close(&format!("{what} var"), &vf, &vr, tol);
            let ff = |t: &[Tensor]| -> Result<Tensor> {
                (ops::batch_norm_relu_train(&t[0], &t[1], &t[2], 1e-5)?.0 * &r)?.sum_all()
            };
            let fr = |t: &[Tensor]| -> Result<Tensor> {
                (reference::batch_norm_train(&t[0], &t[1], &t[2], 1e-5)?
                    .0
                    .relu()?
                    * &r)?
                    .sum_all()
            };
            let ins = [x.clone(), g.clone(), b.clone()];
            let (gf, gr) = (grads(&ff, &ins).unwrap(), grads(&fr, &ins).unwrap());
            for (k, n) in ["x", "gamma", "beta"].iter().enumerate() {
                assert_close(&format!("{what} grad {n}"), &gf[k], &gr[k], tol * 10.0);
            }
        }
    }
    let x = randn(&[4, 3, 5, 5], 50, DType::F64);
    let w = randn(&[3, 3, 3, 3], 51, DType::F64);
    let g = randn(&[3], 52, DType::F64).affine(1.0, 1.5).unwrap();
    let b = randn(&[3], 53, DType::F64);
    let r = randn(&[4, 3, 5, 5], 54, DType::F64);
    let f = |t: &[Tensor]| -> Result<Tensor> {
        let h = ops::conv2d(&t[0], &t[1], 1, 1, 1)?;
        let h = ops::batch_norm_relu_train(&h, &t[2], &t[3], 1e-3)?.0;
        (ops::conv2d(&h, &t[1], 1, 1, 1)?.tanh()? * &r)?.sum_all()
    };
    check_first_and_second_order("conv-bn-relu-conv", &f, &[x, w, g, b], 30);
}
