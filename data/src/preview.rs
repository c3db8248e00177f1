//! A PNG grid of images with their labels drawn as small digit glyphs (no fonts needed), so a
//! person can check what an experiment trains on.

use crate::dataset::ImageDataset;
use anyhow::{ensure, Context, Result};
use std::path::Path;

/// 3×5 bitmaps of the digits 0–9, one row per u8 (low 3 bits, MSB = left pixel).
const GLYPHS: [[u8; 5]; 10] = [
    [0b111, 0b101, 0b101, 0b101, 0b111],
    [0b010, 0b110, 0b010, 0b010, 0b111],
    [0b111, 0b001, 0b111, 0b100, 0b111],
    [0b111, 0b001, 0b111, 0b001, 0b111],
    [0b101, 0b101, 0b111, 0b001, 0b001],
    [0b111, 0b100, 0b111, 0b001, 0b111],
    [0b111, 0b100, 0b111, 0b101, 0b111],
    [0b111, 0b001, 0b010, 0b010, 0b010],
    [0b111, 0b101, 0b111, 0b101, 0b111],
    [0b111, 0b101, 0b111, 0b001, 0b111],
];

const WHITE: [u8; 3] = [255, 255, 255];
const RED: [u8; 3] = [255, 64, 64];
const GREEN: [u8; 3] = [64, 220, 64];

struct Canvas {
    w: usize,
    h: usize,
    px: Vec<u8>,
}

impl Canvas {
    fn put(&mut self, x: usize, y: usize, c: [u8; 3]) {
        if x < self.w && y < self.h {
            let o = (y * self.w + x) * 3;
            self.px[o..o + 3].copy_from_slice(&c);
        }
    }
    /// Draws `n` in decimal at (x, y) with glyph pixels `s`×`s`; returns the x after the text.
    fn number(&mut self, mut x: usize, y: usize, n: u32, s: usize, c: [u8; 3]) -> usize {
        for ch in n.to_string().bytes() {
            let g = GLYPHS[(ch - b'0') as usize];
            for (gy, row) in g.iter().enumerate() {
                for gx in 0..3 {
                    if row >> (2 - gx) & 1 == 1 {
                        for dy in 0..s {
                            for dx in 0..s {
                                self.put(x + gx * s + dx, y + gy * s + dy, c);
                            }
                        }
                    }
                }
            }
            x += 4 * s;
        }
        x
    }
}

/// Encodes rows `idx` of `ds` as a PNG grid, `cols` per row, each image magnified `scale`×, with its
/// label under it in white; where `clean` is given and differs, the label is red and the clean
/// label follows in green.
pub fn grid_png(
    ds: &ImageDataset,
    idx: &[usize],
    clean: Option<&[u32]>,
    cols: usize,
    scale: usize,
) -> Result<Vec<u8>> {
    ensure!(!idx.is_empty(), "nothing to preview: no rows selected");
    ensure!(cols > 0 && scale > 0, "cols and scale must be positive");
    if let Some(&bad) = idx.iter().find(|&&i| i >= ds.len()) {
        anyhow::bail!("row {bad} outside the dataset's {} rows", ds.len());
    }
    let (c, h, w) = (ds.channels, ds.height, ds.width);
    let gs = 2; // glyph pixel size
    let pad = 4;
    let cell_w = w * scale + pad;
    let cell_h = h * scale + 5 * gs + 2 * pad;
    let rows = idx.len().div_ceil(cols);
    let mut cv = Canvas {
        w: cols * cell_w + pad,
        h: rows * cell_h + pad,
        px: vec![0; 0],
    };
    cv.px = vec![24; cv.w * cv.h * 3];
    for (k, &i) in idx.iter().enumerate() {
        let (x0, y0) = (pad + (k % cols) * cell_w, pad + (k / cols) * cell_h);
        let img = ds.image(i);
        for y in 0..h * scale {
            for x in 0..w * scale {
                let (sy, sx) = (y / scale, x / scale);
                let v = |ch: usize| img[ch * h * w + sy * w + sx];
                let rgb = if c == 3 {
                    [v(0), v(1), v(2)]
                } else {
                    [v(0); 3]
                };
                cv.put(x0 + x, y0 + y, rgb);
            }
        }
        let label = ds.labels[i];
        let ty = y0 + h * scale + pad / 2;
        match clean.map(|cl| cl[i]) {
            Some(t) if t != label => {
                let x = cv.number(x0, ty, label, gs, RED);
                cv.number(x + 2 * gs, ty, t, gs, GREEN);
            }
            _ => {
                cv.number(x0, ty, label, gs, WHITE);
            }
        }
    }
    let mut out = Vec::new();
    let enc = image::codecs::png::PngEncoder::new(&mut out);
    image::ImageEncoder::write_image(
        enc,
        &cv.px,
        cv.w as u32,
        cv.h as u32,
        image::ExtendedColorType::Rgb8,
    )
    .context("encoding the preview PNG")?;
    Ok(out)
}

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, then a rename, so a
/// failed run never leaves a partial file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path
        .file_name()
        .context("output path has no file name")?
        .to_string_lossy()
        .to_string();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        anyhow::anyhow!("renaming {} to {}: {e}", tmp.display(), path.display())
    })
}
