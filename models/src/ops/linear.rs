//! `y = x · wᵀ` as a custom op whose backward produces `dw` directly in the weight's `(out, in)`
//! layout (`dyᵀ · x`) instead of a transposed `(in, out)` gradient that candle then copies through
//! a strided add. The backward is made of candle matmuls, so it is itself differentiable.

use super::kernels::{contiguous, gemm, storage, with_float, Mat};
use candle_core::backend::BackendStorage;
use candle_core::WithDType as _;
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};

pub(crate) struct LinearOp;
/// `x · wᵀ + b`, followed by ReLU with `relu`, as one op: the output starts as the bias rows
/// and the gemm accumulates onto them (no bias pass), the ReLU runs over it while it is in
/// cache, and there is one graph node instead of two or three (each of which candle's backward
/// starts as zeros and accumulates into).
pub(crate) struct LinearBiasOp {
    pub relu: bool,
}

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
        let (b, i, o) = dims(l1, l2)?;
        same_dtype(&[s1, s2])?;
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

impl CustomOp3 for LinearBiasOp {
    fn name(&self) -> &'static str {
        if self.relu {
            "zoo-linear-bias-relu"
        } else {
            "zoo-linear-bias"
        }
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, i, o) = dims(l1, l2)?;
        if l3.shape().dims() != [o] {
            candle_core::bail!("linear: bias must have shape ({o},), got {:?}", l3.shape());
        }
        same_dtype(&[s1, s2, s3])?;
        with_float!(s1.dtype(), self.name(), |T| {
            let x = contiguous::<T>(s1, l1, self.name())?;
            let w = contiguous::<T>(s2, l2, self.name())?;
            let bias = contiguous::<T>(s3, l3, self.name())?;
            let mut y = Vec::with_capacity(b * o);
            for _ in 0..b {
                y.extend_from_slice(bias);
            }
            gemm(
                b,
                o,
                i,
                &mut y,
                true,
                Mat::rows(x, i),
                x.len(),
                Mat::rows_t(w, i),
                w.len(),
                true,
            );
            if self.relu {
                for v in y.iter_mut() {
                    *v = super::relu::relu_value(*v);
                }
            }
            Ok(storage(y, (b, o)))
        })
    }
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        bias: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dy = &super::relu::through_fused_relu(self.relu, dy, y)?;
        let (dx, dw) = LinearOp.bwd(x, w, y, dy)?;
        let db = if bias.track_op() {
            crate::backprop::param_grad(bias, super::bn::channel_sum(dy)?)
        } else {
            None
        };
        Ok((dx, dw, db))
    }
}

/// `(batch, in, out)` of input `(batch, in)` and weight `(out, in)`.
fn dims(x: &Layout, w: &Layout) -> Result<(usize, usize, usize)> {
    let (b, i) = x.shape().dims2()?;
    let (o, i2) = w.shape().dims2()?;
    if i != i2 {
        candle_core::bail!("linear: input has {i} features, weight expects {i2}");
    }
    Ok((b, i, o))
}

fn same_dtype(s: &[&CpuStorage]) -> Result<()> {
    if s.iter().any(|t| t.dtype() != s[0].dtype()) {
        let d: Vec<_> = s.iter().map(|t| t.dtype()).collect();
        candle_core::bail!("linear: dtype mismatch {d:?}");
    }
    Ok(())
}

pub(crate) fn linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op2(&w.contiguous()?, LinearOp)
}

pub(crate) fn linear_bias(x: &Tensor, w: &Tensor, b: &Tensor, relu: bool) -> Result<Tensor> {
    x.contiguous()?
        .apply_op3(&w.contiguous()?, &b.contiguous()?, LinearBiasOp { relu })
}
