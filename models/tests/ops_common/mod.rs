//! Helpers shared by the `ops_*` tests: seeded random tensors, gradients through candle's
//! autograd, and central finite differences in f64 (first and second order).
#![allow(dead_code)]

use candle_core::{DType, Device, Result, Tensor, Var};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub fn randn(shape: &[usize], seed: u64, dtype: DType) -> Tensor {
    let mut rng = StdRng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| rng.random::<f64>() * 2.0 - 1.0).collect();
    Tensor::from_vec(v, shape, &Device::Cpu)
        .and_then(|t| t.to_dtype(dtype))
        .expect("randn")
}

pub fn to_vec(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1::<f64>())
        .expect("to_vec")
}

/// max |a-b| / max(1, max|b|).
pub fn rel_err(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.dims(), b.dims(), "shape mismatch");
    let (a, b) = (to_vec(a), to_vec(b));
    let scale = b.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
        / scale
}

pub fn assert_close(what: &str, a: &Tensor, b: &Tensor, tol: f64) {
    let e = rel_err(a, b);
    assert!(e <= tol, "{what}: relative error {e:e} > {tol:e}");
}

/// The gradients of the scalar `f(inputs)` with respect to every input.
pub fn grads<F>(f: &F, inputs: &[Tensor]) -> Result<Vec<Tensor>>
where
    F: Fn(&[Tensor]) -> Result<Tensor>,
{
    let vars: Vec<Var> = inputs
        .iter()
        .map(|t| Var::from_tensor(t).expect("var"))
        .collect();
    let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let g = f(&ts)?.backward()?;
    Ok(ts
        .iter()
        .map(|t| {
            g.get(t)
                .cloned()
                .unwrap_or_else(|| t.zeros_like().expect("zeros"))
        })
        .collect())
}

/// `s(inputs) = Σᵢ <∂f/∂inputᵢ, rᵢ>`, kept differentiable (needs CANDLE_GRAD_DO_NOT_DETACH).
pub fn grad_dot<F>(f: &F, ts: &[Tensor], rs: &[Tensor]) -> Result<Tensor>
where
    F: Fn(&[Tensor]) -> Result<Tensor>,
{
    let g = f(ts)?.backward()?;
    let mut s: Option<Tensor> = None;
    for (t, r) in ts.iter().zip(rs) {
        if let Some(gt) = g.get(t) {
            let term = (gt * r)?.sum_all()?;
            s = Some(match s {
                None => term,
                Some(a) => (a + term)?,
            });
        }
    }
    s.ok_or_else(|| candle_core::Error::Msg("no gradient reached any input".into()))
}

/// Central differences of the scalar `f` at `inputs` (f64), on `per_input` random coordinates
/// of each input (all of them when the input is smaller). Returns (coordinate list, estimates).
pub fn fd_check<F>(
    what: &str,
    f: &F,
    inputs: &[Tensor],
    analytic: &[Tensor],
    per_input: usize,
    seed: u64,
    tol: f64,
) where
    F: Fn(&[Tensor]) -> Result<Tensor>,
{
    let mut rng = StdRng::seed_from_u64(seed);
    let eps = 1e-5;
    for (i, inp) in inputs.iter().enumerate() {
        let base = to_vec(inp);
        let an = to_vec(&analytic[i]);
        let scale = an.iter().fold(1e-3f64, |m, v| m.max(v.abs()));
        let coords: Vec<usize> = if base.len() <= per_input {
            (0..base.len()).collect()
        } else {
            (0..per_input)
                .map(|_| rng.random_range(0..base.len()))
                .collect()
        };
        for &j in &coords {
            let eval = |d: f64| -> f64 {
                let mut v = base.clone();
                v[j] += d;
                let mut ts: Vec<Tensor> = inputs.to_vec();
                ts[i] = Tensor::from_vec(v, inp.dims(), &Device::Cpu).expect("tensor");
                let y = f(&ts).expect("f");
                y.to_dtype(DType::F64)
                    .and_then(|y| y.to_scalar::<f64>())
                    .expect("scalar")
            };
            let num = (eval(eps) - eval(-eps)) / (2.0 * eps);
            let err = (num - an[j]).abs() / scale;
            assert!(
                err <= tol,
                "{what}: input {i} coord {j}: analytic {} vs finite difference {num} (rel err {err:e})",
                an[j]
            );
        }
    }
}

/// First- and second-order checks of `f` in f64 against finite differences:
/// ∇f vs FD of f, and ∇s vs FD of s where s = Σᵢ <∇ᵢf, rᵢ> (a scalar function of the gradient).
pub fn check_first_and_second_order<F>(what: &str, f: &F, inputs: &[Tensor], per_input: usize)
where
    F: Fn(&[Tensor]) -> Result<Tensor>,
{
    assert_eq!(
        std::env::var("CANDLE_GRAD_DO_NOT_DETACH").as_deref(),
        Ok("1"),
        "run through cargo test: .cargo/config.toml sets CANDLE_GRAD_DO_NOT_DETACH=1"
    );
    let g1 = grads(f, inputs).expect("first-order grads");
    fd_check(
        &format!("{what} (1st order)"),
        f,
        inputs,
        &g1,
        per_input,
        1,
        1e-7,
    );
    let rs: Vec<Tensor> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| randn(t.dims(), 1000 + i as u64, DType::F64))
        .collect();
    let s = |ts: &[Tensor]| -> Result<Tensor> {
        let vars: Vec<Var> = ts
            .iter()
            .map(|t| Var::from_tensor(t).expect("var"))
            .collect();
        let vt: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
        grad_dot(f, &vt, &rs)
    };
    // Analytic second order: differentiate s through the first backward pass.
    let vars: Vec<Var> = inputs
        .iter()
        .map(|t| Var::from_tensor(t).expect("var"))
        .collect();
    let vt: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let sv = grad_dot(f, &vt, &rs).expect("grad_dot");
    let g2s = sv.backward().expect("second backward");
    let g2: Vec<Tensor> = vt
        .iter()
        .map(|t| {
            g2s.get(t)
                .cloned()
                .unwrap_or_else(|| t.zeros_like().expect("zeros"))
        })
        .collect();
    let total: f64 = g2
        .iter()
        .map(|g| to_vec(g).iter().map(|v| v.abs()).sum::<f64>())
        .sum();
    assert!(
        total > 0.0,
        "{what}: second-order gradient is identically zero (detached?)"
    );
    fd_check(
        &format!("{what} (2nd order)"),
        &s,
        inputs,
        &g2,
        per_input,
        2,
        1e-6,
    );
}
