//! ReLU whose backward is one fused masked copy (`g·[x > 0]`) instead of candle's
//! compare + cast + multiply + accumulate; the mask op is linear in `g`, so it is its own backward.

use super::kernels::{contiguous, par_fill, same_shape, storage, with_float, Real};
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};

const CHUNK: usize = 1 << 14;

pub(crate) struct ReluOp;
/// `relu(a + b)` in one pass (a residual block's sum and activation); its backward is one mask
/// shared by both inputs.
pub(crate) struct AddReluOp;
/// `g·[x > 0]` (gradient at 0 is 0, as in PyTorch).
pub(crate) struct ReluMaskOp;

/// `max(v, 0)` for every ReLU of the fast path, fused ones included: `!(v <= 0)` lets NaN
/// through, as PyTorch does, so NaN guards still see it.
#[inline(always)]
#[allow(clippy::neg_cmp_op_on_partial_ord)] // the negation is the point: NaN passes
pub(crate) fn relu_value<T: Real>(v: T) -> T {
    let zero = T::from_f64(0.0);
    if !(v <= zero) {
        v
    } else {
        zero
    }
}

fn relu_fwd<T: Real>(x: &[T]) -> Vec<T> {
    par_fill(x.len(), CHUNK, |s, out| {
        for (y, &b) in out.iter_mut().zip(&x[s..]) {
            y.write(relu_value(b));
        }
    })
}

fn add_relu_fwd<T: Real>(a: &[T], b: &[T]) -> Vec<T> {
    par_fill(a.len(), CHUNK, |s, out| {
        for ((y, &u), &v) in out.iter_mut().zip(&a[s..]).zip(&b[s..]) {
            y.write(relu_value(u + v));
        }
    })
}

fn mask<T: Real>(g: &[T], x: &[T]) -> Vec<T> {
    let zero = T::from_f64(0.0);
    par_fill(g.len(), CHUNK, |s, out| {
        for ((y, &gv), &xv) in out.iter_mut().zip(&g[s..]).zip(&x[s..]) {
            y.write(if xv > zero { gv } else { zero });
        }
    })
}

impl CustomOp1 for ReluOp {
    fn name(&self) -> &'static str {
        "zoo-relu"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        with_float!(s.dtype(), self.name(), |T| {
            let x = contiguous::<T>(s, l, self.name())?;
            Ok(storage(relu_fwd(x), l.shape().clone()))
        })
    }
    fn bwd(&self, x: &Tensor, _y: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(
            g.contiguous()?.apply_op2(&super::saved(x), ReluMaskOp)?,
        ))
    }
}

impl CustomOp2 for AddReluOp {
    fn name(&self) -> &'static str {
        "zoo-add-relu"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        same_shape(self.name(), l1, l2)?;
        with_float!(s1.dtype(), self.name(), |T| {
            let a = contiguous::<T>(s1, l1, self.name())?;
            let b = contiguous::<T>(s2, l2, self.name())?;
            Ok(storage(add_relu_fwd(a, b), l1.shape().clone()))
        })
    }
    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        y: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        // y > 0 exactly where a + b > 0.
        let m = g.contiguous()?.apply_op2(&y.detach(), ReluMaskOp)?;
        Ok((a.track_op().then(|| m.clone()), b.track_op().then_some(m)))
    }
}

impl CustomOp2 for ReluMaskOp {
    fn name(&self) -> &'static str {
        "zoo-relu-mask"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        same_shape(self.name(), l1, l2)?;
        with_float!(s1.dtype(), self.name(), |T| {
            let g = contiguous::<T>(s1, l1, self.name())?;
            let x = contiguous::<T>(s2, l2, self.name())?;
            Ok(storage(mask(g, x), l1.shape().clone()))
        })
    }
    fn bwd(
        &self,
        g: &Tensor,
        x: &Tensor,
        _res: &Tensor,
        gg: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        // Linear in g; piecewise constant (zero derivative a.e.) in x.
        let dg = if g.track_op() {
            Some(gg.contiguous()?.apply_op2(x, ReluMaskOp)?)
        } else {
            None
        };
        Ok((dg, None))
    }
}

pub(crate) fn relu(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(ReluOp)
}

/// The upstream gradient `g` of an op whose output `y` is followed by a fused ReLU (`relu`): the
/// ReLU's backward `g·[y > 0]` (`relu(u) > 0` exactly where `u > 0`), or `g` itself.
pub(crate) fn through_fused_relu(relu: bool, g: &Tensor, y: &Tensor) -> Result<Tensor> {
    if relu {
        g.contiguous()?.apply_op2(&y.detach(), ReluMaskOp)
    } else {
        Ok(g.clone())
    }
}

pub(crate) fn add_relu(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    a.contiguous()?.apply_op2(&b.contiguous()?, AddReluOp)
}
