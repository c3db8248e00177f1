//! Winograd F(4×4, 3×3) for 3×3, stride-1, pad-1 convolutions (Lavin & Gray, "Fast Algorithms
//! for Convolutional Neural Networks", 2016), the shape of nearly every convolution in the CIFAR
//! ResNets and of their input gradients.
//!
//! Each 4×4 output tile is `Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`, with `d` the tile's 6×6 input
//! window and `g` the 3×3 kernel. Summed over input channels, the element-wise product at each
//! of the 36 transform positions `ξ` becomes one gemm `M_ξ (o × tiles) = U_ξ (o × c) · V_ξ
//! (c × tiles)`, so the multiply count is 36/144 of the direct convolution's (4× fewer), and
//! the transforms (flat loops over whole planes) replace the 9× im2col copy with a 2.25× one.
//! The result equals the direct convolution up to float rounding; the transforms' entries
//! (interpolation points 0, ±1, ±2) are at most 8 in size, so in f32 the rounding stays within
//! the ops' tests' tolerance, and gradients through it stay exact to the same tolerance.

use super::geom::Geom;
use super::kernels::{gemm, per_chunk, sum_per_thread, Mat, Real};

/// Below this many input channels the transform-domain gemms are too thin (inner dimension =
/// channels) to beat im2col + one gemm (e.g. the RGB stem).
const MIN_CHANNELS: usize = 8;
/// Floats of transformed inputs and products (`36·(c + o)` per tile) that one chunk of images
/// may hold: about half of a 1 MiB L2, so that the gemms read `V` and the output transform
/// reads `M` from cache (with 2 MiB the F(2×2) version ran 1.5–2× slower).
const CHUNK_FLOATS: usize = 128 * 1024;
/// Output tile side.
const TILE: usize = 4;
/// Transform positions: (4 + 2)².
const POSITIONS: usize = 36;

/// Whether [`conv3x3`] computes this convolution: the shape fits, the image is at least 8×8
/// (smaller ones are untested for speed) and the transform-domain products (36 per tile, the
/// image padded to sides that are multiples of 4) are at most 5/8 of the direct convolution's
/// 9 per pixel (4× fewer when the sides are multiples of 4).
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
        && g.h.min(g.w) >= 8
        && 8 * POSITIONS * th * tw <= 5 * 9 * g.h * g.w
}

/// Tiles of one image: rows, columns.
fn tiles(g: &Geom) -> (usize, usize) {
    (g.h.div_ceil(TILE), g.w.div_ceil(TILE))
}

/// Tiles per image and images per chunk: as many as [`CHUNK_FLOATS`] allows (at least one),
/// rounded down where possible so that the chunk's tiles are a multiple of 16 (`gemm` copies
/// an operand whose row length is not before multiplying; see [`super::kernels::lane_padded`]).
fn chunking(g: &Geom) -> (usize, usize) {
    let (th, tw) = tiles(g);
    let per_image = th * tw;
    let mut nb = (CHUNK_FLOATS / (POSITIONS * (g.c + g.o) * per_image)).clamp(1, g.n.max(1));
    let step = 16 / gcd(per_image, 16);
    if nb >= step {
        nb -= nb % step;
    }
    (per_image, nb)
}

/// Distance between the starts of two planes holding `len` elements: `len` rounded up to an
/// odd number of 16-element blocks (cache lines of f32), so that the 36 planes start in
/// different sets of the L1 cache. (Planes 4 KiB apart, as the 32×32 and 8×8 maps' were, all
/// fall in the same set and evict each other: the tile gathers and transforms ran at half speed.)
fn plane_stride(len: usize) -> usize {
    (len.div_ceil(16) | 1) * 16
}

/// `(len, plane_stride(len))`: the shape the transforms take.
fn plane_shape(len: usize) -> (usize, usize) {
    (len, plane_stride(len))
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

// The one-dimensional transforms, written out so that their zero entries cost nothing.

/// `G g` (3 → 6), `G = [[¼, 0, 0], [−⅙, −⅙, −⅙], [−⅙, ⅙, −⅙], [1/24, 1/12, ⅙], [1/24, −1/12, ⅙],
/// [0, 0, 1]]`.
fn kernel_1d<T: Real>([g0, g1, g2]: [T; 3]) -> [T; 6] {
    let (quarter, half, sixth) = (T::from_f64(0.25), T::from_f64(0.5), T::from_f64(1.0 / 6.0));
    let s = g0 + g2;
    let e = g0 * quarter + g2;
    [
        g0 * quarter,
        T::zero() - (s + g1) * sixth,
        T::zero() - (s - g1) * sixth,
        (e + g1 * half) * sixth,
        (e - g1 * half) * sixth,
        g2,
    ]
}

/// `Gᵀ s` (6 → 3): the adjoint of [`kernel_1d`].
fn kernel_adjoint_1d<T: Real>([s0, s1, s2, s3, s4, s5]: [T; 6]) -> [T; 3] {
    let (quarter, sixth, twelfth) = (
        T::from_f64(0.25),
        T::from_f64(1.0 / 6.0),
        T::from_f64(1.0 / 12.0),
    );
    let (p, p34) = (s1 + s2, s3 + s4);
    [
        s0 * quarter + (p34 * quarter - p) * sixth,
        (s2 - s1) * sixth + (s3 - s4) * twelfth,
        (p34 - p) * sixth + s5,
    ]
}

/// `Bᵀ d` (6 → 6), `Bᵀ = [[4, 0, −5, 0, 1, 0], [0, −4, −4, 1, 1, 0], [0, 4, −4, −1, 1, 0],
/// [0, −2, −1, 2, 1, 0], [0, 2, −1, −2, 1, 0], [0, 4, 0, −5, 0, 1]]`.
#[inline(always)]
fn input_1d<T: Real>([d0, d1, d2, d3, d4, d5]: [T; 6]) -> [T; 6] {
    let (two, four, five) = (T::from_f64(2.0), T::from_f64(4.0), T::from_f64(5.0));
    let (a, b) = (d4 - four * d2, d3 - four * d1);
    let (c, e) = (d4 - d2, two * (d3 - d1));
    [
        four * d0 - five * d2 + d4,
        a + b,
        a - b,
        c + e,
        c - e,
        four * d1 - five * d3 + d5,
    ]
}

/// `Aᵀ m` (6 → 4), `Aᵀ = [[1, 1, 1, 1, 1, 0], [0, 1, −1, 2, −2, 0], [0, 1, 1, 4, 4, 0],
/// [0, 1, −1, 8, −8, 1]]`.
#[inline(always)]
fn output_1d<T: Real>([m0, m1, m2, m3, m4, m5]: [T; 6]) -> [T; 4] {
    let (two, four, eight) = (T::from_f64(2.0), T::from_f64(4.0), T::from_f64(8.0));
    let (s12, d12, s34, d34) = (m1 + m2, m1 - m2, m3 + m4, m3 - m4);
    [
        m0 + s12 + s34,
        d12 + two * d34,
        s12 + four * s34,
        d12 + eight * d34 + m5,
    ]
}

/// `A y` (4 → 6): the adjoint of [`output_1d`].
#[inline(always)]
fn output_adjoint_1d<T: Real>([y0, y1, y2, y3]: [T; 4]) -> [T; 6] {
    let (two, four, eight) = (T::from_f64(2.0), T::from_f64(4.0), T::from_f64(8.0));
    let (p, q) = (y0 + y2, y1 + y3);
    let (p4, q8) = (y0 + four * y2, two * y1 + eight * y3);
    [y0, p + q, p - q, p4 + q8, p4 - q8, y3]
}

// The transforms run in place on "planes": for each of the 36 positions of a 6×6 tile, one
// row of every channel's tiles of the chunk (`[ξ][channel][image][tile]`, `cols` = images ×
// tiles per channel), so a 1-D transform over six positions is one flat loop over six whole
// planes, however small the images (per-channel loops over an 8×8 image's 4 tiles were
// dominated by their overhead).

/// `p_i[t] ← f(p_0[t], …, p_5[t])_i` for every `t`: one flat pass over six planes, each a
/// separate argument (so the compiler knows they do not overlap and vectorises the loop).
#[inline(always)]
fn pass6<T: Real>([p0, p1, p2, p3, p4, p5]: [&mut [T]; 6], f: impl Fn([T; 6]) -> [T; 6]) {
    #[inline(always)]
    fn run<T: Real>(
        p0: &mut [T],
        p1: &mut [T],
        p2: &mut [T],
        p3: &mut [T],
        p4: &mut [T],
        p5: &mut [T],
        f: impl Fn([T; 6]) -> [T; 6],
    ) {
        let n = p0.len();
        let (p1, p2, p3, p4, p5) = (
            &mut p1[..n],
            &mut p2[..n],
            &mut p3[..n],
            &mut p4[..n],
            &mut p5[..n],
        );
        for t in 0..n {
            let v = f([p0[t], p1[t], p2[t], p3[t], p4[t], p5[t]]);
            (p0[t], p1[t], p2[t], p3[t], p4[t], p5[t]) = (v[0], v[1], v[2], v[3], v[4], v[5]);
        }
    }
    run(p0, p1, p2, p3, p4, p5, f)
}

/// Planes `plane(0..6)` of `buf` (each `len` long, `stride` apart, at ascending offsets), as
/// six slices.
fn planes6<T>(
    buf: &mut [T],
    (len, stride): (usize, usize),
    plane: impl Fn(usize) -> usize,
) -> [&mut [T]; 6] {
    let mut rest = buf;
    let mut at = 0;
    [0, 1, 2, 3, 4, 5].map(|i| {
        let start = plane(i) * stride;
        let (_, tail) = std::mem::take(&mut rest).split_at_mut(start - at);
        let (row, tail) = tail.split_at_mut(len);
        rest = tail;
        at = start + len;
        row
    })
}

/// `V = Bᵀ d B` in place on the 36 planes of `buf` (`shape`: each `len` long, `stride` apart):
/// rows, then columns.
fn input_transform<T: Real>(buf: &mut [T], shape: (usize, usize)) {
    for rho in 0..6 {
        pass6(planes6(buf, shape, |phi| rho * 6 + phi), input_1d);
    }
    for s in 0..6 {
        pass6(planes6(buf, shape, |a| a * 6 + s), input_1d);
    }
}

/// `Aᵀ M A` in place on the 36 planes of `buf` (`shape` as above): columns, then rows; output
/// `(k, l)` ends in plane `6k + l`.
fn output_transform<T: Real>(buf: &mut [T], shape: (usize, usize)) {
    let keep = |[m0, m1, m2, m3, m4, m5]: [T; 6]| {
        let [y0, y1, y2, y3] = output_1d([m0, m1, m2, m3, m4, m5]);
        [y0, y1, y2, y3, m4, m5]
    };
    for s in 0..6 {
        pass6(planes6(buf, shape, |a| a * 6 + s), keep);
    }
    for k in 0..TILE {
        pass6(planes6(buf, shape, |l| k * 6 + l), keep);
    }
}

/// `A dY Aᵀ` in place on the 36 planes of `buf` (`shape` as above), `dY[k][l]` in plane `6k + l`
/// for `k, l < 4`: rows, then columns.
fn grad_transform<T: Real>(buf: &mut [T], shape: (usize, usize)) {
    let adjoint = |[y0, y1, y2, y3, _, _]: [T; 6]| output_adjoint_1d([y0, y1, y2, y3]);
    for k in 0..TILE {
        pass6(planes6(buf, shape, |l| k * 6 + l), adjoint);
    }
    for s in 0..6 {
        pass6(planes6(buf, shape, |a| a * 6 + s), adjoint);
    }
}

/// Moves each channel's tiles into the planes without index tables, in two passes that are
/// short fixed-length loops for the CIFAR nets' map sizes: every row of the channel is split
/// into the phases of its zero-padded version (`q[k][j]` = padded column `4j + k`), then each
/// tile row's run of `tw` tiles at window column `φ` is a contiguous slice of phase `φ % 4`
/// starting at `φ / 4`, copied to its plane. (Per-element index tables, as before, cost two
/// table reads per element moved: the gathers took a quarter of a ResNet step.)
///
/// Element `(ρ, φ)` (`ρ, φ < side`) of tile `(i, j)` is pixel `(4i + ρ − shift, 4j + φ − shift)`
/// of the channel, zero outside it, and goes to plane `6ρ + φ` at `i·tw + j`.
struct Tiler<T> {
    side: usize,
    shift: usize,
    h: usize,
    w: usize,
    th: usize,
    tw: usize,
    /// The padded rows' phases, `[row][k][group]` for the `4·th + side − 4` rows the tiles
    /// read, pixel `(r, c)` at row `r + shift`, padded column `c + shift`. Only pixels are ever
    /// written, so the padding stays zero.
    phases: Vec<T>,
}

impl<T: Real> Tiler<T> {
    /// Input tiles: 6×6 windows starting one pixel up and left of each 4×4 output tile.
    fn input(g: &Geom) -> Self {
        Self::new(g, 6, 1)
    }

    /// Output-gradient tiles: the 4×4 output tiles themselves.
    fn grad(g: &Geom) -> Self {
        Self::new(g, TILE, 0)
    }

    fn new(g: &Geom, side: usize, shift: usize) -> Self {
        let (th, tw) = tiles(g);
        let rows = TILE * th + side - TILE;
        Tiler {
            side,
            shift,
            h: g.h,
            w: g.w,
            th,
            tw,
            phases: vec![T::zero(); rows * TILE * phase_len(side, tw)],
        }
    }

    /// Tiles the images `x` (`images × channels × h·w`) into `planes` (`plane` apart), whose
    /// rows are `cols` = images · tiles long: image `b`, channel `ci` at `ci·cols + b·tiles`.
    /// In the order of `x`, which is read once, front to back.
    fn fill(&mut self, x: &[T], channels: usize, planes: &mut [T], plane: usize) {
        let (hw, per) = (self.h * self.w, self.th * self.tw);
        let imgs = x.len() / (channels * hw);
        let cols = imgs * per;
        for (i, ch) in x.chunks_exact(hw).enumerate() {
            let (b, ci) = (i / channels, i % channels);
            self.fill_channel(ch, &mut planes[ci * cols + b * per..], plane);
        }
    }

    /// One channel's tiles into `out` (tile `t` of plane `ξ` at `ξ·plane + t`), with the sizes
    /// of the CIFAR nets' square maps as literals so that every loop unrolls.
    fn fill_channel(&mut self, ch: &[T], out: &mut [T], plane: usize) {
        let (side, shift, th, tw, w) = (self.side, self.shift, self.th, self.tw, self.w);
        let phases = &mut self.phases[..];
        match (side, th, tw, w) {
            (6, 2, 2, 8) => tile_channel(ch, 8, phases, out, plane, 6, 1, 2, 2),
            (6, 4, 4, 16) => tile_channel(ch, 16, phases, out, plane, 6, 1, 4, 4),
            (6, 8, 8, 32) => tile_channel(ch, 32, phases, out, plane, 6, 1, 8, 8),
            (4, 2, 2, 8) => tile_channel(ch, 8, phases, out, plane, TILE, 0, 2, 2),
            (4, 4, 4, 16) => tile_channel(ch, 16, phases, out, plane, TILE, 0, 4, 4),
            (4, 8, 8, 32) => tile_channel(ch, 32, phases, out, plane, TILE, 0, 8, 8),
            _ => tile_channel(ch, w, phases, out, plane, side, shift, th, tw),
        }
    }
}

/// One channel (rows `w` long) into its tiles: its rows split into `phases`, then the runs
/// copied to the planes of `out`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn tile_channel<T: Real>(
    ch: &[T],
    w: usize,
    phases: &mut [T],
    out: &mut [T],
    plane: usize,
    side: usize,
    shift: usize,
    th: usize,
    tw: usize,
) {
    let groups = phase_len(side, tw);
    let stride = TILE * groups;
    for (r, row) in ch.chunks_exact(w).enumerate() {
        split_row(
            row,
            &mut phases[(r + shift) * stride..][..stride],
            tw,
            groups,
            shift,
        );
    }
    runs_to_planes(phases, groups, out, plane, side, th, tw);
}

/// Length of a padded row's phases: `tw`, plus one when the windows overhang the last tile.
#[inline(always)]
fn phase_len(side: usize, tw: usize) -> usize {
    tw + (side - TILE).div_ceil(TILE)
}

/// `q[k][j] = row[4j + k − shift]` (`q` is `4 × groups`) for the pixels of `row`; the other
/// entries are left as they are (zero).
#[inline(always)]
fn split_row<T: Real>(row: &[T], q: &mut [T], tw: usize, groups: usize, shift: usize) {
    let (q0, rest) = q.split_at_mut(groups);
    let (q1, rest) = rest.split_at_mut(groups);
    let (q2, q3) = rest.split_at_mut(groups);
    match (row.len() == TILE * tw, shift) {
        (true, 0) => {
            for (j, px) in row.chunks_exact(TILE).enumerate() {
                (q0[j], q1[j], q2[j], q3[j]) = (px[0], px[1], px[2], px[3]);
            }
        }
        (true, 1) => {
            for (j, px) in row.chunks_exact(TILE).enumerate() {
                (q1[j], q2[j], q3[j], q0[j + 1]) = (px[0], px[1], px[2], px[3]);
            }
        }
        _ => {
            for (c, &v) in row.iter().enumerate() {
                let at = c + shift;
                q[(at % TILE) * groups + at / TILE] = v;
            }
        }
    }
}

/// Planes `6ρ + φ` at `i·tw + j` ← `phases[4i + ρ][φ % 4][j + φ / 4]` for `ρ, φ < side`: one
/// channel's `th × tw` tiles, each tile row's run a contiguous copy.
#[inline(always)]
fn runs_to_planes<T: Real>(
    phases: &[T],
    groups: usize,
    out: &mut [T],
    plane: usize,
    side: usize,
    th: usize,
    tw: usize,
) {
    let stride = TILE * groups;
    for i in 0..th {
        for rho in 0..side {
            let row = &phases[(TILE * i + rho) * stride..][..stride];
            for phi in 0..side {
                let run = &row[(phi % TILE) * groups + phi / TILE..][..tw];
                out[(6 * rho + phi) * plane + i * tw..][..tw].copy_from_slice(run);
            }
        }
    }
}

/// `from[i]`: where output pixel `i` of an image is in the output planes (position `(k, l)` of
/// tile `(i / 4, j / 4)` ends in plane `6k + l`), for planes `plane` apart; rebuilt only when
/// that distance changes (a chunk of fewer images). (Unlike the input gathers, a table-free
/// version of this one measured no faster.)
#[derive(Default)]
struct OutputTable {
    from: Vec<u32>,
    plane: usize,
}

impl OutputTable {
    fn with_plane(&mut self, g: &Geom, plane: usize) -> &[u32] {
        if self.plane != plane || self.from.is_empty() {
            let tw = tiles(g).1;
            self.from.clear();
            self.from.extend((0..g.h * g.w).map(|px| {
                let (i, j) = (px / g.w, px % g.w);
                let (k, l, t) = (i % TILE, j % TILE, (i / TILE) * tw + j / TILE);
                ((k * 6 + l) * plane + t) as u32
            }));
            self.plane = plane;
        }
        &self.from
    }
}

/// Per-thread buffers of [`conv3x3`]: the input tiles `v` (transformed in place), the
/// products `m` (transformed back in place), the input tiler and the output table.
struct Scratch<T> {
    v: Vec<T>,
    m: Vec<T>,
    tiler: Tiler<T>,
    from: OutputTable,
}

/// `U[ξ][o][c] = (G g Gᵀ)[ξ]` for every kernel `g = w[o][c]`, planes `ξ` of `o·c` elements
/// [`plane_stride`] apart.
fn transform_weights<T: Real>(g: &Geom, w: &[T]) -> Vec<T> {
    let oc_n = plane_stride(g.o * g.c);
    let mut u = vec![T::zero(); POSITIONS * oc_n];
    for (oc, k) in w.chunks_exact(9).enumerate() {
        let cols: [[T; 6]; 3] = [0, 1, 2].map(|j| kernel_1d([k[j], k[3 + j], k[6 + j]]));
        for i in 0..6 {
            for (j, v) in kernel_1d([cols[0][i], cols[1][i], cols[2][i]])
                .into_iter()
                .enumerate()
            {
                u[(i * 6 + j) * oc_n + oc] = v;
            }
        }
    }
    u
}

/// `y = conv(x, w) (+ bias)` for a geometry where [`applies`] holds: per chunk of images, the
/// input tiles are gathered and transformed, multiplied by the transformed kernels in 36 gemms
/// `M_ξ (o × cols) = U_ξ (o × c) · V_ξ (c × cols)`, transformed back, and the outputs gathered
/// into `y`.
pub(crate) fn conv3x3<T: Real>(
    g: &Geom,
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    relu: bool,
) -> Vec<T> {
    let (c, o, hw) = (g.c, g.o, g.h * g.w);
    let (per, nb) = chunking(g);
    let (u, us) = (transform_weights(g, w), plane_shape(o * c));
    // Uninitialised: the output gather writes every element.
    let len = g.n * o * hw;
    let mut y: Vec<T> = Vec::with_capacity(len);
    let scratch = || Scratch {
        v: vec![T::zero(); POSITIONS * plane_stride(c * nb * per)],
        m: vec![T::zero(); POSITIONS * plane_stride(o * nb * per)],
        tiler: Tiler::input(g),
        from: OutputTable::default(),
    };
    per_chunk(
        &mut y.spare_capacity_mut()[..len],
        nb * o * hw,
        scratch,
        |chunk, yc, s, par| {
            let Scratch { v, m, tiler, from } = s;
            let imgs = yc.len() / (o * hw);
            let cols = imgs * per;
            let first = chunk * nb;
            let (vs, ms) = (plane_shape(c * cols), plane_shape(o * cols));
            tiler.fill(&x[first * c * hw..][..imgs * c * hw], c, v, vs.1);
            input_transform(v, vs);
            for xi in 0..POSITIONS {
                let ux = &u[xi * us.1..][..us.0];
                let vx = &v[xi * vs.1..][..vs.0];
                let mx = &mut m[xi * ms.1..][..ms.0];
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
            output_transform(m, ms);
            let from = from.with_plane(g, ms.1);
            for (b, yb) in yc.chunks_exact_mut(o * hw).enumerate() {
                for (oi, plane) in yb.chunks_exact_mut(hw).enumerate() {
                    let bias = bias.map_or(T::zero(), |b| b[oi]);
                    let mo = &m[oi * cols + b * per..];
                    if relu {
                        for (dst, &i) in plane.iter_mut().zip(from.iter()) {
                            dst.write(super::relu::relu_value(mo[i as usize] + bias));
                        }
                    } else {
                        for (dst, &i) in plane.iter_mut().zip(from.iter()) {
                            dst.write(mo[i as usize] + bias);
                        }
                    }
                }
            }
        },
    );
    // SAFETY: the chunks cover `0..len` and the output gather writes every element of each.
    unsafe { y.set_len(len) };
    y
}

/// `dw = Gᵀ S G` for each `(o, c)`, with `S[ξ][c][o]` the transform-domain sums (planes `ξ`
/// [`plane_stride`] apart).
fn inverse_transform_weights<T: Real>(g: &Geom, s: &[T]) -> Vec<T> {
    let (o, c) = (g.o, g.c);
    let stride = plane_stride(c * o);
    let mut dw = vec![T::zero(); o * c * 9];
    for oi in 0..o {
        for ci in 0..c {
            let at = |a: usize, b: usize| s[(a * 6 + b) * stride + ci * o + oi];
            // t = S·G (6 × 3), then dw = Gᵀ·t.
            let t: [[T; 3]; 6] =
                [0, 1, 2, 3, 4, 5].map(|a| kernel_adjoint_1d([0, 1, 2, 3, 4, 5].map(|b| at(a, b))));
            let k = &mut dw[(oi * c + ci) * 9..][..9];
            for j in 0..3 {
                let col = kernel_adjoint_1d([0, 1, 2, 3, 4, 5].map(|a| t[a][j]));
                (k[j], k[3 + j], k[6 + j]) = (col[0], col[1], col[2]);
            }
        }
    }
    dw
}

/// `dw = Σₙ Σ_tiles Gᵀ [(A dY Aᵀ) ⊙ (Bᵀ d B)] G` for a geometry where [`applies`] holds: the
/// weight gradient of [`conv3x3`] (`⟨dY, Aᵀ[U ⊙ V]A⟩ = ⟨Gᵀ[(A dY Aᵀ) ⊙ V]G, g⟩`). Per transform
/// position one gemm `Sᵀ_ξ (c × o) += V_ξ (c × tiles) · W_ξᵀ`, whose inner dimension is the
/// number of tiles (long, so the gemm runs near peak), with 4× fewer multiplies than im2col.
/// Each thread sums its own chunks; the sums are added and transformed back once.
pub(crate) fn weight_grad<T: Real>(g: &Geom, x: &[T], dy: &[T]) -> Vec<T> {
    let (c, o, hw) = (g.c, g.o, g.h * g.w);
    let (per, nb) = chunking(g);
    let chunks = g.n.div_ceil(nb);
    let ss = plane_shape(c * o);
    let slen = POSITIONS * ss.1;
    // Sums chunks `range` into a fresh `S`.
    let sum_chunks = |range: std::ops::Range<usize>, par: bool| -> Vec<T> {
        let mut v = vec![T::zero(); POSITIONS * plane_stride(c * nb * per)];
        let mut wd = vec![T::zero(); POSITIONS * plane_stride(o * nb * per)];
        let (mut gx, mut gy) = (Tiler::input(g), Tiler::grad(g));
        let mut s = vec![T::zero(); slen];
        for chunk in range {
            let first = chunk * nb;
            let imgs = nb.min(g.n - first);
            let cols = imgs * per;
            let (vs, ws) = (plane_shape(c * cols), plane_shape(o * cols));
            gx.fill(&x[first * c * hw..][..imgs * c * hw], c, &mut v, vs.1);
            gy.fill(&dy[first * o * hw..][..imgs * o * hw], o, &mut wd, ws.1);
            input_transform(&mut v, vs);
            grad_transform(&mut wd, ws);
            for xi in 0..POSITIONS {
                let vx = &v[xi * vs.1..][..vs.0];
                let wx = &wd[xi * ws.1..][..ws.0];
                gemm(
                    c,
                    o,
                    cols,
                    &mut s[xi * ss.1..][..ss.0],
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

#[cfg(test)]
mod tests {
    use super::plane_stride;

    /// Planes `plane_stride` apart start in 36 different L1 sets (64 sets of 64-byte lines,
    /// f32), for every plane length the zoo's layers use and any other.
    #[test]
    fn planes_start_in_different_cache_sets() {
        for len in (1..5000).chain([1024, 4096, 16384, 36864, 65536]) {
            let stride = plane_stride(len);
            assert!(
                stride >= len && stride.is_multiple_of(16),
                "len {len}: stride {stride}"
            );
            let mut sets: Vec<usize> = (0..36).map(|p| (p * stride * 4 / 64) % 64).collect();
            sets.sort_unstable();
            sets.dedup();
            assert_eq!(sets.len(), 36, "len {len}: stride {stride}");
        }
    }
}
