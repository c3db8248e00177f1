//! Batch-norm as a few fused per-channel custom ops (candle's reductions over (N, H, W) are
//! ~25× slower than one pass over memory, and composed batch-norm needs a dozen of them):
//!
//! * [`NormalizeOp`] `x → x̂ = (x − μ)/√(σ² + ε)` per channel (biased variance).
//! * [`NormalizeBwdOp`] `(x, g) → J(x)·g`, the normalisation's Jacobian-vector product
//!   `s·(g − mean(g) − x̂·mean(g·x̂))`. `J` is symmetric, so its gradient in `g` is itself; its
//!   gradient in `x` (only needed at second order) is composed from these same ops.
//! * [`AffineOp`] `(x̂, γ, β) → γ·x̂ + β`, with [`ChannelSumOp`] and [`ChannelDotOp`] for the
//!   parameter gradients; their own backwards are broadcasts.
//!
//! Every backward is built from differentiable ops, so gradients of any order are exact.

use super::kernels::{contiguous, same_shape, storage, with_float, Real};
use candle_core::backend::BackendStorage;
use candle_core::WithDType as _;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::mem::MaybeUninit;
use std::sync::{Arc, Mutex};

/// `(n, c, rest)` of an input of rank ≥ 2 laid out as (N, C, …).
pub(crate) fn ncr(shape: &Shape) -> Result<(usize, usize, usize)> {
    let d = shape.dims();
    if d.len() < 2 {
        candle_core::bail!("batch_norm: input must be (N, C, ...), got {d:?}");
    }
    Ok((d[0], d[1], d[2..].iter().product()))
}

/// Sum of a block with 8 independent lanes (vectorises), returned in f64.
fn block_sum<T: Real>(a: &[T]) -> f64 {
    let mut acc = [T::from_f64(0.0); 8];
    let chunks = a.chunks_exact(8);
    let rest = chunks.remainder();
    for ch in chunks {
        for k in 0..8 {
            acc[k] += ch[k];
        }
    }
    acc.iter().chain(rest).map(|v| v.to_f64()).sum()
}

fn block_dot<T: Real>(a: &[T], b: &[T]) -> f64 {
    let mut acc = [T::from_f64(0.0); 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f64 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| (*x * *y).to_f64())
        .sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().map(|v| v.to_f64()).sum::<f64>() + tail
}

fn block_centered_sq<T: Real>(a: &[T], mean: T) -> f64 {
    let mut acc = [T::from_f64(0.0); 8];
    let chunks = a.chunks_exact(8);
    let tail: f64 = chunks
        .remainder()
        .iter()
        .map(|x| ((*x - mean) * (*x - mean)).to_f64())
        .sum();
    for ch in chunks {
        for k in 0..8 {
            let d = ch[k] - mean;
            acc[k] += d * d;
        }
    }
    acc.iter().map(|v| v.to_f64()).sum::<f64>() + tail
}

/// Per-channel reduction `f(block of image i, channel ch, ch)` summed over images.
fn per_channel<T: Real, F>((n, c, r): (usize, usize, usize), f: F) -> Vec<f64>
where
    F: Fn(usize, usize) -> f64 + Sync,
{
    (0..c)
        .into_par_iter()
        .map(|ch| (0..n).map(|i| f(i * c * r + ch * r, ch)).sum())
        .collect()
}

/// Column sums of a row-major `(n, c)` matrix, in f64 (the per-channel sum when there is no
/// spatial extent, e.g. a linear layer's bias gradient).
fn column_sums<T: Real>(x: &[T], c: usize) -> Vec<f64> {
    let mut acc = vec![0f64; c];
    for row in x.chunks_exact(c.max(1)) {
        for (a, v) in acc.iter_mut().zip(row) {
            *a += v.to_f64();
        }
    }
    acc
}

/// Per-channel mean and 1/√(σ² + ε) (two-pass variance).
fn stats<T: Real>(
    dims: (usize, usize, usize),
    x: &[T],
    eps: f64,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (n, _, r) = dims;
    let m = (n * r) as f64;
    let mean: Vec<f64> = per_channel::<T, _>(dims, |o, _| block_sum(&x[o..o + r]))
        .into_iter()
        .map(|s| s / m)
        .collect();
    let var: Vec<f64> = per_channel::<T, _>(dims, |o, ch| {
        block_centered_sq(&x[o..o + r], T::from_f64(mean[ch]))
    })
    .into_iter()
    .map(|s| s / m)
    .collect();
    let inv: Vec<f64> = var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
    (mean, var, inv)
}

/// `out[i, ch, :] = f(offset, ch, out-block)` in parallel over images. `f` must write every
/// element of its block: the output is uninitialised capacity (a zero fill first was a pass
/// over memory of its own, per batch-norm op).
pub(crate) fn map_blocks<T: Real, F>((_, c, r): (usize, usize, usize), len: usize, f: F) -> Vec<T>
where
    F: Fn(usize, usize, &mut [MaybeUninit<T>]) + Sync,
{
    let mut out: Vec<T> = Vec::with_capacity(len);
    out.spare_capacity_mut()[..len]
        .par_chunks_mut((c * r).max(1))
        .enumerate()
        .for_each(|(i, oi)| {
            for ch in 0..c {
                f(i * c * r + ch * r, ch, &mut oi[ch * r..(ch + 1) * r]);
            }
        });
    // SAFETY: `len = n·c·r`: the chunks are the n images, each split into its c channel
    // blocks of r elements, and `f` writes every element of the block it is given.
    unsafe { out.set_len(len) };
    out
}

type Stats = Arc<Mutex<Option<(Vec<f64>, Vec<f64>)>>>;

/// `x̂ = (x − μ)/√(σ² + ε)` per channel; the batch mean/variance are left in `stats`.
pub(crate) struct NormalizeOp {
    eps: f64,
    stats: Stats,
}

impl CustomOp1 for NormalizeOp {
    fn name(&self) -> &'static str {
        "zoo-bn-normalize"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let dims = ncr(l.shape())?;
        with_float!(s.dtype(), self.name(), |T| {
            let x = contiguous::<T>(s, l, self.name())?;
            let (mean, var, inv) = stats(dims, x, self.eps);
            let r = dims.2;
            let out = map_blocks::<T, _>(dims, x.len(), |o, ch, out| {
                let (mu, sc) = (T::from_f64(mean[ch]), T::from_f64(inv[ch]));
                for (y, v) in out.iter_mut().zip(&x[o..o + r]) {
                    y.write((*v - mu) * sc);
                }
            });
            if let Ok(mut st) = self.stats.lock() {
                *st = Some((mean, var));
            }
            Ok(storage(out, l.shape().clone()))
        })
    }
    fn bwd(&self, x: &Tensor, _res: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(normalize_bwd(&super::saved(x), g, self.eps)?))
    }
}

/// `J(x)·g = s·(g − mean(g) − x̂·mean(g·x̂))` per channel.
pub(crate) struct NormalizeBwdOp {
    eps: f64,
}

impl CustomOp2 for NormalizeBwdOp {
    fn name(&self) -> &'static str {
        "zoo-bn-normalize-bwd"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        same_shape(self.name(), l1, l2)?;
        let dims = ncr(l1.shape())?;
        let (n, _, r) = dims;
        let m = (n * r) as f64;
        with_float!(s1.dtype(), self.name(), |T| {
            let x = contiguous::<T>(s1, l1, self.name())?;
            let g = contiguous::<T>(s2, l2, self.name())?;
            let (mean, _, inv) = stats(dims, x, self.eps);
            let gsum = per_channel::<T, _>(dims, |o, _| block_sum(&g[o..o + r]));
            // Σ g·x̂ = s·(Σ g·x − μ·Σ g)
            let gx = per_channel::<T, _>(dims, |o, _| block_dot(&g[o..o + r], &x[o..o + r]));
            let out = map_blocks::<T, _>(dims, x.len(), |o, ch, out| {
                let s = inv[ch];
                let gxh = s * (gx[ch] - mean[ch] * gsum[ch]);
                let (gm, k) = (gsum[ch] / m, gxh / m);
                // out = s·(g − gm − x̂·k) with x̂ = (x − μ)·s
                let (ts, tgm, tk, tmu) = (
                    T::from_f64(s),
                    T::from_f64(gm),
                    T::from_f64(k * s),
                    T::from_f64(mean[ch]),
                );
                for ((y, gv), xv) in out.iter_mut().zip(&g[o..o + r]).zip(&x[o..o + r]) {
                    y.write(ts * (*gv - tgm - (*xv - tmu) * tk));
                }
            });
            Ok(storage(out, l1.shape().clone()))
        })
    }
    fn bwd(
        &self,
        x: &Tensor,
        g: &Tensor,
        jg: &Tensor,
        gg: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        // f = <G, J(x) g>:  ∂f/∂g = J G;
        // ∂f/∂x = −(s²·a/m)·x̂ − (s/m)·[(g·x̂)·J G + (G·x̂)·J g],
        // a = <G, g> − ΣG·Σg/m − (G·x̂)(g·x̂)/m, all sums per channel.
        let jgg = normalize_bwd(x, gg, self.eps)?;
        let d_x = if x.track_op() {
            let (n, _, r) = ncr(x.shape())?;
            let m = (n * r) as f64;
            let xh = normalize(x, self.eps)?.0;
            let inv = inv_std(x, self.eps)?;
            let gxh = channel_dot(g, &xh)?;
            let ggxh = channel_dot(gg, &xh)?;
            let a = ((channel_dot(gg, g)? - ((channel_sum(gg)? * channel_sum(g)?)? / m)?)?
                - ((&ggxh * &gxh)? / m)?)?;
            let coef_xh = ((inv.sqr()? * a)? * (-1.0 / m))?;
            let coef_jgg = ((&inv * gxh)? * (-1.0 / m))?;
            let coef_jg = ((&inv * ggxh)? * (-1.0 / m))?;
            let t = scale(&xh, &coef_xh)?;
            let t = (t + scale(&jgg, &coef_jgg)?)?;
            Some((t + scale(jg, &coef_jg)?)?)
        } else {
            None
        };
        let d_g = if g.track_op() { Some(jgg) } else { None };
        Ok((d_x, d_g))
    }
}

/// Σ over (N, spatial) per channel.
pub(crate) struct ChannelSumOp;
/// Σ a·b over (N, spatial) per channel.
pub(crate) struct ChannelDotOp;

impl CustomOp1 for ChannelSumOp {
    fn name(&self) -> &'static str {
        "zoo-channel-sum"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let dims = ncr(l.shape())?;
        with_float!(s.dtype(), self.name(), |T| {
            let x = contiguous::<T>(s, l, self.name())?;
            let r = dims.2;
            let v = if r == 1 {
                column_sums(x, dims.1)
            } else {
                per_channel::<T, _>(dims, |o, _| block_sum(&x[o..o + r]))
            };
            Ok(storage(v.into_iter().map(T::from_f64).collect(), dims.1))
        })
    }
    fn bwd(&self, x: &Tensor, _res: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(broadcast_channels(g, x.shape())?))
    }
}

impl CustomOp2 for ChannelDotOp {
    fn name(&self) -> &'static str {
        "zoo-channel-dot"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        same_shape(self.name(), l1, l2)?;
        let dims = ncr(l1.shape())?;
        with_float!(s1.dtype(), self.name(), |T| {
            let a = contiguous::<T>(s1, l1, self.name())?;
            let b = contiguous::<T>(s2, l2, self.name())?;
            let r = dims.2;
            let v = per_channel::<T, _>(dims, |o, _| block_dot(&a[o..o + r], &b[o..o + r]));
            Ok(storage(v.into_iter().map(T::from_f64).collect(), dims.1))
        })
    }
    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let da = if a.track_op() {
            Some(scale(b, g)?)
        } else {
            None
        };
        let db = if b.track_op() {
            Some(scale(a, g)?)
        } else {
            None
        };
        Ok((da, db))
    }
}

/// `γ·x̂ + β` per channel.
pub(crate) struct AffineOp;

impl CustomOp3 for AffineOp {
    fn name(&self) -> &'static str {
        "zoo-bn-affine"
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
        let dims = ncr(l1.shape())?;
        if l2.shape().dims() != [dims.1] || l3.shape().dims() != [dims.1] {
            candle_core::bail!("batch_norm: gamma/beta must have shape ({},)", dims.1);
        }
        with_float!(s1.dtype(), self.name(), |T| {
            let x = contiguous::<T>(s1, l1, self.name())?;
            let ga = contiguous::<T>(s2, l2, self.name())?;
            let be = contiguous::<T>(s3, l3, self.name())?;
            let r = dims.2;
            let out = map_blocks::<T, _>(dims, x.len(), |o, ch, out| {
                let (a, b) = (ga[ch], be[ch]);
                for (y, v) in out.iter_mut().zip(&x[o..o + r]) {
                    y.write(*v * a + b);
                }
            });
            Ok(storage(out, l1.shape().clone()))
        })
    }
    fn bwd(
        &self,
        xh: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dx = if xh.track_op() {
            Some(scale(dy, &super::saved(gamma))?)
        } else {
            None
        };
        let dg = if gamma.track_op() {
            Some(channel_dot(dy, &super::saved(xh))?)
        } else {
            None
        };
        let db = if beta.track_op() {
            Some(channel_sum(dy)?)
        } else {
            None
        };
        Ok((dx, dg, db))
    }
}

/// `(c,)` → `(1, c, 1, …)` broadcast to `shape`.
pub(crate) fn broadcast_channels(v: &Tensor, shape: &Shape) -> Result<Tensor> {
    let mut s = vec![1usize; shape.rank()];
    s[1] = v.elem_count();
    v.reshape(s)?.broadcast_as(shape)
}

/// `x · v[channel]`: [`AffineOp`] with a zero shift (one fused pass, and exact at every order
/// through `AffineOp`'s own backward), instead of candle's broadcast multiply.
fn scale(x: &Tensor, v: &Tensor) -> Result<Tensor> {
    let zero = Tensor::zeros(v.elem_count(), v.dtype(), v.device())?;
    x.contiguous()?.apply_op3(&v.contiguous()?, &zero, AffineOp)
}

pub(crate) fn channel_sum(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(ChannelSumOp)
}

pub(crate) fn channel_dot(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    a.contiguous()?.apply_op2(&b.contiguous()?, ChannelDotOp)
}

/// 1/√(σ² + ε) per channel, differentiable in `x`.
fn inv_std(x: &Tensor, eps: f64) -> Result<Tensor> {
    let (n, _, r) = ncr(x.shape())?;
    let m = (n * r) as f64;
    let mean = (channel_sum(x)? / m)?;
    let centred = x.broadcast_sub(&broadcast_channels(&mean, x.shape())?)?;
    let var = (channel_dot(&centred, &centred)? / m)?;
    (var + eps)?.sqrt()?.recip()
}

fn normalize_bwd(x: &Tensor, g: &Tensor, eps: f64) -> Result<Tensor> {
    x.contiguous()?
        .apply_op2(&g.contiguous()?, NormalizeBwdOp { eps })
}

/// `x̂` and the batch (mean, biased variance) per channel, the latter without gradient.
pub(crate) fn normalize(x: &Tensor, eps: f64) -> Result<(Tensor, Vec<f64>, Vec<f64>)> {
    let stats: Stats = Arc::new(Mutex::new(None));
    let op = NormalizeOp {
        eps,
        stats: stats.clone(),
    };
    let xh = x.contiguous()?.apply_op1(op)?;
    let taken = stats.lock().ok().and_then(|mut s| s.take());
    let (mean, var) =
        taken.ok_or_else(|| candle_core::Error::Msg("batch_norm: statistics missing".into()))?;
    Ok((xh, mean, var))
}

/// Training-mode batch-norm: `(y, batch mean, batch biased variance)`; mean/var carry no gradient.
pub(crate) fn batch_norm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
) -> Result<(Tensor, Tensor, Tensor)> {
    let (xh, mean, var) = normalize(x, eps)?;
    let dt = x.dtype();
    let c = mean.len();
    let y = xh.apply_op3(&gamma.contiguous()?, &beta.contiguous()?, AffineOp)?;
    let mean = Tensor::from_vec(mean, c, x.device())?.to_dtype(dt)?;
    let var = Tensor::from_vec(var, c, x.device())?.to_dtype(dt)?;
    Ok((y, mean, var))
}
