//! 2-D convolution as three candle custom ops that are closed under differentiation.
//!
//! * [`Conv2dOp`] `(x, w) → y`: im2col + gemm per image, or Winograd F(4×4, 3×3) for 3×3
//!   stride-1 pad-1 convolutions with at least 8 input channels (`super::winograd`).
//! * [`ConvInputGradOp`] `(dy, w) → dx`: for stride 1 a forward convolution of `dy` with the
//!   flipped kernels (so Winograd again for 3×3), else `col = Wᵀ·dy` and col2im.
//! * [`ConvWeightGradOp`] `(x, dy) → dw`: `Σₙ dyₙ · im2col(xₙ)ᵀ`, or its Winograd form where the
//!   forward is Winograd.
//!
//! All three are bilinear in their two arguments, so each one's backward is made of the other two:
//! `y = conv(x, w)` gives `dx = input_grad(dy, w)`, `dw = weight_grad(x, dy)`;
//! `dx = input_grad(dy, w)` gives `d(dy) = conv(g, w)`, `dw = weight_grad(g, dy)`;
//! `dw = weight_grad(x, dy)` gives `dx = input_grad(dy, G)`, `d(dy) = conv(x, G)`.
//! Gradients of every order are therefore exact (up to float rounding) and run on the fast path.

use super::geom::{Geom, Shift};
use super::kernels::{
    contiguous, gemm, gemm_uninit, lane_padded, per_chunk, storage, sum_per_thread, with_float,
    Mat, Real,
};
use crate::backprop::param_grad;
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};

/// Zeroes the columns outside `lo..hi` of every `w`-long row of `block` (positions whose
/// contiguous read wrapped into a neighbouring image row). Column by column with a stride:
/// row by row, each one- or two-element fill became a `memset` call (7 % of a LeNet step).
fn zero_edge_columns<T: Real>(block: &mut [T], w: usize, (lo, hi): (usize, usize)) {
    let zero = T::from_f64(0.0);
    for j in (0..lo).chain(hi..w) {
        for v in block.iter_mut().skip(j).step_by(w) {
            *v = zero;
        }
    }
}

/// Calls `f(ki, kj, rows)` for each kernel position, where `rows` yields `(ci, row)` for every
/// input channel of the group and its im2col row `row = (ci*kh + ki)*kw + kj`. Kernel positions
/// outermost, so that what depends only on `(ki, kj)` (the shifted window, the valid columns)
/// is computed once per position rather than once per row (it was ~4 % of a step when per row).
fn for_kernel_positions(
    g: &Geom,
    mut f: impl FnMut(usize, usize, &mut dyn Iterator<Item = (usize, usize)>),
) {
    let kk = g.kh * g.kw;
    for ki in 0..g.kh {
        for kj in 0..g.kw {
            let first = ki * g.kw + kj;
            f(ki, kj, &mut (0..g.cg()).map(|ci| (ci, ci * kk + first)));
        }
    }
}

/// `col[(ci*kh + ki)*kw + kj][oh*wo + ow] = x[ci][oh*s - p + ki][ow*s - p + kj]` (0 outside).
///
/// Writes only the entries that read the image: `col` must already hold zeros where the window
/// falls in the padding. A zero-initialised buffer used only by `im2col` of one geometry keeps
/// that (every call writes the same positions), so the padding is zeroed once per buffer, not
/// once per image (it was a tenth of a LeNet convolution's time).
///
/// Rows are `stride` apart (`>= hwo`; the columns past `hwo` are left as they are).
fn im2col<T: Real>(g: &Geom, x: &[T], col: &mut [T], stride: usize) {
    if g.same_width() {
        return im2col_same_width(g, x, col, stride);
    }
    let (s, p, hwo, wo) = (g.stride, g.pad, g.hwo(), g.wo);
    for_kernel_positions(g, |ki, kj, rows| {
        let (lo, hi) = g.valid_cols(kj);
        if lo >= hi {
            return;
        }
        let start = lo * s + kj - p;
        for (ci, row) in rows {
            let xc = &x[ci * g.hw()..(ci + 1) * g.hw()];
            let dst = &mut col[row * stride..][..hwo];
            for oh in 0..g.ho {
                let ih = (oh * s + ki) as isize - p as isize;
                if ih < 0 || ih >= g.h as isize {
                    continue;
                }
                let d = &mut dst[oh * wo + lo..oh * wo + hi];
                let xr = &xc[ih as usize * g.w..(ih as usize + 1) * g.w];
                if s == 1 {
                    d.copy_from_slice(&xr[start..start + (hi - lo)]);
                } else {
                    for (k, v) in d.iter_mut().enumerate() {
                        *v = xr[start + k * s];
                    }
                }
            }
        }
    });
}

/// For a [`Geom::same_width`] convolution, calls `f(ci, row, span, shift, valid)` for every
/// im2col row: `span` is the part of the row whose output rows read inside the image, `shift`
/// where it reads the channel plane and `valid` the output columns that do not wrap into a
/// neighbouring image row (see [`Shift`], [`Geom::valid_cols`]).
fn for_same_width_rows<F>(g: &Geom, mut f: F)
where
    F: FnMut(usize, usize, std::ops::Range<usize>, &Shift, (usize, usize)),
{
    for_kernel_positions(g, |ki, kj, rows| {
        let shift = g.shift(ki, kj);
        let valid = g.valid_cols(kj);
        let span = shift.rows.start * g.w..shift.rows.end * g.w;
        for (ci, row) in rows {
            f(ci, row, span.clone(), &shift, valid);
        }
    });
}

/// [`im2col`] for a [`Geom::same_width`] convolution: per row, one copy of the shifted image,
/// then the boundary columns (which read a neighbouring image row) set to zero. Like [`im2col`],
/// leaves the rows and ends that fall in the padding as they are (zeros).
fn im2col_same_width<T: Real>(g: &Geom, x: &[T], col: &mut [T], stride: usize) {
    let (w, hw) = (g.w, g.hw());
    for_same_width_rows(g, |ci, row, span, sh, valid| {
        let d = &mut col[row * stride..][span];
        let n = sh.block.len();
        d[sh.block.clone()].copy_from_slice(&x[ci * hw + sh.src..][..n]);
        zero_edge_columns(d, w, valid);
    });
}

/// The adjoint of [`im2col`]: `x[ci][ih][iw] += col[row][oh*wo + ow]` (x must start zeroed).
/// `col` is scratch: the same-width path zeroes its boundary columns before adding.
fn col2im<T: Real>(g: &Geom, col: &mut [T], x: &mut [T]) {
    if g.same_width() {
        return col2im_same_width(g, col, x);
    }
    let (s, p, hwo, wo) = (g.stride, g.pad, g.hwo(), g.wo);
    for_kernel_positions(g, |ki, kj, rows| {
        let (lo, hi) = g.valid_cols(kj);
        if lo >= hi {
            return;
        }
        let start = lo * s + kj - p;
        for (ci, row) in rows {
            let xc = &mut x[ci * g.hw()..(ci + 1) * g.hw()];
            let src = &col[row * hwo..(row + 1) * hwo];
            for oh in 0..g.ho {
                let ih = (oh * s + ki) as isize - p as isize;
                if ih < 0 || ih >= g.h as isize {
                    continue;
                }
                let xr = &mut xc[ih as usize * g.w..(ih as usize + 1) * g.w];
                let sr = &src[oh * wo + lo..oh * wo + hi];
                if s == 1 {
                    for (a, b) in xr[start..start + (hi - lo)].iter_mut().zip(sr) {
                        *a += *b;
                    }
                } else {
                    for (k, v) in sr.iter().enumerate() {
                        xr[start + k * s] += *v;
                    }
                }
            }
        }
    });
}

/// [`col2im`] for a [`Geom::same_width`] convolution: the boundary columns of `col` (gradients
/// of padding) are zeroed, then each row is added to the image in one contiguous pass.
fn col2im_same_width<T: Real>(g: &Geom, col: &mut [T], x: &mut [T]) {
    let (w, hw, hwo) = (g.w, g.hw(), g.hwo());
    for_same_width_rows(g, |ci, row, span, sh, valid| {
        let s = &mut col[row * hwo..][span];
        zero_edge_columns(s, w, valid);
        let n = sh.block.len();
        for (xv, v) in x[ci * hw + sh.src..][..n]
            .iter_mut()
            .zip(&s[sh.block.clone()])
        {
            *xv += *v;
        }
    });
}

/// Run `f(image, out_chunk, scratch, parallel)` for every image ([`per_chunk`]). The scratch
/// buffers start zeroed and live for this call only, as [`im2col`] needs.
fn per_image<O: Send, T: Real, F>(out: &mut [O], per: usize, scratch: usize, f: F)
where
    F: Fn(usize, &mut [O], &mut Vec<T>, bool) + Sync + Send,
{
    per_chunk(out, per, || vec![T::from_f64(0.0); scratch], f);
}

/// `y = conv(x, w)` (+ `bias[o]`, then ReLU with `relu`: applied to each image's block while it
/// is in cache).
fn conv_fwd<T: Real>(g: &Geom, x: &[T], w: &[T], bias: Option<&[T]>, relu: bool) -> Vec<T> {
    if super::winograd::applies(g) {
        super::winograd::conv3x3(g, x, w, bias, relu)
    } else {
        conv_fwd_im2col(g, x, w, bias, relu)
    }
}

/// Row stride of [`conv_fwd_im2col`]'s column matrix: `hwo` [`lane_padded`]. Unpadded, `gemm`
/// first copied the whole column matrix (7 % of a LeNet step, whose 14×14 and 7×7 maps have 196
/// and 49 columns); with zero-padded columns it reads it in place and writes a padded output,
/// which is copied out (the output is `k` times smaller than the column matrix).
fn col_stride(g: &Geom) -> usize {
    if g.pointwise() {
        g.hwo()
    } else {
        lane_padded(g.hwo())
    }
}

/// [`conv_fwd`] by im2col + one gemm per image and group.
fn conv_fwd_im2col<T: Real>(g: &Geom, x: &[T], w: &[T], bias: Option<&[T]>, relu: bool) -> Vec<T> {
    let (k, og, hwo) = (g.k(), g.og(), g.hwo());
    let stride = col_stride(g);
    let padded = stride != hwo;
    // Uninitialised: the gemms (or the copies out of their padded outputs) write every element.
    let len = g.n * g.o * hwo;
    let mut y: Vec<T> = Vec::with_capacity(len);
    let scratch = match (g.pointwise(), padded) {
        (true, _) => 0,
        (false, false) => k * hwo,
        (false, true) => (k + og) * stride,
    };
    per_image(
        &mut y.spare_capacity_mut()[..len],
        g.o * hwo,
        scratch,
        |i, yi, buf, par| {
            let (col, out) = buf.split_at_mut(if g.pointwise() { 0 } else { k * stride });
            for gi in 0..g.groups {
                let xg = &x[(i * g.c + gi * g.cg()) * g.hw()..][..g.cg() * g.hw()];
                let cols: &[T] = if g.pointwise() {
                    xg
                } else {
                    im2col(g, xg, col, stride);
                    col
                };
                let wg = &w[gi * og * k..(gi + 1) * og * k];
                let yg = &mut yi[gi * og * hwo..(gi + 1) * og * hwo];
                let (a, b) = (Mat::rows(wg, k), Mat::rows(cols, stride));
                if padded {
                    gemm(og, stride, k, out, false, a, wg.len(), b, cols.len(), par);
                    for (dst, src) in yg.chunks_exact_mut(hwo).zip(out.chunks_exact(stride)) {
                        for (d, s) in dst.iter_mut().zip(src) {
                            d.write(*s);
                        }
                    }
                } else {
                    gemm_uninit(og, hwo, k, yg, a, wg.len(), b, cols.len(), par);
                }
            }
            if bias.is_some() || relu {
                for (oi, yo) in yi.chunks_exact_mut(hwo).enumerate() {
                    let bo = bias.map_or(T::from_f64(0.0), |b| b[oi]);
                    for v in yo {
                        // SAFETY: written by the gemm or the copy above.
                        let v = unsafe { v.assume_init_mut() };
                        *v = if relu {
                            super::relu::relu_value(*v + bo)
                        } else {
                            *v + bo
                        };
                    }
                }
            }
        },
    );
    // SAFETY: per_image hands out every image's block of `o·hwo` elements, and each group's
    // gemm or copy writes all of its `og·hwo`.
    unsafe { y.set_len(len) };
    y
}

/// `w̃[gi·cg + ci][o][ki][kj] = w[gi·og + o][ci][kh−1−ki][kw−1−kj]`: the weights of
/// [`Geom::transposed`] (shape `(c, og, kh, kw)`).
fn flipped_weights<T: Real>(g: &Geom, w: &[T]) -> Vec<T> {
    let (og, cg, kk) = (g.og(), g.cg(), g.kh * g.kw);
    let mut out = vec![T::from_f64(0.0); w.len()];
    for gi in 0..g.groups {
        for o in 0..og {
            for ci in 0..cg {
                let src = &w[((gi * og + o) * cg + ci) * kk..][..kk];
                let dst = &mut out[((gi * cg + ci) * og + o) * kk..][..kk];
                for (d, s) in dst.iter_mut().zip(src.iter().rev()) {
                    *d = *s;
                }
            }
        }
    }
    out
}

fn conv_input_grad<T: Real>(g: &Geom, dy: &[T], w: &[T]) -> Vec<T> {
    if let Some(t) = g.transposed() {
        return conv_fwd(&t, dy, &flipped_weights(g, w), None, false);
    }
    let (k, og, hwo) = (g.k(), g.og(), g.hwo());
    let mut dx = vec![T::from_f64(0.0); g.n * g.c * g.hw()];
    let scratch = if g.pointwise() { 0 } else { k * hwo };
    per_image(&mut dx, g.c * g.hw(), scratch, |i, dxi, col, par| {
        for gi in 0..g.groups {
            let dyg = &dy[(i * g.o + gi * og) * hwo..][..og * hwo];
            let wg = &w[gi * og * k..(gi + 1) * og * k];
            let dxg = &mut dxi[gi * g.cg() * g.hw()..(gi + 1) * g.cg() * g.hw()];
            let wt = Mat::rows_t(wg, k); // (k, og)
            if g.pointwise() {
                gemm(
                    k,
                    hwo,
                    og,
                    dxg,
                    false,
                    wt,
                    wg.len(),
                    Mat::rows(dyg, hwo),
                    dyg.len(),
                    par,
                );
            } else {
                gemm(
                    k,
                    hwo,
                    og,
                    col,
                    false,
                    wt,
                    wg.len(),
                    Mat::rows(dyg, hwo),
                    dyg.len(),
                    par,
                );
                col2im(g, col.as_mut_slice(), dxg);
            }
        }
    });
    dx
}

/// `dst (cols × rows) = srcᵀ` for a row-major `src (rows × cols)`, in cache-sized tiles.
fn transpose<T: Real>(src: &[T], rows: usize, cols: usize, dst: &mut [T]) {
    const TILE: usize = 32;
    for r0 in (0..rows).step_by(TILE) {
        for c0 in (0..cols).step_by(TILE) {
            for r in r0..(r0 + TILE).min(rows) {
                for c in c0..(c0 + TILE).min(cols) {
                    dst[c * rows + r] = src[r * cols + c];
                }
            }
        }
    }
}

/// `dw = Σₙ dyₙ · colₙᵀ`, computed as `dwᵀ (k×og) += colₙ (k×hwo) · dyₙᵀ (hwo×og)`, with `dyₙᵀ`
/// a strided view of `dyₙ` (no copy): for this orientation `gemm` reads it as fast as a
/// transposed copy (measured 90–110 GFLOP/s per core on the zoo's shapes, the same or better
/// than with an explicit transpose, which cost 5–50 % of the op), while `dw (og×k) = dyₙ · colₙᵀ`
/// with `colₙᵀ` as the strided view runs 2–9× slower. Each thread accumulates its own `dwᵀ`;
/// the partial sums are added and transposed once at the end.
fn conv_weight_grad<T: Real>(g: &Geom, x: &[T], dy: &[T]) -> Vec<T> {
    if super::winograd::applies(g) {
        return super::winograd::weight_grad(g, x, dy);
    }
    let (k, og, hwo) = (g.k(), g.og(), g.hwo());
    let wlen = g.o * k;
    let col_len = if g.pointwise() { 0 } else { k * hwo };
    let zero = T::from_f64(0.0);
    // Accumulate one image into `dwt` (groups × k × og).
    let add_image = |i: usize, dwt: &mut [T], col: &mut [T], par: bool| {
        for gi in 0..g.groups {
            let xg = &x[(i * g.c + gi * g.cg()) * g.hw()..][..g.cg() * g.hw()];
            let cols: &[T] = if g.pointwise() {
                xg
            } else {
                im2col(g, xg, col, hwo);
                col
            };
            let dyg = &dy[(i * g.o + gi * og) * hwo..][..og * hwo];
            let dwg = &mut dwt[gi * k * og..(gi + 1) * k * og];
            gemm(
                k,
                og,
                hwo,
                dwg,
                true,
                Mat::rows(cols, hwo),
                cols.len(),
                Mat::rows_t(dyg, hwo),
                dyg.len(),
                par,
            );
        }
    };
    let dwt = sum_per_thread(g.n, wlen, |images, par| {
        let mut dwt = vec![zero; wlen];
        let mut col = vec![zero; col_len]; // zeroed for im2col
        for i in images {
            add_image(i, &mut dwt, &mut col, par);
        }
        dwt
    });
    let mut dw = vec![zero; wlen];
    for gi in 0..g.groups {
        let r = gi * k * og..(gi + 1) * k * og;
        transpose(&dwt[r.clone()], k, og, &mut dw[r]);
    }
    dw
}

fn conv_fwd_no_bias<T: Real>(g: &Geom, x: &[T], w: &[T]) -> Vec<T> {
    conv_fwd(g, x, w, None, false)
}

/// Dispatch on dtype and check the inputs' shapes against the geometry.
macro_rules! two_inputs {
    ($self:ident, $s1:ident, $l1:ident, $s2:ident, $l2:ident, $sh1:expr, $sh2:expr, $f:ident, $out:expr) => {{
        let g = &$self.0;
        g.check("input 1", $l1.shape(), &$sh1)?;
        g.check("input 2", $l2.shape(), &$sh2)?;
        if $s1.dtype() != $s2.dtype() {
            candle_core::bail!(
                "{}: dtype mismatch {:?} vs {:?}",
                $self.name(),
                $s1.dtype(),
                $s2.dtype()
            );
        }
        with_float!($s1.dtype(), $self.name(), |T| {
            let a = contiguous::<T>($s1, $l1, $self.name())?;
            let b = contiguous::<T>($s2, $l2, $self.name())?;
            Ok(storage($f::<T>(g, a, b), $out))
        })
    }};
}

/// `y = conv2d(x, w)`.
pub(crate) struct Conv2dOp(pub Geom);
/// `y = conv2d(x, w) + b[channel]`, followed by ReLU when `.1`: a convolution layer with bias
/// (and activation) as one op (a pass and a graph node fewer per fused step; the ReLU's backward
/// masks the upstream gradient where the output is zero).
pub(crate) struct Conv2dBiasOp(pub Geom, pub bool);
/// `dx = conv_transpose(dy, w)`: the input gradient of [`Conv2dOp`].
pub(crate) struct ConvInputGradOp(pub Geom);
/// `dw = Σₙ dyₙ ⋆ xₙ`: the weight gradient of [`Conv2dOp`].
pub(crate) struct ConvWeightGradOp(pub Geom);

/// Apply one of the three ops to contiguous copies of its inputs.
fn apply2<C: CustomOp2 + Send + Sync + 'static>(a: &Tensor, b: &Tensor, op: C) -> Result<Tensor> {
    a.contiguous()?.apply_op2(&b.contiguous()?, op)
}

pub(crate) fn conv(g: Geom, x: &Tensor, w: &Tensor) -> Result<Tensor> {
    apply2(x, w, Conv2dOp(g))
}
pub(crate) fn conv_bias(g: Geom, x: &Tensor, w: &Tensor, b: &Tensor, relu: bool) -> Result<Tensor> {
    x.contiguous()?
        .apply_op3(&w.contiguous()?, &b.contiguous()?, Conv2dBiasOp(g, relu))
}
pub(crate) fn input_grad(g: Geom, dy: &Tensor, w: &Tensor) -> Result<Tensor> {
    apply2(dy, w, ConvInputGradOp(g))
}
pub(crate) fn weight_grad(g: Geom, x: &Tensor, dy: &Tensor) -> Result<Tensor> {
    apply2(x, dy, ConvWeightGradOp(g))
}

/// Computes a gradient only when somebody asked for it (not e.g. for the input image of the
/// first layer).
fn if_needed(t: &Tensor, grad: impl FnOnce() -> Result<Tensor>) -> Result<Option<Tensor>> {
    t.track_op().then(grad).transpose()
}

/// `(dx, dw)` of a convolution for upstream `dy`, each only if asked for: the backward of
/// [`Conv2dOp`] and the conv part of [`Conv2dBiasOp`]'s.
fn conv_grads(
    g: Geom,
    x: &Tensor,
    w: &Tensor,
    dy: &Tensor,
) -> Result<(Option<Tensor>, Option<Tensor>)> {
    let dx = if_needed(x, || input_grad(g, dy, &super::saved(w)))?;
    let dw = if_needed(w, || weight_grad(g, &super::saved(x), dy))?;
    Ok((dx, dw.and_then(|d| param_grad(w, d))))
}

impl CustomOp2 for Conv2dOp {
    fn name(&self) -> &'static str {
        "zoo-conv2d"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        two_inputs!(
            self,
            s1,
            l1,
            s2,
            l2,
            self.0.x_shape(),
            self.0.w_shape(),
            conv_fwd_no_bias,
            self.0.y_shape()
        )
    }
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        conv_grads(self.0, x, w, dy)
    }
}

impl CustomOp3 for Conv2dBiasOp {
    fn name(&self) -> &'static str {
        if self.1 {
            "zoo-conv2d-bias-relu"
        } else {
            "zoo-conv2d-bias"
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
        let g = &self.0;
        g.check("input", l1.shape(), &g.x_shape())?;
        g.check("weight", l2.shape(), &g.w_shape())?;
        g.check("bias", l3.shape(), &g.o.into())?;
        if s1.dtype() != s2.dtype() || s1.dtype() != s3.dtype() {
            candle_core::bail!(
                "{}: dtype mismatch {:?} / {:?} / {:?}",
                self.name(),
                s1.dtype(),
                s2.dtype(),
                s3.dtype()
            );
        }
        with_float!(s1.dtype(), self.name(), |T| {
            let x = contiguous::<T>(s1, l1, self.name())?;
            let w = contiguous::<T>(s2, l2, self.name())?;
            let b = contiguous::<T>(s3, l3, self.name())?;
            Ok(storage(conv_fwd(g, x, w, Some(b), self.1), g.y_shape()))
        })
    }
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dy = &super::relu::through_fused_relu(self.1, dy, y)?;
        let (dx, dw) = conv_grads(self.0, x, w, dy)?;
        let db = if_needed(b, || super::bn::channel_sum(dy))?;
        Ok((dx, dw, db.and_then(|d| param_grad(b, d))))
    }
}

impl CustomOp2 for ConvInputGradOp {
    fn name(&self) -> &'static str {
        "zoo-conv2d-input-grad"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        two_inputs!(
            self,
            s1,
            l1,
            s2,
            l2,
            self.0.y_shape(),
            self.0.w_shape(),
            conv_input_grad,
            self.0.x_shape()
        )
    }
    fn bwd(
        &self,
        dy: &Tensor,
        w: &Tensor,
        _dx: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let d_dy = if_needed(dy, || conv(self.0, g, w))?;
        let d_w = if_needed(w, || weight_grad(self.0, g, dy))?;
        Ok((d_dy, d_w))
    }
}

impl CustomOp2 for ConvWeightGradOp {
    fn name(&self) -> &'static str {
        "zoo-conv2d-weight-grad"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        two_inputs!(
            self,
            s1,
            l1,
            s2,
            l2,
            self.0.x_shape(),
            self.0.y_shape(),
            conv_weight_grad,
            self.0.w_shape()
        )
    }
    fn bwd(
        &self,
        x: &Tensor,
        dy: &Tensor,
        _dw: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let d_x = if_needed(x, || input_grad(self.0, dy, g))?;
        let d_dy = if_needed(dy, || conv(self.0, x, g))?;
        Ok((d_x, d_dy))
    }
}
