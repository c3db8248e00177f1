//! Seeded augmentations on u8 C,H,W images.
//!
//! Parameters are drawn first (sequentially, from the caller's rng) and applied afterwards, so a
//! batch can be augmented in parallel and still be identical for the same seed.

use rand::rngs::StdRng;
use rand::Rng;

/// Which augmentation the loader applies to training batches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Augment {
    None,
    /// CIFAR standard: zero-pad 4 px each side, random 32×32 crop, horizontal flip with p = ½.
    CifarCropFlip,
    /// Random translation by up to ±`max_px` in each axis, zero fill (Hinton et al.'s MNIST jitter).
    Jitter {
        max_px: usize,
    },
}

/// One draw of augmentation parameters: the image is shifted so that output (y, x) reads input
/// (y − dy, x − dx), then mirrored left-right if `flip`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct AugParams {
    pub dy: i32,
    pub dx: i32,
    pub flip: bool,
}

impl Augment {
    /// Draws the parameters for one image.
    pub fn sample(&self, rng: &mut StdRng) -> AugParams {
        match *self {
            Augment::None => AugParams::default(),
            Augment::CifarCropFlip => {
                // A crop at offset (oy, ox) ∈ [0, 8]² of the 4-padded image is a shift of 4 − o.
                let oy = rng.random_range(0..=8i32);
                let ox = rng.random_range(0..=8i32);
                let flip = rng.random::<bool>();
                AugParams {
                    dy: 4 - oy,
                    dx: 4 - ox,
                    flip,
                }
            }
            Augment::Jitter { max_px } => {
                let m = max_px as i32;
                AugParams {
                    dy: rng.random_range(-m..=m),
                    dx: rng.random_range(-m..=m),
                    flip: false,
                }
            }
        }
    }

    /// Augments `src` into `dst` (both C·H·W) with freshly drawn parameters.
    pub fn apply(
        &self,
        src: &[u8],
        dst: &mut [u8],
        c: usize,
        h: usize,
        w: usize,
        rng: &mut StdRng,
    ) {
        let p = self.sample(rng);
        apply_params(p, src, dst, c, h, w);
    }
}

/// Applies `p` to `src` (C·H·W) into `dst`; pixels shifted in from outside are 0.
pub fn apply_params(p: AugParams, src: &[u8], dst: &mut [u8], c: usize, h: usize, w: usize) {
    assert_eq!(src.len(), c * h * w);
    assert_eq!(dst.len(), c * h * w);
    if p == AugParams::default() {
        dst.copy_from_slice(src);
        return;
    }
    for ch in 0..c {
        let s = &src[ch * h * w..(ch + 1) * h * w];
        let d = &mut dst[ch * h * w..(ch + 1) * h * w];
        for y in 0..h {
            let sy = y as i32 - p.dy;
            let row = &mut d[y * w..(y + 1) * w];
            if sy < 0 || sy >= h as i32 {
                row.fill(0);
                continue;
            }
            let srow = &s[sy as usize * w..(sy as usize + 1) * w];
            for (x, out) in row.iter_mut().enumerate() {
                // Flip after the shift: output x shows shifted column w−1−x.
                let xs = if p.flip { w - 1 - x } else { x };
                let sx = xs as i32 - p.dx;
                *out = if sx < 0 || sx >= w as i32 {
                    0
                } else {
                    srow[sx as usize]
                };
            }
        }
    }
}
