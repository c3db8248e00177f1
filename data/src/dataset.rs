//! In-memory image datasets (u8, C,H,W per image) and `load`.

use crate::parquet_io::{read_image_parquet, ImageSchema};
use crate::registry::{spec, Split};
use crate::source::{resolve_files, DataSource, SourceInfo};
use anyhow::Result;

/// A labelled image set held as u8 (N·C·H·W, RGB channel order); normalised per batch by the
/// `Loader`, which keeps memory at a quarter of f32.
#[derive(Clone, Debug)]
pub struct ImageDataset {
    pub name: String,
    pub images: Vec<u8>,
    pub labels: Vec<u32>,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub num_classes: usize,
    pub class_names: Vec<String>,
    pub source: SourceInfo,
}

impl ImageDataset {
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    /// Bytes per image (C·H·W).
    pub fn image_size(&self) -> usize {
        self.channels * self.height * self.width
    }
    /// Image `i` as C,H,W u8.
    pub fn image(&self, i: usize) -> &[u8] {
        let s = self.image_size();
        &self.images[i * s..(i + 1) * s]
    }
    /// The rows `idx` (in that order, repeats allowed), same metadata.
    pub fn subset(&self, idx: &[usize]) -> ImageDataset {
        let s = self.image_size();
        let mut images = Vec::with_capacity(idx.len() * s);
        for &i in idx {
            images.extend_from_slice(self.image(i));
        }
        ImageDataset {
            name: self.name.clone(),
            images,
            labels: idx.iter().map(|&i| self.labels[i]).collect(),
            channels: self.channels,
            height: self.height,
            width: self.width,
            num_classes: self.num_classes,
            class_names: self.class_names.clone(),
            source: self.source.clone(),
        }
    }
    /// Number of rows per class, `num_classes` long.
    pub fn class_counts(&self) -> Vec<usize> {
        class_counts(&self.labels, self.num_classes)
    }
    /// Replaces the labels (e.g. with corrupted ones).
    ///
    /// # Panics
    /// If the length differs or a label is out of range: a programming error, not user input.
    pub fn with_labels(mut self, labels: Vec<u32>) -> Self {
        assert_eq!(
            labels.len(),
            self.len(),
            "with_labels: {} labels for {} images",
            labels.len(),
            self.len()
        );
        assert!(
            labels.iter().all(|&l| (l as usize) < self.num_classes),
            "with_labels: label outside 0..{}",
            self.num_classes
        );
        self.labels = labels;
        self
    }
}

/// Counts of each class in `labels` (labels ≥ `num_classes` are ignored).
pub fn class_counts(labels: &[u32], num_classes: usize) -> Vec<usize> {
    let mut c = vec![0usize; num_classes];
    for &l in labels {
        if let Some(x) = c.get_mut(l as usize) {
            *x += 1;
        }
    }
    c
}

/// Loads dataset `name` (`mnist`, `fashion_mnist`, `cifar10`, `cifar100`, `cifar100_coarse`),
/// decoding every image into memory in parallel.
pub fn load(name: &str, split: Split, src: &DataSource) -> Result<ImageDataset> {
    let spec = spec(name)?;
    let source = resolve_files(spec.repo, spec.revision, spec.files(split), src)?;
    let schema = ImageSchema {
        image_column: spec.image_column,
        label_column: spec.label_column,
        channels: spec.channels,
        height: spec.height,
        width: spec.width,
        num_classes: spec.num_classes(),
    };
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for p in &source.paths {
        let (im, lab) = read_image_parquet(p, &schema)?;
        if images.is_empty() {
            images = im;
        } else {
            images.extend_from_slice(&im);
        }
        labels.extend(lab);
    }
    Ok(ImageDataset {
        name: spec.name.to_string(),
        images,
        labels,
        channels: spec.channels,
        height: spec.height,
        width: spec.width,
        num_classes: spec.num_classes(),
        class_names: spec.class_names.iter().map(|s| s.to_string()).collect(),
        source,
    })
}
