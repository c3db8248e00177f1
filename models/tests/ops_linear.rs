//! The fast linear layer against candle's matmul and finite differences (first and second order).

mod ops_common;

use candle_core::{DType, Result, Tensor};
use ops_common::*;
use zoo_models::ops::{self, reference};

#[test]
fn linear_matches_reference() {
    for dtype in [DType::F32, DType::F64] {
        let tol = if dtype == DType::F32 { 1e-5 } else { 1e-13 };
        for (i, &(b, n_in, n_out)) in [(1, 3, 2), (7, 13, 5), (100, 64, 33)].iter().enumerate() {
            let x = randn(&[b, n_in], 1 + i as u64, dtype);
            let w = randn(&[n_out, n_in], 2 + i as u64, dtype);
            let bias = randn(&[n_out], 3 + i as u64, dtype);
            let r = randn(&[b, n_out], 4 + i as u64, dtype);
            let fast = ops::linear(&x, &w, Some(&bias)).unwrap();
            let refr = reference::linear(&x, &w)
                .unwrap()
                .broadcast_add(&bias)
                .unwrap();
            assert_close("linear forward", &fast, &refr, tol);
            let f_fast = |t: &[Tensor]| -> Result<Tensor> {
                (ops::linear(&t[0], &t[1], Some(&t[2]))? * &r)?.sum_all()
            };
            let f_ref = |t: &[Tensor]| -> Result<Tensor> {
                (reference::linear(&t[0], &t[1])?.broadcast_add(&t[2])? * &r)?.sum_all()
            };
            let ins = [x.clone(), w.clone(), bias.clone()];
            let gf = grads(&f_fast, &ins).unwrap();
            let gr = grads(&f_ref, &ins).unwrap();
            for (k, name) in ["x", "w", "b"].iter().enumerate() {
                assert_close(
                    &format!("linear grad {name} {dtype:?}"),
                    &gf[k],
                    &gr[k],
                    tol,
                );
            }
        }
    }
}

#[test]
fn linear_first_and_second_order_finite_differences() {
    let x = randn(&[5, 7], 1, DType::F64);
    let w1 = randn(&[6, 7], 2, DType::F64);
    let b1 = randn(&[6], 3, DType::F64);
    let w2 = randn(&[3, 6], 4, DType::F64);
    let r = randn(&[5, 3], 5, DType::F64);
    let f = |t: &[Tensor]| -> Result<Tensor> {
        let h = ops::linear(&t[0], &t[1], Some(&t[2]))?.tanh()?;
        (ops::linear(&h, &t[3], None)?.tanh()? * &r)?.sum_all()
    };
    check_first_and_second_order("two linear layers", &f, &[x, w1, b1, w2], 30);
}

#[test]
fn linear_rejects_mismatched_features() {
    let x = randn(&[2, 3], 1, DType::F32);
    let w = randn(&[4, 5], 2, DType::F32);
    assert!(ops::linear(&x, &w, None).is_err());
}

#[test]
fn linear_relu_matches_relu_of_linear_and_second_order() {
    // `ops::linear_relu` (one op on the fast path) against the reference linear layer, bias and
    // ReLU: values and gradients in f32/f64, then first and second order through a second layer.
    for dtype in [DType::F32, DType::F64] {
        let tol = if dtype == DType::F32 { 1e-5 } else { 1e-13 };
        for (i, &(b, n_in, n_out)) in [(1, 3, 2), (7, 13, 5), (100, 64, 33)].iter().enumerate() {
            let x = randn(&[b, n_in], 11 + i as u64, dtype);
            let w = randn(&[n_out, n_in], 12 + i as u64, dtype);
            let bias = randn(&[n_out], 13 + i as u64, dtype);
            let r = randn(&[b, n_out], 14 + i as u64, dtype);
            let reference = |t: &[Tensor]| -> Result<Tensor> {
                reference::linear(&t[0], &t[1])?
                    .broadcast_add(&t[2])?
                    .relu()
            };
            let ins = [x.clone(), w.clone(), bias.clone()];
            let fast = ops::linear_relu(&x, &w, &bias).unwrap();
            assert_close("linear_relu forward", &fast, &reference(&ins).unwrap(), tol);
            let f_fast = |t: &[Tensor]| -> Result<Tensor> {
                (ops::linear_relu(&t[0], &t[1], &t[2])? * &r)?.sum_all()
            };
            let f_ref = |t: &[Tensor]| -> Result<Tensor> { (reference(t)? * &r)?.sum_all() };
            let (gf, gr) = (grads(&f_fast, &ins).unwrap(), grads(&f_ref, &ins).unwrap());
            for (k, name) in ["x", "w", "b"].iter().enumerate() {
                assert_close(
                    &format!("linear_relu grad {name} {dtype:?}"),
                    &gf[k],
                    &gr[k],
                    tol,
                );
            }
        }
    }
    let x = randn(&[5, 7], 21, DType::F64);
    let w1 = randn(&[6, 7], 22, DType::F64);
    let b1 = randn(&[6], 23, DType::F64);
    let w2 = randn(&[3, 6], 24, DType::F64);
    let r = randn(&[5, 3], 25, DType::F64);
    let f = |t: &[Tensor]| -> Result<Tensor> {
        let h = ops::linear_relu(&t[0], &t[1], &t[2])?;
        (ops::linear(&h, &t[3], None)?.tanh()? * &r)?.sum_all()
    };
    check_first_and_second_order("linear_relu then linear", &f, &[x, w1, b1, w2], 30);
}
