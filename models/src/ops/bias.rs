//! `x + b[channel]` along dim 1 as one custom op: its backward passes the gradient through
//! unchanged and sums it per channel in one pass ([`super::bn::channel_sum`]). candle's
//! `broadcast_add` backward sums over the broadcast dims with its generic reduction, which for
//! dims (0, 2, 3) ran single-threaded and took ~25 % of a LeNet train step here.

use super::bn::{channel_sum, map_blocks, ncr};
use super::kernels::{contiguous, storage, with_float};
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};

pub(crate) struct BiasOp;

impl CustomOp2 for BiasOp {
    fn name(&self) -> &'static str {
        "zoo-bias"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, c, r) = ncr(l1.shape())?;
        if l2.shape().dims() != [c] {
            candle_core::bail!("bias: expected shape ({c},), got {:?}", l2.shape().dims());
        }
        if s1.dtype() != s2.dtype() {
            candle_core::bail!("bias: dtype mismatch {:?} vs {:?}", s1.dtype(), s2.dtype());
        }
        with_float!(s1.dtype(), self.name(), |T| {
            let x = contiguous::<T>(s1, l1, self.name())?;
            let b = contiguous::<T>(s2, l2, self.name())?;
            // Per (image, channel) block, into uninitialised capacity (`map_blocks`): a zero
            // fill first was a pass of its own, and collecting per-thread vectors was 11 % of
            // a LeNet step.
            let out = map_blocks::<T, _>((n, c, r), x.len(), |o, ch, out| {
                for (y, v) in out.iter_mut().zip(&x[o..o + r]) {
                    y.write(*v + b[ch]);
                }
            });
            Ok(storage(out, l1.shape().clone()))
        })
    }
    fn bwd(
        &self,
        x: &Tensor,
        b: &Tensor,
        _y: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dx = x.track_op().then(|| g.clone());
        let db = if b.track_op() {
            crate::backprop::param_grad(b, channel_sum(g)?)
        } else {
            None
        };
        Ok((dx, db))
    }
}

/// `x + b` with `b` of shape `(c,)` broadcast along dim 1 of `x` (`(N, C)` or `(N, C, …)`).
pub(crate) fn add_bias(x: &Tensor, b: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op2(&b.contiguous()?, BiasOp)
}
