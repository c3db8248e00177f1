//! `y = x · wᵀ` as a custom op whose backward produces `dw` directly in the weight's `(out, in)`
//! layout (`dyᵀ · x`) instead of a transposed `(in, out)` gradient that candle then copies through
//! a strided add. The backward is made of candle matmuls, so it is itself differentiable.

use super::kernels::{contiguous, gemm, storage, with_float, Mat};
use candle_core::backend::BackendStorage;
use candle_core::WithDType as _;
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};

pub(crate) struct LinearOp;

impl CustomOp2 for LinearOp {
    fn name(&self) -> &'static str {
        "zoo-linear"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, i) = l1.shape().dims2()?;
        let (o, i2) = l2.shape().dims2()?;
        if i != i2 {
            candle_core::bail!("linear: input has {i} features, weight expects {i2}");
        }
        if s1.dtype() != s2.dtype() {
            candle_core::bail!(
                "linear: dtype mismatch {:?} vs {:?}",
                s1.dtype(),
                s2.dtype()
            );
        }
        with_float!(s1.dtype(), self.name(), |T| {
            let x = contiguous::<T>(s1, l1, self.name())?;
            let w = contiguous::<T>(s2, l2, self.name())?;
            let mut y = vec![T::from_f64(0.0); b * o];
            gemm(
                b,
                o,
                i,
                &mut y,
                false,
                Mat::rows(x, i),
                x.len(),
                Mat::rows_t(w, i),
                w.len(),
                true,
            );
            Ok(storage(y, (b, o)))
        })
    }
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dx = if x.track_op() {
            Some(dy.matmul(&super::saved(w))?)
        } else {
            None
        };
        let dw = if w.track_op() {
            crate::backprop::param_grad(w, dy.t()?.matmul(&super::saved(x))?)
        } else {
            None
        };
        Ok((dx, dw))
    }
}

pub(crate) fn linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op2(&w.contiguous()?, LinearOp)
}
