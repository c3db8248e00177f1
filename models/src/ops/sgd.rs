//! SGD's update written in place, one pass per tensor.
//!
//! As tensor ops, one momentum step allocates five parameter-sized temporaries (`buf·μ`,
//! `g·(1−d)`, their sum, `g·lr`, `θ − g·lr`) and then copies the result into the variable; on the
//! 784-1200-1200-10 MLP that is most of the update's time. These two kernels compute the same
//! expressions, in the same order and precision (so the numbers are bit-identical), straight into
//! the momentum buffer and the variable's storage. Updates are not differentiated, so no backward
//! is needed.

use super::kernels::{contiguous, same_shape, with_float, Real};
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, InplaceOp3, Layout, Result, Tensor};

/// PyTorch's SGD hyper-parameters for one step.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SgdStep {
    pub lr: f64,
    pub momentum: f64,
    pub dampening: f64,
    pub weight_decay: f64,
    pub nesterov: bool,
}

/// The contiguous mutable data of `s` under `l`.
fn contiguous_mut<'a, T: Real>(s: &'a mut CpuStorage, l: &Layout, op: &str) -> Result<&'a mut [T]> {
    let (a, b) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg(format!("{op}: destination must be contiguous")))?;
    let data = T::slice_mut(s)
        .ok_or_else(|| candle_core::Error::Msg(format!("{op}: expected {:?} storage", T::DTYPE)))?;
    Ok(&mut data[a..b])
}

/// `g + θ·wd` (the coupled weight decay), as the tensor version computes it.
#[inline(always)]
fn decayed<T: Real>(g: T, theta: T, wd: T, with_wd: bool) -> T {
    if with_wd {
        g + theta * wd
    } else {
        g
    }
}

/// `buf ← buf·μ + (g + θ·wd)·(1 − d)`; sources `(g, θ)`.
struct MomentumOp(SgdStep);

impl InplaceOp3 for MomentumOp {
    fn name(&self) -> &'static str {
        "zoo-sgd-momentum"
    }
    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<()> {
        same_shape(self.name(), l1, l2)?;
        same_shape(self.name(), l1, l3)?;
        let h = self.0;
        with_float!(s2.dtype(), self.name(), |T| {
            let g = contiguous::<T>(s2, l2, self.name())?;
            let theta = contiguous::<T>(s3, l3, self.name())?;
            let buf = contiguous_mut::<T>(s1, l1, self.name())?;
            let (mu, keep, wd) = (
                h.momentum as T,
                (1.0 - h.dampening) as T,
                h.weight_decay as T,
            );
            let with_wd = h.weight_decay != 0.0;
            for ((b, &g), &t) in buf.iter_mut().zip(g).zip(theta) {
                *b = *b * mu + decayed(g, t, wd, with_wd) * keep;
            }
            Ok(())
        })
    }
}

/// `θ ← θ − lr·d` with `d = g + θ·wd` (no momentum), `buf` (heavy ball) or
/// `g + θ·wd + buf·μ` (Nesterov); sources `(g, buf)` (`buf` unused without momentum).
struct ParamOp(SgdStep);

impl InplaceOp3 for ParamOp {
    fn name(&self) -> &'static str {
        "zoo-sgd-param"
    }
    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<()> {
        same_shape(self.name(), l1, l2)?;
        same_shape(self.name(), l1, l3)?;
        let h = self.0;
        with_float!(s2.dtype(), self.name(), |T| {
            let g = contiguous::<T>(s2, l2, self.name())?;
            let buf = contiguous::<T>(s3, l3, self.name())?;
            let theta = contiguous_mut::<T>(s1, l1, self.name())?;
            let (lr, mu, wd) = (h.lr as T, h.momentum as T, h.weight_decay as T);
            let with_wd = h.weight_decay != 0.0;
            let heavy_ball = h.momentum != 0.0 && !h.nesterov;
            for ((t, &g), &b) in theta.iter_mut().zip(g).zip(buf) {
                let d = if heavy_ball {
                    b
                } else if h.momentum != 0.0 {
                    decayed(g, *t, wd, with_wd) + b * mu
                } else {
                    decayed(g, *t, wd, with_wd)
                };
                *t -= d * lr;
            }
            Ok(())
        })
    }
}

/// Whether the in-place kernels can run on these tensors (fast path selected, CPU, one float
/// dtype, contiguous, one shape); otherwise the caller uses tensor ops.
pub(crate) fn applicable(theta: &Tensor, g: &Tensor, buf: Option<&Tensor>) -> bool {
    let ok = |t: &Tensor| {
        t.device().is_cpu()
            && t.dtype() == theta.dtype()
            && t.is_contiguous()
            && t.shape() == theta.shape()
    };
    super::backend() == super::Backend::Fast
        && matches!(
            theta.dtype(),
            candle_core::DType::F32 | candle_core::DType::F64
        )
        && ok(theta)
        && ok(g)
        && buf.is_none_or(ok)
}

/// `buf ← buf·μ + (g + θ·wd)·(1 − d)` in place (every step after the first).
pub(crate) fn update_momentum(buf: &Tensor, g: &Tensor, theta: &Tensor, h: SgdStep) -> Result<()> {
    buf.inplace_op3(g, theta, &MomentumOp(h))
}

/// `θ ← θ − lr·d` in place, `d` as in PyTorch from `g`, the weight decay and the (already
/// updated) momentum buffer; `buf = None` means momentum is off.
pub(crate) fn update_param(
    theta: &Tensor,
    g: &Tensor,
    buf: Option<&Tensor>,
    h: SgdStep,
) -> Result<()> {
    match buf {
        Some(b) => theta.inplace_op3(g, b, &ParamOp(h)),
        None => theta.inplace_op3(g, g, &ParamOp(SgdStep { momentum: 0.0, ..h })),
    }
}
