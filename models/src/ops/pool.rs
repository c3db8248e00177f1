//! Max pooling as "argmax indices, then gather": the indices are computed without gradient, and
//! the gather/scatter pair below are each other's backward, so the pooled values are exactly
//! differentiable to any order (max pooling is locally a fixed selection of inputs).
//! Ties go to the first maximum in the window, as in PyTorch.

use super::kernels::{contiguous, par_fill, par_zeroed, storage, u32_contiguous, with_float, Real};
use candle_core::backend::BackendStorage;
use candle_core::WithDType as _;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};

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

fn argmax<T: Tap>(
    g: PoolGeom,
    x: &[T],
    (n, c, h, w): (usize, usize, usize, usize),
) -> Result<Vec<u32>> {
    let (ho, wo) = g.out_hw(h, w)?;
    if n * c * h * w > u32::MAX as usize {
        candle_core::bail!("max_pool2d: input too large for u32 indices");
    }
    let mut idx = vec![0u32; n * c * ho * wo];
    // Input offset of each window tap from its window's corner (the same for every plane).
    let tap_offset: Vec<usize> = (0..g.k * g.k).map(|t| (t / g.k) * w + t % g.k).collect();
    idx.par_chunks_mut(ho * wo).enumerate().for_each_init(
        || PlaneScratch::new(ho * wo),
        |scratch, (plane, out)| {
            let base = plane * h * w;
            let xp = &x[base..base + h * w];
            argmax_plane(g, xp, (h, w), wo, &tap_offset, base as u32, out, scratch);
        },
    );
    Ok(idx)
}

/// The first-maximum rule of every argmax path, one step: where `v` beats the running maximum
/// `b` (strictly, or is NaN), take it and record `tap` in `i`. Bit selects, not branches or
/// conditional stores, so that loops over it vectorise.
pub(crate) trait Take: Sized {
    fn take(b: &mut Self, i: &mut u32, v: Self, tap: u32);
}

/// One window tap over a whole plane of outputs ([`Take`] for every output), and the four taps
/// of one 2×2 window.
pub(crate) trait Tap: Real + Take {
    fn take_max(bv: &mut [Self], bt: &mut [u32], src: &[Self], tap: u32);
    /// The tap of the maximum of four, by the same rule starting from tap 0.
    fn first_max4(v: [Self; 4]) -> u32;
}

macro_rules! impl_tap {
    ($t:ty, $bits:ty) => {
        impl Tap for $t {
            #[inline]
            fn take_max(bv: &mut [Self], bt: &mut [u32], src: &[Self], tap: u32) {
                for ((b, i), &v) in bv.iter_mut().zip(bt.iter_mut()).zip(src) {
                    Self::take(b, i, v, tap);
                }
            }
            #[inline(always)]
            fn first_max4(v: [Self; 4]) -> u32 {
                let (mut b, mut i) = (v[0], 0u32);
                for (tap, &x) in v.iter().enumerate().skip(1) {
                    Self::take(&mut b, &mut i, x, tap as u32);
                }
                i
            }
        }

        impl Take for $t {
            #[inline(always)]
            fn take(b: &mut Self, i: &mut u32, v: Self, tap: u32) {
                #[allow(clippy::eq_op)]
                let take = v > *b || v != v;
                let m = <$bits>::from(take).wrapping_neg();
                *b = <$t>::from_bits((b.to_bits() & !m) | (v.to_bits() & m));
                let m = m as u32;
                *i = (*i & !m) | (tap & m);
            }
        }
    };
}
impl_tap!(f32, u32);
impl_tap!(f64, u64);

/// Per-thread buffers of [`argmax_plane`], each one plane of outputs long: one tap's values,
/// the running maxima and the tap that holds each.
struct PlaneScratch<T> {
    tap_v: Vec<T>,
    best_v: Vec<T>,
    best_t: Vec<u32>,
}

impl<T: Tap> PlaneScratch<T> {
    fn new(len: usize) -> Self {
        Self {
            tap_v: vec![T::zero(); len],
            best_v: vec![T::zero(); len],
            best_t: vec![0; len],
        }
    }
}

/// Row-major first maximum of the window `xp[ha..hb, wa..wb]` (a row of width `w`).
/// `v != v` picks up NaN so that it propagates, as in PyTorch; selects rather than branches.
fn window_argmax<T: Real>(xp: &[T], w: usize, rows: (usize, usize), cols: (usize, usize)) -> usize {
    let mut best = rows.0 * w + cols.0;
    let mut bv = xp[best];
    for ih in rows.0..rows.1 {
        for (j, &v) in xp[ih * w + cols.0..ih * w + cols.1].iter().enumerate() {
            #[allow(clippy::eq_op)]
            let take = v > bv || v != v;
            bv = if take { v } else { bv };
            best = if take { ih * w + cols.0 + j } else { best };
        }
    }
    best
}

/// `dst[j] = src[j·S]` with the stride known at compile time, so the copy vectorises.
#[inline]
fn strided_copy<T: Copy, const S: usize>(dst: &mut [T], src: &[T]) {
    let Some((last, body)) = dst.split_last_mut() else {
        return;
    };
    for (d, c) in body.iter_mut().zip(src.chunks_exact(S)) {
        *d = c[0];
    }
    *last = src[body.len() * S];
}

/// [`argmax_plane`] for 2×2 windows at stride 2 without padding (the LeNets' pooling): each
/// output reads its two input row pairs directly and keeps the same strict-or-NaN maximum over
/// the taps in the same order (starting from the first tap, which the general path takes
/// unless it is −∞; then either a later tap wins or the fallback picks the first), with bit
/// selects so that the loop vectorises. The general path's gather-then-compare over four taps
/// was 8 % of a LeNet step.
fn argmax_plane_2x2<T: Tap>(xp: &[T], w: usize, wo: usize, base: u32, out: &mut [u32]) {
    for (oh, orow) in out.chunks_mut(wo).enumerate() {
        let r0 = &xp[2 * oh * w..][..2 * wo];
        let r1 = &xp[(2 * oh + 1) * w..][..2 * wo];
        let corner = base + (2 * oh * w) as u32;
        for (ow, ((o, p0), p1)) in orow
            .iter_mut()
            .zip(r0.chunks_exact(2))
            .zip(r1.chunks_exact(2))
            .enumerate()
        {
            let t = T::first_max4([p0[0], p0[1], p1[0], p1[1]]);
            // Tap t = 2·row + column is at offset row·w + column from the corner.
            *o = corner + (2 * ow) as u32 + (t & 1) + (t >> 1) * w as u32;
        }
    }
}

/// Argmax indices (offset by `base`) of one `(h, w)` plane, as `out` (one plane of outputs).
///
/// Tap by tap (window offsets `(dy, dx)` in row-major order): gather that tap's input for every
/// output into one contiguous plane (−∞ where it falls in the padding), then one long
/// vectorised pass keeps the strict maximum. Same visiting order and the same strict `>` as a
/// window-by-window scan, so ties go to the first maximum. An output whose window holds only
/// −∞ (never beaten) is redone by [`window_argmax`]. `tap_offset[t]`: tap `t`'s input offset
/// from its window's corner.
#[allow(clippy::too_many_arguments)]
fn argmax_plane<T: Tap>(
    g: PoolGeom,
    xp: &[T],
    (h, w): (usize, usize),
    wo: usize,
    tap_offset: &[usize],
    base: u32,
    out: &mut [u32],
    s: &mut PlaneScratch<T>,
) {
    let PoolGeom { k, stride, pad } = g;
    if (k, stride, pad) == (2, 2, 0) {
        return argmax_plane_2x2(xp, w, wo, base, out);
    }
    let neg_inf = T::from_f64(f64::NEG_INFINITY);
    s.best_v.fill(neg_inf);
    s.best_t.fill(u32::MAX);
    // Input row/column of output o at tap offset d, if inside the image.
    let at = |o: usize, d: usize, n: usize| (o * stride + d).checked_sub(pad).filter(|&i| i < n);
    for dy in 0..k {
        for dx in 0..k {
            // Output columns whose tap column is inside the row: a contiguous range.
            // (ow·stride + dx − pad ∈ [0, w)).
            let cr = ((w + pad).saturating_sub(dx).div_ceil(stride)).min(wo);
            let cl = pad.saturating_sub(dx).div_ceil(stride).min(cr);
            for (oh, dst) in s.tap_v.chunks_mut(wo).enumerate() {
                let Some(ih) = at(oh, dy, h) else {
                    dst.fill(neg_inf);
                    continue;
                };
                dst[..cl].fill(neg_inf);
                dst[cr..].fill(neg_inf);
                if cl < cr {
                    let first = ih * w + cl * stride + dx - pad;
                    let (d, src) = (&mut dst[cl..cr], &xp[first..]);
                    match stride {
                        1 => strided_copy::<T, 1>(d, src),
                        2 => strided_copy::<T, 2>(d, src),
                        _ => {
                            for (j, v) in d.iter_mut().enumerate() {
                                *v = src[j * stride];
                            }
                        }
                    }
                }
            }
            T::take_max(&mut s.best_v, &mut s.best_t, &s.tap_v, (dy * k + dx) as u32);
        }
    }
    // Window span along one axis (clipped to the image), for the fallback.
    let span = |o: usize, n: usize| {
        let a = (o * stride).saturating_sub(pad);
        (a, (o * stride + k - pad).min(n))
    };
    for (oh, (orow, trow)) in out.chunks_mut(wo).zip(s.best_t.chunks(wo)).enumerate() {
        // Wrapping: the corner lies in the padding (negative) where a window overhangs it.
        let corner = (oh * stride * w).wrapping_sub(pad * w + pad);
        for (ow, (o, &t)) in orow.iter_mut().zip(trow).enumerate() {
            let i = match tap_offset.get(t as usize) {
                Some(&off) => corner.wrapping_add(ow * stride).wrapping_add(off),
                None => window_argmax(xp, w, span(oh, h), span(ow, w)),
            };
            *o = base + i as u32;
        }
    }
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
            let bad = AtomicBool::new(false);
            let op = op.max(1);
            let out = par_fill(idx.len(), op, |start, o| {
                let lo = (start / op) * ip;
                for (v, &i) in o.iter_mut().zip(&idx[start..]) {
                    let i = i as usize;
                    if i < lo || i >= lo + ip {
                        bad.store(true, Ordering::Relaxed);
                        v.write(T::from_f64(0.0));
                    } else {
                        v.write(src[i]);
                    }
                }
            });
            if bad.into_inner() {
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
            let bad = AtomicBool::new(false);
            // Each plane is zeroed by the task that scatters into it (no serial zero fill).
            let ip = ip.max(1);
            let out = par_zeroed::<T, _>(self.src_shape.elem_count(), ip, |lo, o| {
                let p = lo / ip;
                let (ix, gv) = (&idx[p * op..(p + 1) * op], &g[p * op..(p + 1) * op]);
                for (&i, &v) in ix.iter().zip(gv) {
                    let i = i as usize;
                    if i < lo || i >= lo + ip {
                        bad.store(true, Ordering::Relaxed);
                    } else {
                        o[i - lo] += v;
                    }
                }
            });
            if bad.into_inner() {
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
