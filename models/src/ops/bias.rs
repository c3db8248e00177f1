//! `x + b[channel]` along dim 1 as one custom op: its backward passes the gradient through
//! unchanged and sums it per channel in one pass ([`super::bn::channel_sum`]). candle's
//! `broadcast_add` backward sums over the broadcast dims with its generic reduction, which for
//! dims (0, 2, 3) ran single-threaded and took ~25 % of a LeNet train step here.

use super::bn::{channel_sum, ncr};
use super::kernels::{contiguous, storage, with_float};
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

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
        let (_, c, r) = ncr(l1.shape())?;
        if l2.shape().dims() != [c] {
            candle_core::bail!("bias: expected shape ({c},), got {:?}", l2.shape().dims());
        }
        if s1.dtype() != s2.dtype() {
            candle_core::bail!("bias: dtype mismatch {:?} vs {:?}", s1.dtype(), s2.dtype());
        }
        with_float!(s1.dtype(), self.name(), |T| {
            let x = contiguous::<T>(s1, l1, self.name())?;
            let b = contiguous::<T>(s2, l2, self.name())?;
            // One output buffer written per image in place (a `flat_map_iter(..).collect()`
            // here gathered per-thread lists of vectors and copied them: 11 % of a LeNet step).
            // Written into uninitialised capacity: a zero fill first was a pass of its own.
            let (cr, r1) = ((c * r).max(1), r.max(1));
            let mut out: Vec<T> = Vec::with_capacity(x.len());
            out.spare_capacity_mut()[..x.len()]
                .par_chunks_mut(cr)
                .zip(x.par_chunks(cr))
                .for_each(|(oi, xi)| {
                    for ((oc, xc), &bc) in oi.chunks_mut(r1).zip(xi.chunks(r1)).zip(b) {
                        for (o, v) in oc.iter_mut().zip(xc) {
                            o.write(*v + bc);
                        }
                    }
                });
            // SAFETY: the chunks above cover all `x.len()` elements (`x.len()` is a multiple of
            // `c·r`, the channels cover `c·r` of each chunk) and each was written once.
            unsafe { out.set_len(x.len()) };
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
            Some(channel_sum(g)?)
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
