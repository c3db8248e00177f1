//! The fast convolution against candle's reference (forward, first-order gradients) and against
//! central finite differences in f64 at first and second order.

mod ops_common;

use candle_core::{DType, Result, Tensor};
use ops_common::*;
use zoo_models::ops::{self, reference};

/// (n, c, h, w, out, k, stride, pad, groups)
type Case = (
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
);

const CASES: &[Case] = &[
    (2, 3, 7, 9, 4, 3, 1, 1, 1),
    (2, 3, 8, 7, 5, 3, 2, 1, 1),
    (2, 4, 9, 9, 6, 1, 1, 0, 1),
    (2, 4, 9, 8, 6, 1, 2, 0, 1),
    (1, 2, 11, 10, 3, 5, 1, 2, 1),
    (2, 3, 13, 12, 4, 7, 2, 3, 1),
    (2, 4, 7, 7, 6, 3, 1, 1, 2),
    (3, 8, 6, 5, 8, 3, 2, 1, 4),
    (2, 4, 6, 7, 4, 3, 1, 0, 1),
    (5, 3, 5, 5, 2, 3, 2, 0, 1),
    (3, 6, 5, 6, 6, 1, 1, 0, 3),
    (2, 3, 8, 8, 5, 3, 2, 1, 1),
    (2, 4, 9, 9, 6, 1, 2, 0, 1),
    (2, 4, 8, 8, 4, 3, 2, 1, 2),
    (2, 3, 11, 11, 4, 7, 2, 3, 1),
    // Same-width (stride 1, output width = input width) images narrower than the kernel.
    (1, 2, 1, 1, 3, 3, 1, 1, 1),
    (2, 2, 3, 2, 3, 5, 1, 2, 1),
    // 3×3 stride 1 pad 1 with >= 8 channels in and images of 8×8 or more: Winograd F(4×4, 3×3)
    // forward and weight gradient (and input gradient when >= 8 channels out), with sides that
    // are and are not multiples of 4 and a batch that leaves a partial chunk of images; smaller
    // images of the same shape take im2col.
    (3, 8, 8, 10, 8, 3, 1, 1, 1),
    (2, 8, 13, 15, 9, 3, 1, 1, 1),
    (1, 9, 17, 13, 8, 3, 1, 1, 1),
    (2, 3, 8, 8, 12, 3, 1, 1, 1),
    (2, 12, 8, 8, 4, 3, 1, 1, 1),
    (30, 16, 8, 8, 16, 3, 1, 1, 1),
    (1, 8, 1, 1, 8, 3, 1, 1, 1),
    (2, 9, 7, 5, 10, 3, 1, 1, 1),
    // Wide images (8+ tiles across): width a multiple of 4 and not.
    (1, 8, 12, 32, 9, 3, 1, 1, 1),
    (2, 8, 9, 33, 8, 3, 1, 1, 1),
    // The CIFAR ResNets' map sizes, whose tiling runs with literal sizes: 16×16 (four tiles
    // across) and 32×32 (eight); 8×8 is above.
    (3, 8, 16, 16, 8, 3, 1, 1, 1),
    (1, 8, 32, 32, 8, 3, 1, 1, 1),
];

fn inputs(case: usize, dtype: DType) -> (Tensor, Tensor, Tensor, (usize, usize, usize)) {
    let (n, c, h, w, o, k, s, p, g) = CASES[case];
    let x = randn(&[n, c, h, w], 10 + case as u64, dtype);
    let wt = randn(&[o, c / g, k, k], 20 + case as u64, dtype);
    let y = reference::conv2d(&x, &wt, s, p, g).expect("reference conv");
    let r = randn(y.dims(), 30 + case as u64, dtype);
    (x, wt, r, (s, p, g))
}

#[test]
#[allow(clippy::needless_range_loop)]
fn conv_matches_candle_forward_and_first_order() {
    for dtype in [DType::F32, DType::F64] {
        let tol = if dtype == DType::F32 { 2e-5 } else { 1e-12 };
        for case in 0..CASES.len() {
            let (x, w, r, (s, p, g)) = inputs(case, dtype);
            let what = format!("case {case} {:?} {dtype:?}", CASES[case]);
            let fast = ops::conv2d(&x, &w, s, p, g).unwrap();
            let refr = reference::conv2d(&x, &w, s, p, g).unwrap();
            assert_close(&format!("{what} forward"), &fast, &refr, tol);
            let f_fast = |t: &[Tensor]| -> Result<Tensor> {
                (ops::conv2d(&t[0], &t[1], s, p, g)? * &r)?.sum_all()
            };
            let f_ref = |t: &[Tensor]| -> Result<Tensor> {
                (reference::conv2d(&t[0], &t[1], s, p, g)? * &r)?.sum_all()
            };
            let gf = grads(&f_fast, &[x.clone(), w.clone()]).unwrap();
            // candle's conv backward breaks on stride 2 with h != w (it derives the output
            // padding from the height only); those cases are covered by the finite differences.
            let (_, _, h, wd, ..) = CASES[case];
            let gr = match grads(&f_ref, &[x.clone(), w.clone()]) {
                Ok(g) => g,
                Err(e) if s == 2 && h != wd => {
                    eprintln!("{what}: candle's reference backward fails: {e}");
                    continue;
                }
                Err(e) => panic!("{what}: reference backward failed: {e}"),
            };
            assert_close(&format!("{what} grad x"), &gf[0], &gr[0], tol);
            assert_close(&format!("{what} grad w"), &gf[1], &gr[1], tol);
        }
    }
}

#[test]
#[allow(clippy::needless_range_loop)]
fn conv_first_and_second_order_finite_differences() {
    for case in 0..CASES.len() {
        let (x, w, r, (s, p, g)) = inputs(case, DType::F64);
        let f = |t: &[Tensor]| -> Result<Tensor> {
            (ops::conv2d(&t[0], &t[1], s, p, g)?.tanh()? * &r)?.sum_all()
        };
        check_first_and_second_order(
            &format!("conv case {case} {:?}", CASES[case]),
            &f,
            &[x, w],
            25,
        );
    }
}

/// Two stacked convolutions: the second-order pass runs each op's backward on a gradient that
/// itself depends on both weights.
#[test]
fn stacked_convs_second_order() {
    let x = randn(&[2, 4, 9, 8], 1, DType::F64);
    let w1 = randn(&[6, 2, 3, 3], 2, DType::F64);
    let w2 = randn(&[5, 6, 3, 3], 3, DType::F64);
    let r = randn(&[2, 5, 3, 2], 4, DType::F64);
    let f = |t: &[Tensor]| -> Result<Tensor> {
        let h = ops::conv2d(&t[0], &t[1], 2, 1, 2)?.tanh()?;
        (ops::conv2d(&h, &t[2], 2, 1, 1)?.tanh()? * &r)?.sum_all()
    };
    check_first_and_second_order("stacked convs", &f, &[x, w1, w2], 25);
}

#[test]
fn conv_rejects_bad_shapes() {
    let x = randn(&[1, 3, 5, 5], 1, DType::F32);
    let w = randn(&[4, 2, 3, 3], 2, DType::F32);
    assert!(
        ops::conv2d(&x, &w, 1, 1, 1).is_err(),
        "channel mismatch accepted"
    );
    assert!(
        ops::conv2d(&x, &w, 1, 1, 2).is_err(),
        "groups not dividing channels accepted"
    );
    let big = randn(&[4, 3, 7, 7], 3, DType::F32);
    assert!(
        ops::conv2d(&x, &big, 1, 0, 1).is_err(),
        "kernel larger than input accepted"
    );
}

#[test]
fn conv_bias_matches_reference_and_finite_differences() {
    // `ops::add_bias` on (N, C, H, W): forward and first order against candle's broadcast add,
    // then first and second order against finite differences through a conv and a tanh.
    for dtype in [DType::F32, DType::F64] {
        let tol = if dtype == DType::F32 { 1e-5 } else { 1e-13 };
        let x = randn(&[3, 4, 5, 6], 1, dtype);
        let b = randn(&[4], 2, dtype);
        let r = randn(&[3, 4, 5, 6], 3, dtype);
        let fast = ops::add_bias(&x, &b).unwrap();
        let refr = reference::add_bias(&x, &b).unwrap();
        assert_close("bias forward", &fast, &refr, tol);
        let f_fast =
            |t: &[Tensor]| -> Result<Tensor> { (ops::add_bias(&t[0], &t[1])? * &r)?.sum_all() };
        let f_ref = |t: &[Tensor]| -> Result<Tensor> {
            (reference::add_bias(&t[0], &t[1])? * &r)?.sum_all()
        };
        let ins = [x.clone(), b.clone()];
        let (gf, gr) = (grads(&f_fast, &ins).unwrap(), grads(&f_ref, &ins).unwrap());
        assert_close("bias grad x", &gf[0], &gr[0], tol);
        assert_close("bias grad b", &gf[1], &gr[1], tol);
    }
    let x = randn(&[2, 3, 5, 5], 4, DType::F64);
    let w = randn(&[4, 3, 3, 3], 5, DType::F64);
    let b = randn(&[4], 6, DType::F64);
    let r = randn(&[2, 4, 5, 5], 7, DType::F64);
    let f = |t: &[Tensor]| -> Result<Tensor> {
        let h = ops::add_bias(&ops::conv2d(&t[0], &t[1], 1, 1, 1)?, &t[2])?.tanh()?;
        (h * &r)?.sum_all()
    };
    check_first_and_second_order("conv + bias", &f, &[x, w, b], 20);
}

#[test]
#[allow(clippy::needless_range_loop)]
fn fused_conv_bias_matches_reference_and_finite_differences() {
    // `ops::conv2d_bias` (one op on the fast path) against the composition it replaces,
    // `ops::conv2d` then `ops::add_bias` (each checked against candle above): forward and first
    // order over every case, then first and second order against finite differences.
    for dtype in [DType::F32, DType::F64] {
        let tol = if dtype == DType::F32 { 2e-5 } else { 1e-12 };
        for case in 0..CASES.len() {
            let (x, w, r, (s, p, g)) = inputs(case, dtype);
            let b = randn(&[w.dim(0).unwrap()], 40 + case as u64, dtype);
            let what = format!("conv+bias case {case} {:?} {dtype:?}", CASES[case]);
            let f_fast = |t: &[Tensor]| -> Result<Tensor> {
                (ops::conv2d_bias(&t[0], &t[1], &t[2], s, p, g)? * &r)?.sum_all()
            };
            let f_ref = |t: &[Tensor]| -> Result<Tensor> {
                let y = ops::conv2d(&t[0], &t[1], s, p, g)?;
                (ops::add_bias(&y, &t[2])? * &r)?.sum_all()
            };
            let ins = [x.clone(), w.clone(), b.clone()];
            let fast = ops::conv2d_bias(&x, &w, &b, s, p, g).unwrap();
            let refr = ops::add_bias(&ops::conv2d(&x, &w, s, p, g).unwrap(), &b);
            assert_close(&format!("{what} forward"), &fast, &refr.unwrap(), tol);
            let (gf, gr) = (grads(&f_fast, &ins).unwrap(), grads(&f_ref, &ins).unwrap());
            for (i, name) in ["x", "w", "b"].iter().enumerate() {
                assert_close(&format!("{what} grad {name}"), &gf[i], &gr[i], tol);
            }
        }
    }
    for (case, (n, c, h, w, o, k, s, p, g)) in
        [(2, 4, 6, 5, 6, 3, 1, 1, 2), (2, 3, 7, 6, 4, 5, 2, 2, 1)]
            .into_iter()
            .enumerate()
    {
        let x = randn(&[n, c, h, w], 50 + case as u64, DType::F64);
        let wt = randn(&[o, c / g, k, k], 51 + case as u64, DType::F64);
        let b = randn(&[o], 52 + case as u64, DType::F64);
        let y = ops::conv2d_bias(&x, &wt, &b, s, p, g).unwrap();
        let r = randn(y.dims(), 53 + case as u64, DType::F64);
        let f = |t: &[Tensor]| -> Result<Tensor> {
            let h = ops::conv2d_bias(&t[0], &t[1], &t[2], s, p, g)?.tanh()?;
            (h * &r)?.sum_all()
        };
        check_first_and_second_order(&format!("fused conv + bias {case}"), &f, &[x, wt, b], 20);
    }
}

#[test]
#[allow(clippy::needless_range_loop)]
fn fused_conv_bias_relu_matches_reference_and_finite_differences() {
    // `ops::conv2d_bias_relu` (one op on the fast path) against `ops::conv2d_bias` then
    // `ops::relu`: forward and first order over every case (im2col and Winograd), then first and
    // second order against finite differences with a convolution after the ReLU.
    for dtype in [DType::F32, DType::F64] {
        let tol = if dtype == DType::F32 { 2e-5 } else { 1e-12 };
        for case in 0..CASES.len() {
            let (x, w, r, (s, p, g)) = inputs(case, dtype);
            let b = randn(&[w.dim(0).unwrap()], 60 + case as u64, dtype);
            let what = format!("conv+bias+relu case {case} {:?} {dtype:?}", CASES[case]);
            let f_fast = |t: &[Tensor]| -> Result<Tensor> {
                (ops::conv2d_bias_relu(&t[0], &t[1], &t[2], s, p, g)? * &r)?.sum_all()
            };
            let f_ref = |t: &[Tensor]| -> Result<Tensor> {
                (ops::relu(&ops::conv2d_bias(&t[0], &t[1], &t[2], s, p, g)?)? * &r)?.sum_all()
            };
            let ins = [x.clone(), w.clone(), b.clone()];
            let fast = ops::conv2d_bias_relu(&x, &w, &b, s, p, g).unwrap();
            let refr = ops::relu(&ops::conv2d_bias(&x, &w, &b, s, p, g).unwrap()).unwrap();
            assert_close(&format!("{what} forward"), &fast, &refr, tol);
            let (gf, gr) = (grads(&f_fast, &ins).unwrap(), grads(&f_ref, &ins).unwrap());
            for (i, name) in ["x", "w", "b"].iter().enumerate() {
                assert_close(&format!("{what} grad {name}"), &gf[i], &gr[i], tol);
            }
        }
    }
    for (case, (n, c, h, w, o, k)) in [(2, 3, 6, 5, 3, 3), (1, 8, 8, 9, 8, 3)]
        .into_iter()
        .enumerate()
    {
        let x = randn(&[n, c, h, w], 70 + case as u64, DType::F64);
        let wt = randn(&[o, c, k, k], 71 + case as u64, DType::F64);
        let w2 = randn(&[o, o, k, k], 72 + case as u64, DType::F64);
        let b = randn(&[o], 73 + case as u64, DType::F64);
        let r = randn(&[n, o, h, w], 74 + case as u64, DType::F64);
        let f = |t: &[Tensor]| -> Result<Tensor> {
            let h = ops::conv2d_bias_relu(&t[0], &t[1], &t[2], 1, 1, 1)?;
            (ops::conv2d(&h, &t[3], 1, 1, 1)?.tanh()? * &r)?.sum_all()
        };
        check_first_and_second_order(&format!("conv+bias+relu {case}"), &f, &[x, wt, b, w2], 20);
    }
}
