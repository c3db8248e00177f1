//! The shape of one convolution ([`Geom`]), shared by the im2col ops (`super::conv`) and the
//! Winograd ops (`super::winograd`). It lives apart from both so that each can use it without
//! importing the other (conv dispatches to Winograd; Winograd needs only the shape).

use candle_core::{Result, Shape};

/// Shapes and hyper-parameters shared by the three ops of one convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geom {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub o: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub pad: usize,
    pub groups: usize,
    pub ho: usize,
    pub wo: usize,
}

impl Geom {
    pub fn new(
        x: (usize, usize, usize, usize),
        wt: (usize, usize, usize, usize),
        stride: usize,
        pad: usize,
        groups: usize,
    ) -> Result<Self> {
        let (n, c, h, w) = x;
        let (o, cg, kh, kw) = wt;
        if groups == 0 || stride == 0 {
            candle_core::bail!("conv2d: groups and stride must be positive");
        }
        if c % groups != 0 || o % groups != 0 || cg != c / groups {
            candle_core::bail!(
                "conv2d: input channels {c}, output channels {o} and weight in-channels {cg} \
                 do not fit groups={groups}"
            );
        }
        if h + 2 * pad < kh || w + 2 * pad < kw {
            candle_core::bail!(
                "conv2d: kernel {kh}x{kw} larger than padded input {h}x{w} (pad {pad})"
            );
        }
        let ho = (h + 2 * pad - kh) / stride + 1;
        let wo = (w + 2 * pad - kw) / stride + 1;
        Ok(Geom {
            n,
            c,
            h,
            w,
            o,
            kh,
            kw,
            stride,
            pad,
            groups,
            ho,
            wo,
        })
    }
    pub(super) fn cg(&self) -> usize {
        self.c / self.groups
    }
    pub(super) fn og(&self) -> usize {
        self.o / self.groups
    }
    /// Rows of the im2col matrix of one group.
    pub(super) fn k(&self) -> usize {
        self.cg() * self.kh * self.kw
    }
    pub(super) fn hw(&self) -> usize {
        self.h * self.w
    }
    pub(super) fn hwo(&self) -> usize {
        self.ho * self.wo
    }
    /// Stride 1 with output width = input width (3×3 pad 1, 5×5 pad 2, …): each im2col row is
    /// then the image shifted by one constant offset, except in `pad`-wide boundary columns, so
    /// it is one contiguous copy instead of one per output row.
    pub(super) fn same_width(&self) -> bool {
        self.stride == 1 && self.wo == self.w
    }
    /// Where kernel position `(ki, kj)` of a [`Self::same_width`] convolution reads the channel
    /// plane: see [`Shift`].
    pub(super) fn shift(&self, ki: usize, kj: usize) -> Shift {
        let (p, ki) = (self.pad as isize, ki as isize);
        let a = (p - ki).clamp(0, self.ho as isize);
        let b = (self.h as isize + p - ki).clamp(a, self.ho as isize);
        // Plane offset of the input pixel of output (a, 0); negative in the padding.
        let off = (a + ki - p) * self.w as isize + kj as isize - p;
        let len = (b - a) * self.w as isize;
        let t0 = (-off).clamp(0, len);
        let t1 = (self.hw() as isize - off).clamp(t0, len);
        Shift {
            rows: a as usize..b as usize,
            block: t0 as usize..t1 as usize,
            // Clamped so that an empty `block` still slices the plane.
            src: (off + t0).clamp(0, self.hw() as isize) as usize,
        }
    }
    /// For stride 1, square kernels and `pad < kh`, the input gradient as a forward
    /// convolution: `dx = conv(dy, w̃)` over `dy` padded by `kh − 1 − pad`, with `w̃` the
    /// kernels flipped and in/out channels swapped ([`flipped_weights`]). That replaces a
    /// `(k × og)·(og × hwo)` gemm, whose inner dimension is only the output channels, and an
    /// accumulating col2im into a zeroed `dx` by an im2col and a gemm that writes `dx` once.
    pub(super) fn transposed(&self) -> Option<Geom> {
        if self.stride != 1 || self.kh != self.kw || self.pad >= self.kh || self.pointwise() {
            return None;
        }
        let pad = self.kh - 1 - self.pad;
        let t = Geom::new(
            (self.n, self.o, self.ho, self.wo),
            (self.c, self.og(), self.kh, self.kw),
            1,
            pad,
            self.groups,
        )
        .ok()?;
        (t.ho == self.h && t.wo == self.w).then_some(t)
    }
    /// A 1×1 stride-1 unpadded convolution needs no im2col: the image is its own column matrix.
    pub(super) fn pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == 1 && self.pad == 0
    }
    pub(super) fn x_shape(&self) -> Shape {
        (self.n, self.c, self.h, self.w).into()
    }
    pub(super) fn y_shape(&self) -> Shape {
        (self.n, self.o, self.ho, self.wo).into()
    }
    pub(super) fn w_shape(&self) -> Shape {
        (self.o, self.cg(), self.kh, self.kw).into()
    }
    pub(super) fn check(&self, what: &str, got: &Shape, want: &Shape) -> Result<()> {
        if got != want {
            candle_core::bail!("conv2d {what}: expected shape {want:?}, got {got:?}");
        }
        Ok(())
    }
    /// The range of output columns `ow` whose input column `ow*s - p + kj` lies inside `[0, w)`.
    pub(super) fn valid_cols(&self, kj: usize) -> (usize, usize) {
        let (s, p) = (self.stride, self.pad);
        let lo = if kj >= p { 0 } else { (p - kj).div_ceil(s) };
        // largest ow with ow*s + kj - p <= w - 1  ⇔  ow*s <= w - 1 + p - kj
        let hi = if self.w + p > kj {
            ((self.w - 1 + p - kj) / s + 1).min(self.wo)
        } else {
            0
        };
        (lo.min(hi), hi)
    }
}

/// One kernel position of a [`Geom::same_width`] convolution: output rows `rows` have their input
/// row inside the image; within those rows (a block of `rows.len() * w` values) the positions
/// `block` read the plane contiguously from `src`, and every other position is padding.
pub(super) struct Shift {
    pub(super) rows: std::ops::Range<usize>,
    pub(super) block: std::ops::Range<usize>,
    pub(super) src: usize,
}
