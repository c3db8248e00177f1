//! The primitive ops every model in the zoo goes through: convolution, pooling, linear and
//! batch-norm statistics.
//!
//! Each op has two implementations: candle's own ops (`Backend::Candle`, always used on CUDA and
//! Metal) and the fast CPU path (`Backend::Fast`, the default on CPU) whose backward passes are
//! themselves built from differentiable ops, so second-order meta-gradients stay exact. The
//! backend is a per-thread value ([`with_backend`], [`BackendScope`]), so one process can run
//! both (see `backend`). Both paths agree on ReLU's gradient at 0 (0, as PyTorch) and the
//! candle path creates no zero-size tensors (see [`nonempty`]).
//!
//! The fast path (see `conv`, `winograd`, `pool`, `linear`): convolution is im2col + gemm (or
//! Winograd F(4×4, 3×3) for 3×3 stride-1 layers) with its input and weight gradients as custom
//! ops of their own, each one's backward built from the other two;
//! max pooling is an argmax followed by a gather whose backward is a scatter-add (and vice versa);
//! linear produces its weight gradient directly in the `(out, in)` layout. The reference path
//! routes to candle's ops, except max pooling: candle's `max_pool2d` backward is wrong (scaled by
//! 1/k²), so the reference is an exact composition of reshapes/strided views and `max`.

mod alloc;
mod backend;
mod bias;
mod bn;
mod conv;
mod geom;
mod kernels;
mod linear;
pub mod nonempty;
mod pool;
mod pool_env;
mod relu;
pub(crate) mod sgd;
mod winograd;

use crate::flops::{self, LayerKind};
pub use alloc::keep_freed_memory;
pub use backend::{backend, set_backend, with_backend, Backend, BackendScope};
use candle_core::{DType, Result, Tensor, D};
pub use pool_env::tame_candle_pool;
use std::cell::Cell;

thread_local! {
    static WEIGHTS_ONLY: Cell<bool> = const { Cell::new(false) };
}

/// While alive, backward passes on this thread build gradients whose graphs depend on the
/// upstream gradient only: each op's backward uses *detached* copies of its forward inputs
/// (weights, activations), and [`crate::loss::per_example_ce`] gives `∂ℓ/∂z` with a detached
/// softmax. The gradient values are unchanged. Differentiating such a gradient again is exact
/// with respect to anything that enters through the upstream gradient (the per-example weights
/// of L2RW and Meta-Weight-Net) and drops every term through the parameters (the Hessian), which
/// those meta-gradients never need. `meta::meta_gradient` uses it for its inner step.
pub(crate) struct WeightsOnlyGuard(bool);

impl WeightsOnlyGuard {
    pub(crate) fn new(on: bool) -> Self {
        Self(WEIGHTS_ONLY.with(|w| w.replace(on)))
    }
}

impl Drop for WeightsOnlyGuard {
    fn drop(&mut self) {
        WEIGHTS_ONLY.with(|w| w.set(self.0));
    }
}

/// Whether a [`WeightsOnlyGuard`] is active on this thread.
pub(crate) fn weights_only() -> bool {
    WEIGHTS_ONLY.with(|w| w.get())
}

/// A forward input as a backward pass should use it: detached under [`WeightsOnlyGuard`].
pub(crate) fn saved(t: &Tensor) -> Tensor {
    if weights_only() {
        t.detach()
    } else {
        t.clone()
    }
}

/// The reference implementations (`Backend::Candle`), public so tests and benchmarks can compare
/// against them without changing the thread's backend.
pub mod reference {
    use super::pool;
    use candle_core::{Result, Tensor};

    /// candle's own convolution (its backward uses `conv_transpose2d` and a conv for the kernel).
    pub fn conv2d(
        x: &Tensor,
        w: &Tensor,
        stride: usize,
        padding: usize,
        groups: usize,
    ) -> Result<Tensor> {
        // A contiguous kernel: candle's Metal conv backward reads a strided kernel instead of
        // its contiguous copy (candle #3836; #3735 on the CPU before 0.11), so gradients through
        // a transposed or sliced kernel came out wrong. A no-op for contiguous kernels.
        x.conv2d(&w.contiguous()?, padding, stride, 1, groups)
    }

    /// Exact max pooling from reshapes/strided views and `max`/`maximum` (candle's `max_pool2d`
    /// has a wrong backward). Ties share the gradient here, unlike the fast path.
    pub fn max_pool2d(x: &Tensor, k: usize, stride: usize, padding: usize) -> Result<Tensor> {
        let g = pool::PoolGeom {
            k,
            stride,
            pad: padding,
        };
        let (n, c, h, w) = x.dims4()?;
        let (ho, wo) = g.out_hw(h, w)?;
        if k == stride && padding == 0 {
            let x = x.narrow(2, 0, ho * k)?.narrow(3, 0, wo * k)?;
            return x.reshape((n, c, ho, k, wo, k))?.max(5)?.max(3);
        }
        // General case: the max over the k² strided views of the (-inf)-padded input.
        let hp = (h + 2 * padding).max(k - 1 + stride * ho);
        let wp = (w + 2 * padding).max(k - 1 + stride * wo);
        // Pads only where they have rows or columns: a zero-size tensor is a zero-block
        // kernel launch on CUDA, which fails (candle #2327).
        let neg = |hh: usize, ww: usize| -> Result<Option<Tensor>> {
            super::nonempty::full(f32::NEG_INFINITY, (n, c, hh, ww), x.dtype(), x.device())
        };
        let mut xp = x.clone();
        if hp > h {
            let parts = [neg(padding, w)?, Some(xp), neg(hp - h - padding, w)?];
            xp = Tensor::cat(&parts.iter().flatten().collect::<Vec<_>>(), 2)?;
        }
        if wp > w {
            let parts = [neg(hp, padding)?, Some(xp), neg(hp, wp - w - padding)?];
            xp = Tensor::cat(&parts.iter().flatten().collect::<Vec<_>>(), 3)?;
        }
        let mut acc: Option<Tensor> = None;
        for di in 0..k {
            let rows = xp
                .narrow(2, di, stride * ho)?
                .reshape((n, c, ho, stride, wp))?
                .narrow(3, 0, 1)?
                .squeeze(3)?;
            for dj in 0..k {
                let v = rows
                    .narrow(3, dj, stride * wo)?
                    .reshape((n, c, ho, wo, stride))?
                    .narrow(4, 0, 1)?
                    .squeeze(4)?;
                acc = Some(match acc {
                    None => v,
                    Some(a) => a.maximum(&v)?,
                });
            }
        }
        acc.ok_or_else(|| candle_core::Error::Msg("max_pool2d: empty window".into()))
    }

    /// Batch-norm from candle's reductions and broadcasts (mean/variance keep their gradient).
    pub fn batch_norm_train(
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        eps: f64,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let c = x.dim(1)?;
        let shape = if x.rank() == 4 {
            vec![1, c, 1, 1]
        } else {
            vec![1, c]
        };
        let dims: Vec<usize> = if x.rank() == 4 {
            vec![0, 2, 3]
        } else {
            vec![0]
        };
        let mean = x.mean_keepdim(dims.as_slice())?;
        let centred = x.broadcast_sub(&mean)?;
        let var = centred.sqr()?.mean_keepdim(dims.as_slice())?;
        let y = centred.broadcast_div(&(var.clone() + eps)?.sqrt()?)?;
        let y = y
            .broadcast_mul(&gamma.reshape(shape.as_slice())?)?
            .broadcast_add(&beta.reshape(shape.as_slice())?)?;
        Ok((y, mean.flatten_all()?, var.flatten_all()?))
    }

    /// `x + b[channel]` along dim 1 through candle's broadcast add (its backward reduces over
    /// the broadcast dims with candle's generic reduction).
    pub fn add_bias(x: &Tensor, b: &Tensor) -> Result<Tensor> {
        x.broadcast_add(&super::bn::broadcast_channels(b, x.shape())?)
    }

    /// `x · wᵀ` through candle's matmul (its backward adds a transposed weight gradient).
    pub fn linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
        x.broadcast_matmul(&w.t()?)
    }

    /// ReLU with PyTorch's gradient at exactly 0 (0; candle's `relu` gives 1) and the fast
    /// path's values: NaN passes, −∞ gives 0. A select on `x ≤ 0`, exact at every order.
    pub fn relu(x: &Tensor) -> Result<Tensor> {
        let zero = Tensor::zeros((), x.dtype(), x.device())?.broadcast_as(x.shape())?;
        x.le(&zero)?.where_cond(&zero, x)
    }
}

/// Whether `x` goes through the fast path: selected, on the CPU, and f32/f64.
fn use_fast(x: &Tensor) -> bool {
    backend() == Backend::Fast
        && x.device().is_cpu()
        && matches!(x.dtype(), DType::F32 | DType::F64)
}

/// Whether the other operands share `x`'s dtype and live on the CPU too.
fn same_cpu(x: &Tensor, others: &[&Tensor]) -> bool {
    others
        .iter()
        .all(|t| t.dtype() == x.dtype() && t.device().is_cpu())
}

/// 2-D convolution, NCHW input `x`, weight `(c_out, c_in/groups, kh, kw)`, no bias.
pub fn conv2d(
    x: &Tensor,
    w: &Tensor,
    stride: usize,
    padding: usize,
    groups: usize,
) -> Result<Tensor> {
    let y = if use_fast(x) && w.dtype() == x.dtype() && w.device().is_cpu() {
        let g = geom::Geom::new(x.dims4()?, w.dims4()?, stride, padding, groups)?;
        conv::conv(g, x, w)
    } else {
        reference::conv2d(x, w, stride, padding, groups)
    };
    flops::note(LayerKind::Conv, w, y)
}

/// [`conv2d`] followed by `+ b[channel]` (`b` of shape `(c_out,)`): a convolution layer with
/// bias. The fast path does both in one op (the bias is added while each image's output is in
/// cache, and the gradient graph has one node fewer).
pub fn conv2d_bias(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    stride: usize,
    padding: usize,
    groups: usize,
) -> Result<Tensor> {
    conv_bias_maybe_relu(x, (w, b), (stride, padding, groups), false)
}

/// [`conv2d_bias`] followed by ReLU; on the fast path one op (the ReLU applied while each
/// image's output is in cache, and no graph node of its own).
pub fn conv2d_bias_relu(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    stride: usize,
    padding: usize,
    groups: usize,
) -> Result<Tensor> {
    conv_bias_maybe_relu(x, (w, b), (stride, padding, groups), true)
}

fn conv_bias_maybe_relu(
    x: &Tensor,
    (w, b): (&Tensor, &Tensor),
    (stride, padding, groups): (usize, usize, usize),
    relu_after: bool,
) -> Result<Tensor> {
    if use_fast(x) && same_cpu(x, &[w, b]) {
        let g = geom::Geom::new(x.dims4()?, w.dims4()?, stride, padding, groups)?;
        return flops::note(LayerKind::Conv, w, conv::conv_bias(g, x, w, b, relu_after));
    }
    // Counted by `conv2d`.
    let y = add_bias(&conv2d(x, w, stride, padding, groups)?, b)?;
    if relu_after {
        relu(&y)
    } else {
        Ok(y)
    }
}

/// Max pooling with kernel == stride (2/2), exact gradients at first and second order.
/// Odd trailing rows/columns are dropped, as PyTorch does.
pub fn max_pool2d(x: &Tensor, k: usize) -> Result<Tensor> {
    max_pool2d_ext(x, k, k, 0)
}

/// Max pooling with any window, stride and padding (e.g. 3/2/1 for ImageNet stems); padding
/// acts as -inf. Output size `(h + 2·padding − k) / stride + 1` (floor, as PyTorch). Exact
/// gradients at every order; ties go to the first maximum on the fast path.
pub fn max_pool2d_ext(x: &Tensor, k: usize, stride: usize, padding: usize) -> Result<Tensor> {
    if use_fast(x) {
        return pool::max_pool2d(
            x,
            pool::PoolGeom {
                k,
                stride,
                pad: padding,
            },
        );
    }
    reference::max_pool2d(x, k, stride, padding)
}

/// Global average pooling: `(n, c, h, w)` → `(n, c)`.
pub fn global_avg_pool(x: &Tensor) -> Result<Tensor> {
    x.flatten_from(2)?.mean(D::Minus1)
}

/// ReLU (gradient 0 at 0, as PyTorch). The fast path fuses the backward into one masked copy.
pub fn relu(x: &Tensor) -> Result<Tensor> {
    if use_fast(x) {
        relu::relu(x)
    } else {
        reference::relu(x)
    }
}

/// `relu(a + b)` (a residual block's output): one pass and one graph node on the fast path.
pub fn add_relu(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if use_fast(a) && same_cpu(a, &[b]) && a.shape() == b.shape() {
        relu::add_relu(a, b)
    } else {
        relu(&(a + b)?)
    }
}

/// Linear layer `x · wᵀ + b` with PyTorch's weight layout `(out, in)`.
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    let fast = linear_is_fast(x, w);
    if let (true, Some(b)) = (fast, b) {
        if same_cpu(x, &[b]) {
            return flops::note(LayerKind::Linear, w, linear::linear_bias(x, w, b, false));
        }
    }
    let y = if fast {
        linear::linear(x, w)
    } else {
        reference::linear(x, w)
    };
    let y = flops::note(LayerKind::Linear, w, y)?;
    match b {
        // The bias is on the last dim; for 2-D outputs that is dim 1, which `add_bias` serves.
        Some(b) if y.rank() == 2 => add_bias(&y, b),
        Some(b) => y.broadcast_add(b),
        None => Ok(y),
    }
}

/// Whether [`linear`] of `x` by `w` takes the fast path (2-D input, same dtype, CPU).
fn linear_is_fast(x: &Tensor, w: &Tensor) -> bool {
    use_fast(x) && x.rank() == 2 && w.dtype() == x.dtype() && w.device().is_cpu()
}

/// `relu(x · wᵀ + b)`: [`linear`] followed by ReLU, one op on the fast path (the ReLU runs over
/// the output while it is in cache and has no graph node of its own).
pub fn linear_relu(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    if linear_is_fast(x, w) && same_cpu(x, &[b]) {
        flops::note(LayerKind::Linear, w, linear::linear_bias(x, w, b, true))
    } else {
        // Counted by `linear`.
        relu(&linear(x, w, Some(b))?)
    }
}

/// `x + b` with a bias `b` of shape `(C,)` along dim 1 of `x` (`(N, C)` or `(N, C, H, W)`): the
/// bias of a linear or convolution layer. The fast path sums the bias gradient per channel in
/// one pass; candle's broadcast add reduces over (N, H, W) with its generic reduction.
pub fn add_bias(x: &Tensor, b: &Tensor) -> Result<Tensor> {
    if use_fast(x) && x.rank() >= 2 && same_cpu(x, &[b]) {
        bias::add_bias(x, b)
    } else {
        reference::add_bias(x, b)
    }
}

/// Batch-norm in training mode over (N, H, W) per channel (input `(N, C)` or `(N, C, H, W)`):
/// returns the normalised and affine-transformed output plus the batch mean and (biased)
/// variance, so the caller can update running statistics on real steps only. On the fast path
/// the mean/variance are plain values (no gradient flows through them); `y` is exact at every
/// order.
pub fn batch_norm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
) -> Result<(Tensor, Tensor, Tensor)> {
    if use_fast(x) && same_cpu(x, &[gamma, beta]) {
        bn::batch_norm_train(x, gamma, beta, eps, false)
    } else {
        reference::batch_norm_train(x, gamma, beta, eps)
    }
}

/// [`batch_norm_train`] followed by ReLU: `(relu(y), mean, variance)`. On the fast path one op
/// (the ReLU is applied in batch norm's output pass, and its backward masks the upstream
/// gradient before batch norm's): one activation pass and one graph node fewer per BN → ReLU.
pub fn batch_norm_relu_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
) -> Result<(Tensor, Tensor, Tensor)> {
    if use_fast(x) && same_cpu(x, &[gamma, beta]) {
        bn::batch_norm_train(x, gamma, beta, eps, true)
    } else {
        let (y, mean, var) = reference::batch_norm_train(x, gamma, beta, eps)?;
        Ok((relu(&y)?, mean, var))
    }
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
    let scale = (gamma / (running_var + eps)?.sqrt()?)?;
    let shift = (beta - (running_mean * &scale)?)?;
    if use_fast(x) && same_cpu(x, &[&scale, &shift]) {
        return x
            .contiguous()?
            .apply_op3(&scale.contiguous()?, &shift.contiguous()?, bn::AffineOp);
    }
    let c = x.dim(1)?;
    let shape = if x.rank() == 4 {
        vec![1, c, 1, 1]
    } else {
        vec![1, c]
    };
    x.broadcast_mul(&scale.reshape(shape.as_slice())?)?
        .broadcast_add(&shift.reshape(shape.as_slice())?)
}
