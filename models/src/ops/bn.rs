//! Batch-norm as a few fused per-channel custom ops (candle's reductions over (N, H, W) are
//! ~25× slower than one pass over memory, and composed batch-norm needs a dozen of them):
//!
//! * [`BatchNormOp`] `(x, γ, β) → γ·x̂ + β`, `x̂ = (x − μ)/√(σ² + ε)` per channel (biased
//!   variance): one statistics pass, one output pass, one graph node.
//! * [`BnInputGradOp`] `(x, g, γ) → γ·J(x)·g`, the input gradient, with `J(x)·g = s·(g − mean(g)
//!   − x̂·mean(g·x̂))` the normalisation's Jacobian-vector product. `J` is symmetric, so its
//!   gradient in `g` is the op itself; its gradient in `x` (second order only) is composed from
//!   these ops.
//! * [`BnParamGradOp`] `(x, g) → [Σ g·x̂, Σ g]`, `(dγ, dβ)` in one pass; its gradient in `g` is a
//!   [`BatchNormOp`], in `x` a [`BnInputGradOp`].
//! * [`AffineOp`] `(x̂, γ, β) → γ·x̂ + β` (evaluation mode, and per-channel scaling), with
//!   [`ChannelSumOp`] and [`ChannelDotOp`]; their own backwards are broadcasts.
//!
//! The backward ops reuse the forward's statistics (and the input gradient reuses the parameter
//! gradient's sums), so a training step sweeps each activation twice forward and three times
//! backward. Every backward is built from differentiable ops, so gradients of any order are exact.

use super::kernels::{contiguous, par_fill, same_shape, storage, with_float, Real};
use crate::backprop::param_grad;
use candle_core::backend::BackendStorage;
use candle_core::WithDType as _;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::mem::MaybeUninit;
use std::sync::{Arc, OnceLock};

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

/// Per-channel reduction: `f(offset, ch)` reduces each (image, channel) block, in parallel and
/// in memory order, and `merge` folds each channel's blocks over the images in order (the same
/// order on any number of threads, so the same numbers). Channel by channel, the blocks of small
/// maps were strided reads an image apart (256 B every 16 KiB on 8×8 maps).
fn per_channel_fold<B, A, F, M>((n, c, r): (usize, usize, usize), f: F, init: A, merge: M) -> Vec<A>
where
    B: Copy + Send,
    A: Clone,
    F: Fn(usize, usize) -> B + Sync,
    M: Fn(A, B) -> A,
{
    let blocks: Vec<B> = (0..n * c)
        .into_par_iter()
        .with_min_len(c.max(1))
        .map(|b| f(b * r, b % c))
        .collect();
    (0..c)
        .map(|ch| (0..n).fold(init.clone(), |a, i| merge(a, blocks[i * c + ch])))
        .collect()
}

/// Per-channel sum of `f(offset, ch)` over the (image, channel) blocks.
fn per_channel<F>(dims: (usize, usize, usize), f: F) -> Vec<f64>
where
    F: Fn(usize, usize) -> f64 + Sync,
{
    per_channel_fold(dims, f, 0.0, |a, b| a + b)
}

/// Two per-channel sums in one pass over memory: `f` returns both sums of a block.
fn per_channel2<F>(dims: (usize, usize, usize), f: F) -> Vec<(f64, f64)>
where
    F: Fn(usize, usize) -> (f64, f64) + Sync,
{
    per_channel_fold(dims, f, (0.0, 0.0), |(a, b), (u, v)| (a + u, b + v))
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

/// Per-channel batch statistics: mean, biased variance and `1/√(σ² + ε)`.
///
/// One pass over memory: each (image, channel) block is reduced two-pass while it sits in cache
/// (its mean, then its centred sum of squares), and the blocks are merged with Chan et al.'s
/// pairwise update, so the variance has the accuracy of the two-pass formula without a second
/// sweep of the activations.
#[derive(Debug, Clone)]
pub(crate) struct BnStats {
    mean: Vec<f64>,
    var: Vec<f64>,
    inv: Vec<f64>,
}

impl BnStats {
    fn of<T: Real>(dims: (usize, usize, usize), x: &[T], eps: f64) -> Self {
        let r = dims.2;
        let rb = r as f64;
        // Each block's mean and centred sum of squares; an empty block (r = 0) is skipped.
        let block = |o: usize, _| {
            let block = &x[o..o + r];
            if block.is_empty() {
                return None;
            }
            let mb = block_sum(block) / rb;
            Some((mb, block_centered_sq(block, T::from_f64(mb))))
        };
        let merge = |(mean, m2, count): (f64, f64, f64), b: Option<(f64, f64)>| match b {
            None => (mean, m2, count),
            Some((mb, m2b)) => {
                let total = count + rb;
                let delta = mb - mean;
                (
                    mean + delta * rb / total,
                    m2 + (m2b + delta * delta * count * rb / total),
                    total,
                )
            }
        };
        let (mean, var): (Vec<f64>, Vec<f64>) =
            per_channel_fold(dims, block, (0.0, 0.0, 0.0), merge)
                .into_iter()
                .map(|(mean, m2, count)| (mean, if count > 0.0 { m2 / count } else { 0.0 }))
                .unzip();
        let inv = var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
        BnStats { mean, var, inv }
    }
}

/// `out[i, ch, :] = f(offset, ch, out-block)` in parallel over images. `f` must write every
/// element of its block: the output is uninitialised capacity ([`par_fill`]).
pub(crate) fn map_blocks<T: Real, F>((_, c, r): (usize, usize, usize), len: usize, f: F) -> Vec<T>
where
    F: Fn(usize, usize, &mut [MaybeUninit<T>]) + Sync,
{
    par_fill(len, c * r, |start, oi| {
        for ch in 0..c {
            f(start + ch * r, ch, &mut oi[ch * r..(ch + 1) * r]);
        }
    })
}

/// The forward's statistics, kept for its backward (same `x`, so the same numbers: the
/// backward does not sweep the activations again to recompute them).
type SharedStats = Arc<OnceLock<Arc<BnStats>>>;

/// `(Σ g, Σ g·x)` per channel for an upstream gradient `g`.
type GradSums = Arc<Vec<(f64, f64)>>;

/// `x`'s statistics: the known ones, or computed from `x`.
fn stats_of<T: Real>(
    known: Option<&Arc<BnStats>>,
    dims: (usize, usize, usize),
    x: &[T],
    eps: f64,
) -> Arc<BnStats> {
    match known {
        Some(st) => st.clone(),
        None => Arc::new(BnStats::of(dims, x, eps)),
    }
}

/// `(Σ g, Σ g·x)` per channel, in one pass over `g` and `x`.
fn grad_sums<T: Real>(dims: (usize, usize, usize), g: &[T], x: &[T]) -> Vec<(f64, f64)> {
    let r = dims.2;
    per_channel2(dims, |o, _| {
        let (gb, xb) = (&g[o..o + r], &x[o..o + r]);
        (block_sum(gb), block_dot(gb, xb))
    })
}

/// Training-mode batch norm `y = γ·x̂ + β` with `x̂ = (x − μ)/√(σ² + ε)` per channel: one
/// statistics pass and one output pass, and one graph node (no `x̂` tensor, whose gradient
/// candle would accumulate in a pass of its own). Its backward is [`BnInputGradOp`] and
/// [`BnParamGradOp`]. With `relu`, the output is `relu(y)` from the same pass (the ResNets'
/// BN → ReLU): the ReLU's own pass and graph node are gone, and the backward first masks the
/// upstream gradient where the output is zero.
pub(crate) struct BatchNormOp {
    eps: f64,
    stats: SharedStats,
    relu: bool,
}

impl BatchNormOp {
    fn new(eps: f64, known: Option<Arc<BnStats>>, relu: bool) -> Self {
        let stats = Arc::new(OnceLock::new());
        if let Some(st) = known {
            let _ = stats.set(st);
        }
        BatchNormOp { eps, stats, relu }
    }
}

impl CustomOp3 for BatchNormOp {
    fn name(&self) -> &'static str {
        if self.relu {
            "zoo-batch-norm-relu"
        } else {
            "zoo-batch-norm"
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
        let dims = ncr(l1.shape())?;
        if l2.shape().dims() != [dims.1] || l3.shape().dims() != [dims.1] {
            candle_core::bail!("batch_norm: gamma/beta must have shape ({},)", dims.1);
        }
        with_float!(s1.dtype(), self.name(), |T| {
            let x = contiguous::<T>(s1, l1, self.name())?;
            let ga = contiguous::<T>(s2, l2, self.name())?;
            let be = contiguous::<T>(s3, l3, self.name())?;
            let st = stats_of(self.stats.get(), dims, x, self.eps);
            let (r, relu) = (dims.2, self.relu);
            let out = map_blocks::<T, _>(dims, x.len(), |o, ch, out| {
                let mu = T::from_f64(st.mean[ch]);
                let a = T::from_f64(st.inv[ch] * ga[ch].to_f64());
                let b = be[ch];
                let pairs = out.iter_mut().zip(&x[o..o + r]);
                if relu {
                    for (y, v) in pairs {
                        y.write(super::relu::relu_value((*v - mu) * a + b));
                    }
                } else {
                    for (y, v) in pairs {
                        y.write((*v - mu) * a + b);
                    }
                }
            });
            let _ = self.stats.set(st);
            Ok(storage(out, l1.shape().clone()))
        })
    }
    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dy = &super::relu::through_fused_relu(self.relu, dy, y)?;
        let st = self.stats.get().cloned();
        let xs = super::saved(x);
        let mut sums = None;
        let (dg, db) = if gamma.track_op() || beta.track_op() {
            let (both, s) = bn_param_grad(&xs, dy, self.eps, st.clone())?;
            sums = s;
            let dg = gamma.track_op().then(|| both.get(0)).transpose()?;
            let db = beta.track_op().then(|| both.get(1)).transpose()?;
            (
                dg.and_then(|d| param_grad(gamma, d)),
                db.and_then(|d| param_grad(beta, d)),
            )
        } else {
            (None, None)
        };
        let dx = if x.track_op() {
            let op = BnInputGradOp {
                eps: self.eps,
                stats: st,
                sums,
            };
            Some(bn_input_grad(&xs, dy, &super::saved(gamma), op)?)
        } else {
            None
        };
        Ok((dx, dg, db))
    }
}

/// Batch norm's input gradient `(x, g, γ) → γ·J(x)·g` with `J(x)·g = s·(g − mean(g) −
/// x̂·mean(g·x̂))` per channel (`J`, the Jacobian of `x ↦ x̂`, is symmetric).
pub(crate) struct BnInputGradOp {
    eps: f64,
    /// `x`'s statistics when known (from the forward).
    stats: Option<Arc<BnStats>>,
    /// `(Σ g, Σ g·x)` per channel when known (from [`BnParamGradOp`] on the same `g`).
    sums: Option<GradSums>,
}

impl BnInputGradOp {
    /// The op for `x` with its statistics when known; it computes the gradient sums itself.
    fn new(eps: f64, stats: Option<Arc<BnStats>>) -> Self {
        BnInputGradOp {
            eps,
            stats,
            sums: None,
        }
    }
}

impl CustomOp3 for BnInputGradOp {
    fn name(&self) -> &'static str {
        "zoo-bn-input-grad"
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
        same_shape(self.name(), l1, l2)?;
        let dims = ncr(l1.shape())?;
        if l3.shape().dims() != [dims.1] {
            candle_core::bail!("batch_norm: gamma must have shape ({},)", dims.1);
        }
        let (n, _, r) = dims;
        let m = (n * r) as f64;
        with_float!(s1.dtype(), self.name(), |T| {
            let x = contiguous::<T>(s1, l1, self.name())?;
            let g = contiguous::<T>(s2, l2, self.name())?;
            let ga = contiguous::<T>(s3, l3, self.name())?;
            let st = stats_of(self.stats.as_ref(), dims, x, self.eps);
            let sums = match &self.sums {
                Some(s) => s.clone(),
                None => Arc::new(grad_sums(dims, g, x)),
            };
            let out = map_blocks::<T, _>(dims, x.len(), |o, ch, out| {
                let s = st.inv[ch];
                let (gsum, gx) = sums[ch];
                // Σ g·x̂ = s·(Σ g·x − μ·Σ g); out = γ·s·(g − gm − x̂·k), x̂ = (x − μ)·s.
                let gxh = s * (gx - st.mean[ch] * gsum);
                let (gm, k) = (gsum / m, gxh / m);
                let gs = ga[ch].to_f64() * s;
                let (ts, tgm, tk, tmu) = (
                    T::from_f64(gs),
                    T::from_f64(gm),
                    T::from_f64(k * s),
                    T::from_f64(st.mean[ch]),
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
        gamma: &Tensor,
        jg: &Tensor,
        gg: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        // f = <G, γ·J(x)·g> = <γ·J G, g>.
        let op = || BnInputGradOp::new(self.eps, self.stats.clone());
        // J(x)·G (γ = 1): the gradient in γ and the one in x both use it.
        let jgg = if gamma.track_op() || x.track_op() {
            let ones = Tensor::ones(gamma.elem_count(), gamma.dtype(), gamma.device())?;
            Some(bn_input_grad(x, gg, &ones, op())?)
        } else {
            None
        };
        let d_g = match (g.track_op(), &jgg) {
            (false, _) => None,
            (true, Some(j)) if gamma.track_op() => Some(scale(j, gamma)?),
            (true, _) => Some(bn_input_grad(x, gg, gamma, op())?),
        };
        let d_gamma = match &jgg {
            Some(j) if gamma.track_op() => Some(channel_dot(g, j)?),
            _ => None,
        };
        let d_x = match &jgg {
            Some(jgg) if x.track_op() => {
                // With h = γ·g, f = <G, J(x) h> and J h = jg:
                // ∂f/∂x = −(s²·a/m)·x̂ − (s/m)·[(h·x̂)·J G + (G·x̂)·J h],
                // a = <G, h> − ΣG·Σh/m − (G·x̂)(h·x̂)/m, all sums per channel.
                let h = scale(g, gamma)?;
                let (n, _, r) = ncr(x.shape())?;
                let m = (n * r) as f64;
                let xh = normalize(x, self.eps)?.0;
                let inv = inv_std(x, self.eps)?;
                let hxh = channel_dot(&h, &xh)?;
                let ggxh = channel_dot(gg, &xh)?;
                let a = ((channel_dot(gg, &h)? - ((channel_sum(gg)? * channel_sum(&h)?)? / m)?)?
                    - ((&ggxh * &hxh)? / m)?)?;
                let coef_xh = ((inv.sqr()? * a)? * (-1.0 / m))?;
                let coef_jgg = ((&inv * hxh)? * (-1.0 / m))?;
                let coef_jg = ((&inv * ggxh)? * (-1.0 / m))?;
                let t = scale(&xh, &coef_xh)?;
                let t = (t + scale(jgg, &coef_jgg)?)?;
                Some((t + scale(jg, &coef_jg)?)?)
            }
            _ => None,
        };
        Ok((d_x, d_g, d_gamma))
    }
}

/// Batch norm's parameter gradients `(x, g) → [Σ g·x̂, Σ g]` per channel, shape `(2, c)`: `(dγ,
/// dβ)` for upstream `g`, in one pass over `g` and `x`.
pub(crate) struct BnParamGradOp {
    eps: f64,
    stats: Option<Arc<BnStats>>,
    /// The raw `(Σ g, Σ g·x)` per channel, for [`BnInputGradOp`] on the same `g`.
    sums: Arc<OnceLock<GradSums>>,
}

impl CustomOp2 for BnParamGradOp {
    fn name(&self) -> &'static str {
        "zoo-bn-param-grad"
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
            let x = contiguous::<T>(s1, l1, self.name())?;
            let g = contiguous::<T>(s2, l2, self.name())?;
            let st = stats_of(self.stats.as_ref(), dims, x, self.eps);
            let sums = grad_sums(dims, g, x);
            let dgamma = sums
                .iter()
                .zip(st.mean.iter().zip(&st.inv))
                .map(|((gsum, gx), (mu, s))| T::from_f64(s * (gx - mu * gsum)));
            let dbeta = sums.iter().map(|(gsum, _)| T::from_f64(*gsum));
            let out = dgamma.chain(dbeta).collect();
            let _ = self.sums.set(Arc::new(sums));
            Ok(storage(out, (2, dims.1)))
        })
    }
    fn bwd(
        &self,
        x: &Tensor,
        g: &Tensor,
        _res: &Tensor,
        gg: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        // f = Σ_ch G0·Σ g·x̂(x) + G1·Σ g:  ∂f/∂g = G0·x̂ + G1,  ∂f/∂x = G0·J(x)·g.
        let (g0, g1) = (gg.get(0)?, gg.get(1)?);
        let d_g = if g.track_op() {
            Some(x.contiguous()?.apply_op3(
                &g0.contiguous()?,
                &g1.contiguous()?,
                BatchNormOp::new(self.eps, self.stats.clone(), false),
            )?)
        } else {
            None
        };
        let d_x = if x.track_op() {
            let op = BnInputGradOp::new(self.eps, self.stats.clone());
            Some(bn_input_grad(x, g, &g0, op)?)
        } else {
            None
        };
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
                per_channel(dims, |o, _| block_sum(&x[o..o + r]))
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
            let v = per_channel(dims, |o, _| block_dot(&a[o..o + r], &b[o..o + r]));
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

fn bn_input_grad(x: &Tensor, g: &Tensor, gamma: &Tensor, op: BnInputGradOp) -> Result<Tensor> {
    x.contiguous()?
        .apply_op3(&g.contiguous()?, &gamma.contiguous()?, op)
}

/// `([Σ g·x̂, Σ g], raw sums)`; the raw sums let [`BnInputGradOp`] skip its reduction pass.
fn bn_param_grad(
    x: &Tensor,
    g: &Tensor,
    eps: f64,
    stats: Option<Arc<BnStats>>,
) -> Result<(Tensor, Option<GradSums>)> {
    let sums = Arc::new(OnceLock::new());
    let op = BnParamGradOp {
        eps,
        stats,
        sums: sums.clone(),
    };
    let out = x.contiguous()?.apply_op2(&g.contiguous()?, op)?;
    Ok((out, sums.get().cloned()))
}

/// `x̂` and the batch (mean, biased variance) per channel, the latter without gradient.
pub(crate) fn normalize(x: &Tensor, eps: f64) -> Result<(Tensor, Vec<f64>, Vec<f64>)> {
    let c = ncr(x.shape())?.1;
    let ones = Tensor::ones(c, x.dtype(), x.device())?;
    let zeros = Tensor::zeros(c, x.dtype(), x.device())?;
    batch_norm_values(x, &ones, &zeros, eps, false)
}

/// [`BatchNormOp`] (followed by ReLU with `relu`) and its statistics.
fn batch_norm_values(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    relu: bool,
) -> Result<(Tensor, Vec<f64>, Vec<f64>)> {
    let op = BatchNormOp::new(eps, None, relu);
    let stats = op.stats.clone();
    let y = x
        .contiguous()?
        .apply_op3(&gamma.contiguous()?, &beta.contiguous()?, op)?;
    let st = stats
        .get()
        .ok_or_else(|| candle_core::Error::Msg("batch_norm: statistics missing".into()))?;
    Ok((y, st.mean.clone(), st.var.clone()))
}

/// Training-mode batch-norm (followed by ReLU with `relu`): `(y, batch mean, batch biased
/// variance)`; mean/var carry no gradient.
pub(crate) fn batch_norm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    relu: bool,
) -> Result<(Tensor, Tensor, Tensor)> {
    let (y, mean, var) = batch_norm_values(x, gamma, beta, eps, relu)?;
    let dt = x.dtype();
    let c = mean.len();
    let mean = Tensor::from_vec(mean, c, x.device())?.to_dtype(dt)?;
    let var = Tensor::from_vec(var, c, x.device())?.to_dtype(dt)?;
    Ok((y, mean, var))
}
