//! The primitive ops every model in the zoo goes through: convolution, pooling, linear and
//! batch-norm statistics.
//!
//! Each op has two implementations: candle's own ops (`Backend::Candle`, always used on CUDA and
//! Metal) and the fast CPU path (`Backend::Fast`, the default on CPU) whose backward passes are
//! themselves built from differentiable ops, so second-order meta-gradients stay exact.
//!
//! This file currently routes everything to candle's ops (with the exact reshape+max pooling,
//! since candle's `max_pool2d` backward is wrong); the fast path replaces the bodies.

use candle_core::{Result, Tensor, D};
use std::sync::atomic::{AtomicU8, Ordering};

/// Which implementation the ops use on CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// candle's own ops (reference; used on CUDA/Metal regardless of this setting).
    Candle,
    /// im2col/gemm custom ops with differentiable backwards (CPU only).
    Fast,
}

static BACKEND: AtomicU8 = AtomicU8::new(1);

/// Select the CPU implementation for all following ops (process-wide).
pub fn set_backend(b: Backend) {
    BACKEND.store(
        match b {
            Backend::Candle => 0,
            Backend::Fast => 1,
        },
        Ordering::Relaxed,
    );
}

/// The CPU implementation currently selected.
pub fn backend() -> Backend {
    match BACKEND.load(Ordering::Relaxed) {
        0 => Backend::Candle,
        _ => Backend::Fast,
    }
}

/// 2-D convolution, NCHW input `x`, weight `(c_out, c_in/groups, kh, kw)`, no bias.
pub fn conv2d(x: &Tensor, w: &Tensor, stride: usize, padding: usize, groups: usize) -> Result<Tensor> {
    x.conv2d(w, padding, stride, 1, groups)
}

/// Max pooling with kernel == stride (2/2), exact gradients at first and second order.
/// Odd trailing rows/columns are dropped, as PyTorch does.
pub fn max_pool2d(x: &Tensor, k: usize) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let (ho, wo) = (h / k, w / k);
    let x = x.narrow(2, 0, ho * k)?.narrow(3, 0, wo * k)?;
    x.reshape((n, c, ho, k, wo, k))?.max(5)?.max(3)
}

/// Global average pooling: `(n, c, h, w)` → `(n, c)`.
pub fn global_avg_pool(x: &Tensor) -> Result<Tensor> {
    x.flatten_from(2)?.mean(D::Minus1)
}

/// Linear layer `x · wᵀ + b` with PyTorch's weight layout `(out, in)`.
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    let y = x.matmul(&w.t()?)?;
    match b {
        Some(b) => y.broadcast_add(b),
        None => Ok(y),
    }
}

/// Batch-norm in training mode over (N, H, W) per channel: returns the normalised and
/// affine-transformed output plus the batch mean and (biased) variance, so the caller can update
/// running statistics on real steps only.
pub fn batch_norm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
) -> Result<(Tensor, Tensor, Tensor)> {
    let c = x.dim(1)?;
    let shape = if x.rank() == 4 { vec![1, c, 1, 1] } else { vec![1, c] };
    let dims: Vec<usize> = if x.rank() == 4 { vec![0, 2, 3] } else { vec![0] };
    let mean = x.mean_keepdim(dims.as_slice())?;
    let centred = x.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim(dims.as_slice())?;
    let y = centred.broadcast_div(&(var.clone() + eps)?.sqrt()?)?;
    let y = y
        .broadcast_mul(&gamma.reshape(shape.as_slice())?)?
        .broadcast_add(&beta.reshape(shape.as_slice())?)?;
    Ok((y, mean.flatten_all()?, var.flatten_all()?))
}

/// Batch-norm in evaluation mode with running statistics.
pub fn batch_norm_eval(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    eps: f64,
) -> Result<Tensor> {
    let c = x.dim(1)?;
    let shape = if x.rank() == 4 { vec![1, c, 1, 1] } else { vec![1, c] };
    let scale = (gamma / (running_var + eps)?.sqrt()?)?;
    let shift = (beta - (running_mean * &scale)?)?;
    x.broadcast_mul(&scale.reshape(shape.as_slice())?)?
        .broadcast_add(&shift.reshape(shape.as_slice())?)
}
