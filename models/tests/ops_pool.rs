//! Max pooling (2/2, 3/2 with padding) and global average pooling: hand-computed gradients, the
//! exact reference, and finite differences in f64 at first and second order.

mod ops_common;

use candle_core::{DType, Device, Result, Tensor, Var};
use ops_common::*;
use zoo_models::ops::{self, reference};

/// Gradient of `sum(pool(x))` with respect to `x`, flattened: per input, the number of windows
/// whose (first) maximum it is.
fn grad_of_sum(x: &Var, pool: impl Fn(&Tensor) -> Result<Tensor>) -> Vec<f32> {
    let g = pool(x.as_tensor())
        .and_then(|y| y.sum_all())
        .and_then(|y| y.backward())
        .unwrap();
    g.get(x.as_tensor())
        .unwrap()
        .flatten_all()
        .and_then(|t| t.to_vec1::<f32>())
        .unwrap()
}

#[test]
fn max_pool_gradient_goes_to_the_maximum_with_weight_one() {
    // candle's own max_pool2d returns [0, 0, 0, 0.25] here.
    let x = Var::from_vec(vec![1f32, 2., 3., 4.], (1, 1, 2, 2), &Device::Cpu).unwrap();
    let gx = grad_of_sum(&x, |t| ops::max_pool2d(t, 2));
    assert_eq!(gx, vec![0., 0., 0., 1.]);
}

#[test]
fn overlapping_windows_accumulate_and_padding_never_wins() {
    // 3/2/1 on a 3x3 map: four windows, all containing the centre (the maximum).
    let v: Vec<f32> = vec![-5., -4., -3., -2., 9., -1., -6., -7., -8.];
    let x = Var::from_vec(v, (1, 1, 3, 3), &Device::Cpu).unwrap();
    let y = ops::max_pool2d_ext(x.as_tensor(), 3, 2, 1).unwrap();
    assert_eq!(y.dims(), &[1, 1, 2, 2]);
    assert_eq!(
        y.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        vec![9., 9., 9., 9.]
    );
    let gx = grad_of_sum(&x, |t| ops::max_pool2d_ext(t, 3, 2, 1));
    assert_eq!(gx, vec![0., 0., 0., 0., 4., 0., 0., 0., 0.]);
}

#[test]
fn ties_go_to_the_first_maximum() {
    let x = Var::from_vec(vec![2f32, 2., 1., 2.], (1, 1, 2, 2), &Device::Cpu).unwrap();
    let gx = grad_of_sum(&x, |t| ops::max_pool2d(t, 2));
    assert_eq!(gx, vec![1., 0., 0., 0.]);
}

/// The first maximum in row-major window order, by brute force; padding never wins.
fn first_max_counts(
    x: &[f32],
    (h, w): (usize, usize),
    (k, s, p): (usize, usize, usize),
) -> Vec<f32> {
    let (ho, wo) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1);
    let mut counts = vec![0f32; h * w];
    for oh in 0..ho {
        for ow in 0..wo {
            let mut best: Option<usize> = None;
            for dy in 0..k {
                for dx in 0..k {
                    let (y, xx) = (
                        (oh * s + dy) as isize - p as isize,
                        (ow * s + dx) as isize - p as isize,
                    );
                    if y < 0 || xx < 0 || y >= h as isize || xx >= w as isize {
                        continue;
                    }
                    let i = y as usize * w + xx as usize;
                    if best.is_none_or(|b| x[i] > x[b]) {
                        best = Some(i);
                    }
                }
            }
            counts[best.expect("a window inside the image")] += 1.0;
        }
    }
    counts
}

/// Inputs with many ties (values from {0 or −∞, 1, 2}) over strides 1–3, padding and widths that give
/// the row-at-a-time path both interior and edge columns: the gradient of the pooled sum counts,
/// per input, the windows whose first maximum it is.
#[test]
fn ties_go_to_the_first_maximum_on_every_geometry() {
    let mut seed = 7u64;
    for &(h, w) in &[(5, 5), (6, 9), (28, 28), (29, 31), (14, 17)] {
        for &(k, s, p) in &[
            (2, 2, 0),
            (3, 2, 0),
            (3, 2, 1),
            (2, 1, 0),
            (3, 1, 1),
            (3, 3, 1),
            (5, 2, 2),
        ] {
            if h + 2 * p < k || w + 2 * p < k {
                continue;
            }
            seed += 1;
            let v: Vec<f32> = to_vec(&randn(&[2 * h * w], seed, DType::F64))
                .iter()
                .map(|r| match ((r + 1.0) * 1.5).floor().min(2.0) {
                    // Every other case: −∞ inputs, whole windows of them included.
                    0.0 if seed.is_multiple_of(2) => f32::NEG_INFINITY,
                    v => v as f32,
                })
                .collect();
            let x = Var::from_vec(v.clone(), (2, 1, h, w), &Device::Cpu).unwrap();
            let got = grad_of_sum(&x, |t| ops::max_pool2d_ext(t, k, s, p));
            let mut want = first_max_counts(&v[..h * w], (h, w), (k, s, p));
            want.extend(first_max_counts(&v[h * w..], (h, w), (k, s, p)));
            assert_eq!(got, want, "{h}x{w}, kernel {k}, stride {s}, padding {p}");
        }
    }
}

/// (n, c, h, w, k, stride, pad)
const CASES: &[(usize, usize, usize, usize, usize, usize, usize)] = &[
    (2, 3, 8, 8, 2, 2, 0),
    (2, 3, 7, 9, 2, 2, 0),
    (3, 2, 9, 8, 3, 2, 1),
    (2, 2, 10, 7, 3, 2, 1),
    (1, 4, 6, 6, 3, 3, 0),
    (2, 1, 5, 6, 3, 1, 1),
];

#[test]
fn max_pool_matches_reference() {
    for dtype in [DType::F32, DType::F64] {
        for (i, &(n, c, h, w, k, s, p)) in CASES.iter().enumerate() {
            let what = format!("case {i} {:?} {dtype:?}", CASES[i]);
            let x = randn(&[n, c, h, w], 40 + i as u64, dtype);
            let fast = ops::max_pool2d_ext(&x, k, s, p).unwrap();
            let refr = reference::max_pool2d(&x, k, s, p).unwrap();
            assert_close(&format!("{what} forward"), &fast, &refr, 0.0);
            let r = randn(fast.dims(), 50 + i as u64, dtype);
            let f_fast = |t: &[Tensor]| -> Result<Tensor> {
                (ops::max_pool2d_ext(&t[0], k, s, p)? * &r)?.sum_all()
            };
            let f_ref = |t: &[Tensor]| -> Result<Tensor> {
                (reference::max_pool2d(&t[0], k, s, p)? * &r)?.sum_all()
            };
            let gf = grads(&f_fast, std::slice::from_ref(&x)).unwrap();
            let gr = grads(&f_ref, std::slice::from_ref(&x)).unwrap();
            assert_close(&format!("{what} grad"), &gf[0], &gr[0], 1e-6);
        }
    }
}

#[test]
fn max_pool_first_and_second_order_finite_differences() {
    for (i, &(n, c, h, w, k, s, p)) in CASES.iter().enumerate() {
        let x = randn(&[n, c, h, w], 60 + i as u64, DType::F64);
        let r = randn(
            ops::max_pool2d_ext(&x, k, s, p).unwrap().dims(),
            70 + i as u64,
            DType::F64,
        );
        // tanh after the pool makes the second derivative non-zero.
        let f = |t: &[Tensor]| -> Result<Tensor> {
            (ops::max_pool2d_ext(&t[0], k, s, p)?.tanh()? * &r)?.sum_all()
        };
        check_first_and_second_order(&format!("max pool case {i} {:?}", CASES[i]), &f, &[x], 40);
    }
}

/// conv → relu-free tanh → pool → conv: second order flows through the pool's scatter/gather.
#[test]
fn conv_pool_conv_second_order() {
    let x = randn(&[2, 2, 9, 9], 1, DType::F64);
    let w1 = randn(&[4, 2, 3, 3], 2, DType::F64);
    let w2 = randn(&[3, 4, 3, 3], 3, DType::F64);
    let r = randn(&[2, 3, 2, 2], 4, DType::F64);
    let f = |t: &[Tensor]| -> Result<Tensor> {
        let h = ops::conv2d(&t[0], &t[1], 1, 1, 1)?.tanh()?;
        let h = ops::max_pool2d_ext(&h, 3, 2, 1)?;
        let h = ops::max_pool2d(&ops::conv2d(&h, &t[2], 1, 1, 1)?, 2)?;
        (h.tanh()? * &r)?.sum_all()
    };
    check_first_and_second_order("conv-pool-conv", &f, &[x, w1, w2], 25);
}

#[test]
fn global_avg_pool_first_and_second_order() {
    let x = randn(&[3, 4, 5, 3], 5, DType::F64);
    let r = randn(&[3, 4], 6, DType::F64);
    let y = ops::global_avg_pool(&x).unwrap();
    let want = x
        .mean_keepdim(3)
        .unwrap()
        .mean_keepdim(2)
        .unwrap()
        .squeeze(3)
        .unwrap()
        .squeeze(2)
        .unwrap();
    assert_close("gap forward", &y, &want, 1e-14);
    let f =
        |t: &[Tensor]| -> Result<Tensor> { (ops::global_avg_pool(&t[0])?.tanh()? * &r)?.sum_all() };
    check_first_and_second_order("global avg pool", &f, &[x], 40);
}

#[test]
fn max_pool_rejects_bad_geometry() {
    let x = randn(&[1, 1, 4, 4], 1, DType::F32);
    assert!(
        ops::max_pool2d_ext(&x, 2, 2, 2).is_err(),
        "padding > k/2 accepted"
    );
    assert!(
        ops::max_pool2d_ext(&x, 5, 1, 0).is_err(),
        "window larger than input accepted"
    );
    assert!(
        ops::max_pool2d_ext(&x, 2, 0, 0).is_err(),
        "stride 0 accepted"
    );
}
