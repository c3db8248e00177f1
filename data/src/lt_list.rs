//! ImageNet-LT and Places-LT (Liu et al. 2019, "Large-Scale Long-Tailed Recognition in an Open
//! World") from their published split lists.
//!
//! The lists (`ImageNet_LT_train.txt`, `ImageNet_LT_val.txt`, `ImageNet_LT_test.txt`, and the
//! same for `Places_LT`) hold one `relative/path.jpg label` per line; the images are the original
//! ImageNet-2012 / Places-365 files, which are not redistributable and are not on this machine.
//! Every image is resized (shorter side to `resize`, bilinear) and centre-cropped to
//! `crop × crop`, then kept as u8 like every other [`ImageDataset`]. Memory is
//! `n · 3 · crop²` bytes: about 17 GB for ImageNet-LT's 115,846 training images at 224.

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use rayon::prelude::*;

use crate::dataset::ImageDataset;
use crate::source::SourceInfo;

/// Classes of a list dataset: 1000 for `ImageNet_LT`, 365 for `Places_LT`.
pub fn num_classes(name: &str) -> Result<usize> {
    Ok(match name {
        "ImageNet_LT" => 1000,
        "Places_LT" => 365,
        other => bail!("unknown long-tailed list dataset {other:?} (ImageNet_LT or Places_LT)"),
    })
}

/// `<list_dir>/<name>_<split>.txt` (`split`: `train`, `val`, `test`).
pub fn list_path(list_dir: &Path, name: &str, split: &str) -> PathBuf {
    list_dir.join(format!("{name}_{split}.txt"))
}

/// Parses a split list: `path label` per non-empty line; labels must be below `num_classes`.
pub fn parse_list(text: &str, num_classes: usize) -> Result<Vec<(String, u32)>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (path, label) = line
            .rsplit_once(char::is_whitespace)
            .with_context(|| format!("line {}: expected `path label`, got {line:?}", i + 1))?;
        let label: u32 = label
            .trim()
            .parse()
            .with_context(|| format!("line {}: label {label:?} is not an integer", i + 1))?;
        ensure!(
            (label as usize) < num_classes,
            "line {}: label {label} outside 0..{num_classes}",
            i + 1
        );
        out.push((path.trim().to_string(), label));
    }
    ensure!(!out.is_empty(), "the list holds no image");
    Ok(out)
}

/// Decodes, resizes (shorter side to `resize`) and centre-crops one image to `crop × crop` RGB,
/// written C,H,W into `out`.
pub fn load_resized_chw(path: &Path, resize: usize, crop: usize, out: &mut [u8]) -> Result<()> {
    ensure!(
        crop >= 1 && resize >= crop,
        "need resize >= crop >= 1, got {resize}/{crop}"
    );
    ensure!(
        out.len() == 3 * crop * crop,
        "output buffer has the wrong size"
    );
    let img = image::open(path)
        .with_context(|| format!("decoding {}", path.display()))?
        .to_rgb8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    ensure!(w > 0 && h > 0, "{}: empty image", path.display());
    let (nw, nh) = if w <= h {
        (resize, (h * resize).div_ceil(w).max(resize))
    } else {
        ((w * resize).div_ceil(h).max(resize), resize)
    };
    let img = image::imageops::resize(
        &img,
        nw as u32,
        nh as u32,
        image::imageops::FilterType::Triangle,
    );
    let (x0, y0) = ((nw - crop) / 2, (nh - crop) / 2);
    for y in 0..crop {
        for x in 0..crop {
            let p = img.get_pixel((x0 + x) as u32, (y0 + y) as u32);
            for c in 0..3 {
                out[c * crop * crop + y * crop + x] = p[c];
            }
        }
    }
    Ok(())
}

/// Loads every image of a split list under `image_root`, decoding in parallel.
pub fn load_list(
    name: &str,
    image_root: &Path,
    list: &Path,
    num_classes: usize,
    resize: usize,
    crop: usize,
) -> Result<ImageDataset> {
    let text =
        std::fs::read_to_string(list).with_context(|| format!("reading {}", list.display()))?;
    let rows = parse_list(&text, num_classes).with_context(|| list.display().to_string())?;
    ensure!(
        image_root.is_dir(),
        "image root {} is not a directory",
        image_root.display()
    );
    let sz = 3 * crop * crop;
    let mut images = vec![0u8; rows.len() * sz];
    images
        .par_chunks_mut(sz)
        .zip(rows.par_iter())
        .try_for_each(|(out, (p, _))| load_resized_chw(&image_root.join(p), resize, crop, out))?;
    Ok(ImageDataset {
        name: name.to_string(),
        images,
        labels: rows.iter().map(|r| r.1).collect(),
        channels: 3,
        height: crop,
        width: crop,
        num_classes,
        class_names: (0..num_classes).map(|c| c.to_string()).collect(),
        source: SourceInfo {
            kind: "dir".into(),
            repo: name.to_string(),
            revision: "split list".into(),
            commit: None,
            files: vec![list.display().to_string()],
            paths: vec![list.to_path_buf()],
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists_and_rejects_bad_lines() {
        let rows = parse_list("train/n01/a b.JPEG 3\n\nval/x.jpg 0\n", 5).unwrap();
        assert_eq!(
            rows,
            vec![("train/n01/a b.JPEG".into(), 3), ("val/x.jpg".into(), 0)]
        );
        assert!(parse_list("a.jpg 5\n", 5).is_err());
        assert!(parse_list("a.jpg x\n", 5).is_err());
        assert!(parse_list("a.jpg\n", 5).is_err());
        assert!(parse_list("\n", 5).is_err());
        assert_eq!(num_classes("Places_LT").unwrap(), 365);
        assert!(num_classes("imagenet").is_err());
    }

    #[test]
    fn loads_resizes_and_crops() {
        let dir = tempfile::tempdir().unwrap();
        // 8×4 image: left half red, right half blue; shorter side 4 → resize 4 keeps it, the
        // centre 4×4 crop holds columns 2..6: red, red, blue, blue.
        let mut img = image::RgbImage::new(8, 4);
        for (x, _, p) in img.enumerate_pixels_mut() {
            *p = if x < 4 {
                image::Rgb([255, 0, 0])
            } else {
                image::Rgb([0, 0, 255])
            };
        }
        std::fs::create_dir_all(dir.path().join("train")).unwrap();
        img.save(dir.path().join("train/a.png")).unwrap();
        let list = dir.path().join("ImageNet_LT_train.txt");
        std::fs::write(&list, "train/a.png 7\ntrain/a.png 1\n").unwrap();
        let ds = load_list("ImageNet_LT", dir.path(), &list, 10, 4, 4).unwrap();
        assert_eq!((ds.len(), ds.height, ds.width), (2, 4, 4));
        assert_eq!(ds.labels, vec![7, 1]);
        let im = ds.image(0);
        let red_row: Vec<u8> = im[..4].to_vec();
        let blue_row: Vec<u8> = im[2 * 16..2 * 16 + 4].to_vec();
        assert_eq!(red_row, vec![255, 255, 0, 0]);
        assert_eq!(blue_row, vec![0, 0, 255, 255]);
        let missing = dir.path().join("none.txt");
        assert!(load_list("ImageNet_LT", dir.path(), &missing, 10, 4, 4).is_err());
    }
}
