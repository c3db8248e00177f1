//! Max pooling as "argmax indices, then gather": the indices are computed without gradient, and
//! the gather/scatter pair below are each other's backward, so the pooled values are exactly
//! differentiable to any order (max pooling is locally a fixed selection of inputs).
//! Ties go to the first maximum in the window, as in PyTorch.

use super::kernels::{contiguous, storage, u32_contiguous, with_float, Real};
use candle_core::backend::BackendStorage;
use candle_core::WithDType as _;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Window geometry of a max pool over an `(n, c, h, w)` input.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PoolGeom {
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
}

impl PoolGeom {
    pub fn out_hw(&self, h: usize, w: usize) -> Result<(usize, usize)> {
        let PoolGeom { k, stride, pad } = *self;
        if k == 0 || stride == 0 || 2 * pad > k {
            candle_core::bail!(
                "max_pool2d: need kernel>0, stride>0, padding<=kernel/2 (got {k}/{stride}/{pad})"
            );
        }
        if h + 2 * pad < k || w + 2 * pad < k {
            candle_core::bail!("max_pool2d: kernel {k} larger than padded input {h}x{w}");
        }
        Ok((
            (h + 2 * pad - k) / stride + 1,
            (w + 2 * pad - k) / stride + 1,
        ))
    }
}

/// Computes, for every output position, the flat index (into the whole input) of its window's
/// first maximum. No backward: the indices are piecewise constant.
struct ArgmaxOp(PoolGeom);

fn argmax<T: Real>(
    g: PoolGeom,
    x: &[T],
    (n, c, h, w): (usize, usize, usize, usize),
) -> Result<Vec<u32>> {
    let (ho, wo) = g.out_hw(h, w)?;
    if n * c * h * w > u32::MAX as usize {
        candle_core::bail!("max_pool2d: input too large for u32 indices");
    }
    let mut idx = vec![0u32; n * c * ho * wo];
    idx.par_chunks_mut(ho * wo)
        .enumerate()
        .for_each(|(plane, out)| {
            let base = plane * h * w;
            let xp = &x[base..base + h * w];
            for oh in 0..ho {
                let h0 = (oh * g.stride) as isize - g.pad as isize;
                let (ha, hb) = (h0.max(0) as usize, ((h0 + g.k as isize) as usize).min(h));
                for ow in 0..wo {
                    let w0 = (ow * g.stride) as isize - g.pad as isize;
                    let (wa, wb) = (w0.max(0) as usize, ((w0 + g.k as isize) as usize).min(w));
                    let mut best = ha * w + wa;
                    let mut bv = xp[best];
                    for ih in ha..hb {
                        let row = &xp[ih * w + wa..ih * w + wb];
                        for (j, &v) in row.iter().enumerate() {
                            // `v != v` picks up NaN so it propagates, as in PyTorch. Selects
                            // rather than branches: on real activations the branch is a coin
                            // flip, and its mispredictions made this loop 6 % of a LeNet step.
                            #[allow(clippy::eq_op)]
                            let take = v > bv || v != v;
                            bv = if take { v } else { bv };
                            best = if take { ih * w + wa + j } else { best };
                        }
                    }
                    out[oh * wo + ow] = (base + best) as u32;
                }
            }
        });
    Ok(idx)
}

impl CustomOp1 for ArgmaxOp {
    fn name(&self) -> &'static str {
        "zoo-max-pool-argmax"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let dims = l.shape().dims4()?;
        let (ho, wo) = self.0.out_hw(dims.2, dims.3)?;
        with_float!(s.dtype(), self.name(), |T| {
            let x = contiguous::<T>(s, l, self.name())?;
            let idx = argmax::<T>(self.0, x, dims)?;
            Ok((CpuStorage::U32(idx), (dims.0, dims.1, ho, wo).into()))
        })
    }
}

/// `out[i] = src[idx[i]]` with `idx` pointing into plane `i / out_plane` of `src`.
pub(crate) struct GatherOp {
    src_shape: Shape,
    planes: usize,
}

/// `out = zeros(src_shape); out[idx[i]] += g[i]`: the adjoint of [`GatherOp`].
pub(crate) struct ScatterAddOp {
    src_shape: Shape,
    planes: usize,
}

fn plane_sizes(src: &Shape, idx_len: usize, planes: usize) -> Result<(usize, usize)> {
    let n = src.elem_count();
    if planes == 0 || !n.is_multiple_of(planes) || !idx_len.is_multiple_of(planes) {
        candle_core::bail!("max_pool2d: inconsistent plane count {planes}");
    }
    Ok((n / planes, idx_len / planes))
}

impl CustomOp2 for GatherOp {
    fn name(&self) -> &'static str {
        "zoo-max-pool-gather"
    }
    fn cpu_fwd(
        &self,
        s: &CpuStorage,
        l: &Layout,
        si: &CpuStorage,
        li: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        if l.shape() != &self.src_shape {
            candle_core::bail!(
                "{}: source shape {:?} != {:?}",
                self.name(),
                l.shape(),
                self.src_shape
            );
        }
        let idx = u32_contiguous(si, li, self.name())?;
        let (ip, op) = plane_sizes(&self.src_shape, idx.len(), self.planes)?;
        with_float!(s.dtype(), self.name(), |T| {
            let src = contiguous::<T>(s, l, self.name())?;
            let mut out = vec![T::from_f64(0.0); idx.len()];
            let bad = out
                .par_chunks_mut(op.max(1))
                .zip(idx.par_chunks(op.max(1)))
                .enumerate()
                .map(|(p, (o, ix))| {
                    let lo = p * ip;
                    let mut bad = false;
                    for (v, &i) in o.iter_mut().zip(ix) {
                        let i = i as usize;
                        if i < lo || i >= lo + ip {
                            bad = true;
                        } else {
                            *v = src[i];
                        }
                    }
                    bad
                })
                .reduce(|| false, |a, b| a || b);
            if bad {
                candle_core::bail!("{}: index outside its plane", self.name());
            }
            Ok(storage(out, li.shape().clone()))
        })
    }
    fn bwd(
        &self,
        _src: &Tensor,
        idx: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let op = ScatterAddOp {
            src_shape: self.src_shape.clone(),
            planes: self.planes,
        };
        Ok((Some(g.contiguous()?.apply_op2(idx, op)?), None))
    }
}

impl CustomOp2 for ScatterAddOp {
    fn name(&self) -> &'static str {
        "zoo-max-pool-scatter-add"
    }
    fn cpu_fwd(
        &self,
        s: &CpuStorage,
        l: &Layout,
        si: &CpuStorage,
        li: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        if l.shape() != li.shape() {
            candle_core::bail!(
                "{}: gradient shape {:?} != index shape {:?}",
                self.name(),
                l.shape(),
                li.shape()
            );
        }
        let idx = u32_contiguous(si, li, self.name())?;
        let (ip, op) = plane_sizes(&self.src_shape, idx.len(), self.planes)?;
        with_float!(s.dtype(), self.name(), |T| {
            let g = contiguous::<T>(s, l, self.name())?;
            let mut out = vec![T::from_f64(0.0); self.src_shape.elem_count()];
            let bad = out
                .par_chunks_mut(ip.max(1))
                .zip(idx.par_chunks(op.max(1)).zip(g.par_chunks(op.max(1))))
                .enumerate()
                .map(|(p, (o, (ix, gv)))| {
                    let lo = p * ip;
                    let mut bad = false;
                    for (&i, &v) in ix.iter().zip(gv) {
                        let i = i as usize;
                        if i < lo || i >= lo + ip {
                            bad = true;
                        } else {
                            o[i - lo] += v;
                        }
                    }
                    bad
                })
                .reduce(|| false, |a, b| a || b);
            if bad {
                candle_core::bail!("{}: index outside its plane", self.name());
            }
            Ok(storage(out, self.src_shape.clone()))
        })
    }
    fn bwd(
        &self,
        _g: &Tensor,
        idx: &Tensor,
        _res: &Tensor,
        gg: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let op = GatherOp {
            src_shape: self.src_shape.clone(),
            planes: self.planes,
        };
        Ok((Some(gg.contiguous()?.apply_op2(idx, op)?), None))
    }
}

/// Max pooling with window `k`, `stride`, `pad` (padding never wins: it acts as -inf).
pub(crate) fn max_pool2d(x: &Tensor, g: PoolGeom) -> Result<Tensor> {
    let x = x.contiguous()?;
    let (n, c, _, _) = x.dims4()?;
    let idx = x.apply_op1_no_bwd(&ArgmaxOp(g))?;
    let op = GatherOp {
        src_shape: x.shape().clone(),
        planes: n * c,
    };
    x.apply_op2(&idx, op)
}
