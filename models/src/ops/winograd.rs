//! Winograd F(2×2, 3×3) for 3×3, stride-1, pad-1 convolutions (Lavin & Gray, "Fast Algorithms
//! for Convolutional Neural Networks", 2016), the shape of nearly every convolution in the CIFAR
//! ResNets and of their input gradients.
//!
//! Each 2×2 output tile is `Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`, with `d` the tile's 4×4 input
//! window and `g` the 3×3 kernel. Summed over input channels, the element-wise product at each
//! of the 16 transform positions `ξ` becomes one gemm `M_ξ (o × tiles) = U_ξ (o × c) · V_ξ
//! (c × tiles)`, so the multiply count is 16/36 of the direct convolution's (2.25× fewer), and
//! the transforms (additions only, flat loops over whole planes) replace the 9× im2col copy.
//! The result equals the direct convolution up to float rounding (the transforms' entries are
//! 0, ±1 and ±½), so gradients through it stay exact to the same tolerance.

use super::conv::Geom;
use super::kernels::{gemm, lane_padded, per_chunk, sum_per_thread, Mat, Real};
use std::mem::MaybeUninit;

/// Below this many input channels the transform-domain gemms are too thin (inner dimension =
/// channels) to beat im2col + one gemm (e.g. the RGB stem).
const MIN_CHANNELS: usize = 8;
/// Floats of transformed inputs and products (`16·(c + o)` per tile) that one chunk of images
/// may hold: about half of a 1 MiB L2, so that the gemms read `V` and the output transform
/// reads `M` from cache (with 2 MiB the op ran 1.5–2× slower).
const CHUNK_FLOATS: usize = 128 * 1024;

/// Whether [`conv3x3`] computes this convolution: the shape fits, and the image is large enough
/// that the transform-domain products (16 per tile, tiles padded to even sides plus one spare
/// per tile row) are at most 5/8 of the direct convolution's 9 per pixel. That holds from 8×8
/// up (64 pixels, 20 tiles: 1.8× fewer); a 7×7 image (1.4×) ran slower than im2col.
pub(crate) fn applies(g: &Geom) -> bool {
    let (th, tw) = tiles(g);
    g.kh == 3
        && g.kw == 3
        && g.stride == 1
        && g.pad == 1
        && g.groups == 1
        && g.c >= MIN_CHANNELS
        && g.ho == g.h
        && g.wo == g.w
        && 128 * th * (tw + 1) <= 45 * g.h * g.w
}

/// `U[ξ][o][c] = (G g Gᵀ)[ξ]` for every kernel `g = w[o][c]`, with
/// `G = [[1, 0, 0], [½, ½, ½], [½, −½, ½], [0, 0, 1]]`.
fn transform_weights<T: Real>(g: &Geom, w: &[T]) -> Vec<T> {
    let (o, c) = (g.o, g.c);
    let half = T::from_f64(0.5);
    let mut u = vec![T::from_f64(0.0); 16 * o * c];
    for (oc, k) in w.chunks_exact(9).enumerate() {
        // Rows of G·g (4 × 3).
        let mut gg = [[T::from_f64(0.0); 3]; 4];
        for j in 0..3 {
            let (a, b, d) = (k[j], k[3 + j], k[6 + j]);
            gg[0][j] = a;
            gg[1][j] = (a + b + d) * half;
            gg[2][j] = (a - b + d) * half;
            gg[3][j] = d;
        }
        for (i, r) in gg.iter().enumerate() {
            let row = [
                r[0],
                (r[0] + r[1] + r[2]) * half,
                (r[0] - r[1] + r[2]) * half,
                r[2],
            ];
            for (j, v) in row.into_iter().enumerate() {
                u[(i * 4 + j) * o * c + oc] = v;
            }
        }
    }
    u
}

/// Tiles of one image: rows, columns.
fn tiles(g: &Geom) -> (usize, usize) {
    (g.h.div_ceil(2), g.w.div_ceil(2))
}

/// Tiles per image (with one spare tile per tile row, see [`transform_input`]) and images per
/// chunk (as many as [`CHUNK_FLOATS`] allows, at least one).
fn chunking(g: &Geom) -> (usize, usize) {
    let (th, tw) = tiles(g);
    let per_image = th * (tw + 1);
    let nb = (CHUNK_FLOATS / (16 * (g.c + g.o) * per_image)).clamp(1, g.n.max(1));
    (per_image, nb)
}

/// [`transform_input`]'s scratch: the parity-split padded planes `eo` (zero borders, written
/// only inside) and the row transforms `r`.
struct PlaneScratch<T> {
    eo: Vec<T>,
    r: Vec<T>,
}

impl<T: Real> PlaneScratch<T> {
    fn new(g: &Geom) -> Self {
        let (th, tw) = tiles(g);
        let plane = (th + 1) * (tw + 1);
        let zero = T::from_f64(0.0);
        PlaneScratch {
            eo: vec![zero; 4 * plane],
            r: vec![zero; 8 * plane],
        }
    }
}

/// `even ← row[0], row[2], …` (`⌈w/2⌉`) and `odd ← row[1], row[3], …` (`⌊w/2⌋`).
fn split_columns<T: Copy>(row: &[T], even: &mut [T], odd: &mut [T]) {
    for ((e, o), pair) in even.iter_mut().zip(odd.iter_mut()).zip(row.chunks_exact(2)) {
        *e = pair[0];
        *o = pair[1];
    }
    if row.len() % 2 == 1 {
        even[row.len() / 2] = row[row.len() - 1];
    }
}

/// `dst[i] = f(a[i], b[i])` over the common length (a flat loop the compiler vectorises).
fn combine<T: Real>(dst: &mut [T], a: &[T], b: &[T], f: impl Fn(T, T) -> T) {
    for (d, (x, y)) in dst.iter_mut().zip(a.iter().zip(b)) {
        *d = f(*x, *y);
    }
}

/// `V[ξ][ci][col0 + j]` = `(Bᵀ d B)[ξ]` of tile `j = th·(tw + 1) + t` of image `x` (`c × h × w`),
/// with `Bᵀ = [[1, 0, −1, 0], [0, 1, 1, 0], [0, −1, 1, 0], [0, 1, 0, −1]]`; `v` holds `16 · c`
/// rows of `cols` columns. Each tile row has one spare tile (`t = tw`, garbage that the output
/// transform skips) so that every step below is a flat loop over a whole plane:
///
/// 1. the channel is split into four zero-padded planes `eo` by parity of padded row and of
///    padded column (`e`: even columns, `o`: odd; each `th + 1` rows of `tw + 1`; padded row /
///    column `p` is input row / column `p − 1`). Only the image's own pixels are written, so
///    the padding stays zero from the buffer's allocation;
/// 2. the row transform gives `r[s]` (same shape), e.g. `r[0] = e[j] − e[j + 1]`;
/// 3. the column transform combines padded rows `2th … 2th + 3`, which are rows `th` and
///    `th + 1` of the two row-parity planes: e.g. `V(0, s) = r_even[s][j] − r_even[s][j + tw + 1]`.
///
/// Per-row loops of 4–16 tiles were dominated by loop overhead.
fn transform_input<T: Real>(
    g: &Geom,
    x: &[T],
    v: &mut [T],
    (cols, col0): (usize, usize),
    PlaneScratch { eo, r }: &mut PlaneScratch<T>,
) {
    let (th_n, tw_n) = tiles(g);
    let (h, w) = (g.h, g.w);
    let wt = tw_n + 1; // tiles per tile row, with the spare one
    let rlen = (th_n + 1) * wt; // one plane of eo and of r
    let per = th_n * wt;
    // eo planes: [row parity][e | o].
    let plane = |par: usize, odd: usize| (par * 2 + odd) * rlen;
    for ci in 0..g.c {
        let xc = &x[ci * h * w..(ci + 1) * h * w];
        for (ih, row) in xc.chunks_exact(w).enumerate() {
            let rp = ih + 1; // padded row
            let (par, k) = (rp % 2, rp / 2);
            // Padded column 2j (e[j]) is input column 2j − 1; padded 2j + 1 (o[j]) is 2j.
            let (e, o) = eo.split_at_mut(plane(par, 1));
            let e = &mut e[plane(par, 0) + k * wt + 1..][..w / 2];
            let o = &mut o[k * wt..][..w.div_ceil(2)];
            split_columns(row, o, e);
        }
        for par in 0..2 {
            let n = rlen - 1; // the last element of each r plane is a spare column
            let (e, o) = (&eo[plane(par, 0)..][..rlen], &eo[plane(par, 1)..][..rlen]);
            let rs = |s: usize| (s * 2 + par) * rlen;
            combine(&mut r[rs(0)..][..n], &e[..n], &e[1..], |a, b| a - b);
            combine(&mut r[rs(1)..][..n], &o[..n], &e[1..], |a, b| a + b);
            combine(&mut r[rs(2)..][..n], &e[1..], &o[..n], |a, b| a - b);
            combine(&mut r[rs(3)..][..n], &o[..n], &o[1..], |a, b| a - b);
        }
        for s in 0..4 {
            let re = &r[(s * 2) * rlen..(s * 2 + 1) * rlen];
            let ro = &r[(s * 2 + 1) * rlen..(s * 2 + 2) * rlen];
            let (d0, d1, d2, d3) = (&re[..per], &ro[..per], &re[wt..], &ro[wt..]);
            let row = |a: usize| ((a * 4 + s) * g.c + ci) * cols + col0;
            combine(&mut v[row(0)..][..per], d0, d2, |a, b| a - b);
            combine(&mut v[row(1)..][..per], d1, d2, |a, b| a + b);
            combine(&mut v[row(2)..][..per], d2, d1, |a, b| a - b);
            combine(&mut v[row(3)..][..per], d1, d3, |a, b| a - b);
        }
    }
}

/// `y = Aᵀ M A (+ bias)` for every tile of the chunk's `imgs` images, with
/// `Aᵀ = [[1, 1, 1, 0], [0, 1, −1, −1]]`; `m` holds `16 · o` rows of `cols` columns and `q`
/// is scratch of `4 · cols`. Per output channel the transform runs over all tiles of the chunk
/// at once (contiguous columns), then the four outputs of each tile are interleaved into `y`.
fn transform_output<T: Real>(
    g: &Geom,
    m: &[T],
    cols: usize,
    bias: Option<&[T]>,
    y: &mut [MaybeUninit<T>],
    q: &mut [T],
) {
    let zero = T::from_f64(0.0);
    let (th_n, tw_n) = tiles(g);
    let wt = tw_n + 1;
    let (h, w, hw, per) = (g.h, g.w, g.h * g.w, th_n * wt);
    let imgs = y.len() / (g.o * hw);
    for oi in 0..g.o {
        let b = bias.map_or(zero, |b| b[oi]);
        let mr = |xi: usize| &m[(xi * g.o + oi) * cols..][..cols];
        let (q0, rest) = q.split_at_mut(cols);
        let (q1, rest) = rest.split_at_mut(cols);
        let (q2, q3) = rest.split_at_mut(cols);
        let (m0, m1, m2, m3) = (mr(0), mr(1), mr(2), mr(3));
        let (m4, m5, m6, m7) = (mr(4), mr(5), mr(6), mr(7));
        let (m8, m9, m10, m11) = (mr(8), mr(9), mr(10), mr(11));
        let (m12, m13, m14, m15) = (mr(12), mr(13), mr(14), mr(15));
        for t in 0..cols {
            // s0[j] = M[0][j] + M[1][j] + M[2][j];  s1[j] = M[1][j] − M[2][j] − M[3][j]
            let s00 = m0[t] + m4[t] + m8[t];
            let s01 = m1[t] + m5[t] + m9[t];
            let s02 = m2[t] + m6[t] + m10[t];
            let s03 = m3[t] + m7[t] + m11[t];
            let s10 = m4[t] - m8[t] - m12[t];
            let s11 = m5[t] - m9[t] - m13[t];
            let s12 = m6[t] - m10[t] - m14[t];
            let s13 = m7[t] - m11[t] - m15[t];
            q0[t] = s00 + s01 + s02 + b;
            q1[t] = s01 - s02 - s03 + b;
            q2[t] = s10 + s11 + s12 + b;
            q3[t] = s11 - s12 - s13 + b;
        }
        for im in 0..imgs {
            let yo = &mut y[(im * g.o + oi) * hw..(im * g.o + oi + 1) * hw];
            for th in 0..th_n {
                let tiles = im * per + th * wt..im * per + th * wt + tw_n;
                for (dr, (qa, qb)) in [(&*q0, &*q1), (&*q2, &*q3)].into_iter().enumerate() {
                    let oh = 2 * th + dr;
                    if oh >= h {
                        continue;
                    }
                    let yr = &mut yo[oh * w..(oh + 1) * w];
                    let (qa, qb) = (&qa[tiles.clone()], &qb[tiles.clone()]);
                    let mut pairs = yr.chunks_exact_mut(2);
                    for (p, (a, bb)) in (&mut pairs).zip(qa.iter().zip(qb)) {
                        p[0].write(*a);
                        p[1].write(*bb);
                    }
                    if let [last] = pairs.into_remainder() {
                        last.write(qa[tw_n - 1]);
                    }
                }
            }
        }
    }
}

/// Per-thread buffers of [`conv3x3`]: transformed inputs `v`, transform-domain products `m`,
/// [`transform_input`]'s planes and [`transform_output`]'s rows `q`.
struct Scratch<T> {
    v: Vec<T>,
    m: Vec<T>,
    planes: PlaneScratch<T>,
    q: Vec<T>,
}

/// `y = conv(x, w) (+ bias)` for a geometry where [`applies`] holds.
pub(crate) fn conv3x3<T: Real>(g: &Geom, x: &[T], w: &[T], bias: Option<&[T]>) -> Vec<T> {
    let (c, o, hw) = (g.c, g.o, g.h * g.w);
    let (per_image, nb) = chunking(g);
    let u = transform_weights(g, w);
    // Uninitialised: the output transform writes every element (each pixel is in one tile).
    let len = g.n * o * hw;
    let mut y: Vec<T> = Vec::with_capacity(len);
    let zero = T::from_f64(0.0);
    // Row stride of V and M, lane-padded so that gemm reads V in place.
    let cols_max = lane_padded(nb * per_image);
    let scratch = || Scratch {
        v: vec![zero; 16 * c * cols_max],
        m: vec![zero; 16 * o * cols_max],
        planes: PlaneScratch::new(g),
        q: vec![zero; 4 * cols_max],
    };
    // One chunk: nb images through transform → 16 gemms → inverse transform.
    per_chunk(
        &mut y.spare_capacity_mut()[..len],
        nb * o * hw,
        scratch,
        |ci, yc, s, par| {
            let Scratch { v, m, planes, q } = s;
            let imgs = yc.len() / (o * hw);
            let cols = lane_padded(imgs * per_image);
            let first = ci * nb;
            for b in 0..imgs {
                let xi = &x[(first + b) * c * hw..(first + b + 1) * c * hw];
                transform_input(g, xi, v, (cols, b * per_image), planes);
            }
            for xi in 0..16 {
                let ux = &u[xi * o * c..(xi + 1) * o * c];
                let vx = &v[xi * c * cols..(xi + 1) * c * cols];
                let mx = &mut m[xi * o * cols..(xi + 1) * o * cols];
                gemm(
                    o,
                    cols,
                    c,
                    mx,
                    false,
                    Mat::rows(ux, c),
                    ux.len(),
                    Mat::rows(vx, cols),
                    vx.len(),
                    par,
                );
            }
            transform_output(g, m, cols, bias, yc, q);
        },
    );
    // SAFETY: the chunks cover `0..len` and `transform_output` writes every element of each.
    unsafe { y.set_len(len) };
    y
}

/// `W[ξ][oi][col0 + j] = (A dY Aᵀ)[ξ]` for every 2×2 tile `dY` of the output gradient `dy`
/// (`o × h × w`) of one image, `A = [[1, 0], [1, 1], [1, −1], [0, −1]]` (the transpose of the
/// output transform's `Aᵀ`); tiles indexed as in [`transform_input`] (spare tiles are zero).
/// `quad` is scratch of six planes of `th · (tw + 1)`: the tile corners `a b / c d`, split out
/// of each row once, and a row `(p, q)` of `A dY`, after which the 16 entries are flat loops: row
/// `k` of `A dY` is
/// `(p, q) = (a, b), (a + c, b + d), (a − c, b − d), (−c, −d)`, and each gives
/// `(p, p + q, p − q, −q)`.
fn transform_grad<T: Real>(
    g: &Geom,
    dy: &[T],
    wd: &mut [T],
    (cols, col0): (usize, usize),
    quad: &mut [T],
) {
    let (th_n, tw_n) = tiles(g);
    let (w, hw) = (g.w, g.h * g.w);
    let wt = tw_n + 1;
    let per = th_n * wt;
    // Positions never written (the spare tile, the row or column past an odd side) stay zero
    // from `quad`'s allocation: every call of one geometry writes the same positions.
    let (quad, pq) = quad.split_at_mut(4 * per);
    for oi in 0..g.o {
        for (ih, row) in dy[oi * hw..(oi + 1) * hw].chunks_exact(w).enumerate() {
            let (th, dr) = (ih / 2, ih % 2);
            let (left, right) = quad.split_at_mut((dr * 2 + 1) * per);
            let ev = &mut left[dr * 2 * per + th * wt..][..w.div_ceil(2)];
            let od = &mut right[th * wt..][..w / 2];
            split_columns(row, ev, od);
        }
        let (a, b) = (&quad[..per], &quad[per..2 * per]);
        let (c, d) = (&quad[2 * per..3 * per], &quad[3 * per..]);
        for k in 0..4 {
            let (p, q) = pq.split_at_mut(per);
            match k {
                0 => {
                    p.copy_from_slice(a);
                    q.copy_from_slice(b);
                }
                1 => {
                    combine(p, a, c, |x, y| x + y);
                    combine(q, b, d, |x, y| x + y);
                }
                2 => {
                    combine(p, a, c, |x, y| x - y);
                    combine(q, b, d, |x, y| x - y);
                }
                _ => {
                    combine(p, c, c, |x, _| T::from_f64(0.0) - x);
                    combine(q, d, d, |x, _| T::from_f64(0.0) - x);
                }
            }
            let row = |s: usize| ((k * 4 + s) * g.o + oi) * cols + col0;
            wd[row(0)..][..per].copy_from_slice(p);
            combine(&mut wd[row(1)..][..per], p, q, |x, y| x + y);
            combine(&mut wd[row(2)..][..per], p, q, |x, y| x - y);
            combine(&mut wd[row(3)..][..per], q, q, |x, _| T::from_f64(0.0) - x);
        }
    }
}

/// `dw = Gᵀ S G` for each `(o, c)`, with `S[ξ][c][o]` the transform-domain sums.
fn inverse_transform_weights<T: Real>(g: &Geom, s: &[T]) -> Vec<T> {
    let (o, c) = (g.o, g.c);
    let half = T::from_f64(0.5);
    let mut dw = vec![T::from_f64(0.0); o * c * 9];
    for oi in 0..o {
        for ci in 0..c {
            let at = |a: usize, b: usize| s[((a * 4 + b) * c + ci) * o + oi];
            // t = S·G (4 × 3), then dw = Gᵀ·t.
            let mut t = [[T::from_f64(0.0); 3]; 4];
            for (a, ta) in t.iter_mut().enumerate() {
                let (s0, s1, s2, s3) = (at(a, 0), at(a, 1), at(a, 2), at(a, 3));
                *ta = [
                    s0 + (s1 + s2) * half,
                    (s1 - s2) * half,
                    (s1 + s2) * half + s3,
                ];
            }
            let k = &mut dw[(oi * c + ci) * 9..(oi * c + ci + 1) * 9];
            for j in 0..3 {
                k[j] = t[0][j] + (t[1][j] + t[2][j]) * half;
                k[3 + j] = (t[1][j] - t[2][j]) * half;
                k[6 + j] = (t[1][j] + t[2][j]) * half + t[3][j];
            }
        }
    }
    dw
}

/// `dw = Σₙ Σ_tiles Gᵀ [(A dY Aᵀ) ⊙ (Bᵀ d B)] G` for a geometry where [`applies`] holds: the
/// weight gradient of [`conv3x3`] (`⟨dY, Aᵀ[U ⊙ V]A⟩ = ⟨Gᵀ[(A dY Aᵀ) ⊙ V]G, g⟩`). Per transform
/// position one gemm `Sᵀ_ξ (c × o) += V_ξ (c × tiles) · W_ξᵀ`, whose inner dimension is the
/// number of tiles (long, so the gemm runs near peak), with 2.25× fewer multiplies than
/// im2col. Each thread sums its own chunks; the sums are added and transformed back once.
pub(crate) fn weight_grad<T: Real>(g: &Geom, x: &[T], dy: &[T]) -> Vec<T> {
    let (c, o, hw) = (g.c, g.o, g.h * g.w);
    let (per_image, nb) = chunking(g);
    let chunks = g.n.div_ceil(nb);
    let zero = T::from_f64(0.0);
    let slen = 16 * c * o;
    // Sums chunks `range` into a fresh `S`.
    let sum_chunks = |range: std::ops::Range<usize>, par: bool| -> Vec<T> {
        let cols_max = nb * per_image;
        let mut v = vec![zero; 16 * c * cols_max];
        let mut wd = vec![zero; 16 * o * cols_max];
        let mut planes = PlaneScratch::new(g);
        let mut quad = vec![zero; 6 * per_image];
        let mut s = vec![zero; slen];
        for ci in range {
            let first = ci * nb;
            let imgs = nb.min(g.n - first);
            let cols = imgs * per_image;
            for b in 0..imgs {
                let img = first + b;
                let at = (cols, b * per_image);
                transform_input(g, &x[img * c * hw..][..c * hw], &mut v, at, &mut planes);
                transform_grad(g, &dy[img * o * hw..][..o * hw], &mut wd, at, &mut quad);
            }
            for xi in 0..16 {
                let vx = &v[xi * c * cols..(xi + 1) * c * cols];
                let wx = &wd[xi * o * cols..(xi + 1) * o * cols];
                gemm(
                    c,
                    o,
                    cols,
                    &mut s[xi * c * o..(xi + 1) * c * o],
                    true,
                    Mat::rows(vx, cols),
                    vx.len(),
                    Mat::rows_t(wx, cols),
                    wx.len(),
                    par,
                );
            }
        }
        s
    };
    let s = sum_per_thread(chunks, slen, sum_chunks);
    inverse_transform_weights(g, &s)
}
