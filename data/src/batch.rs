//! Batches as candle tensors, and the per-epoch `Loader`.

use crate::augment::{apply_params, AugParams, Augment};
use crate::dataset::ImageDataset;
use crate::sampler::Sampler;
use anyhow::{ensure, Result};
use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rayon::prelude::*;

/// Per-channel normalisation x ↦ (x/255 − mean_c)/std_c.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Normalize {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Normalize {
    pub fn new(mean: Vec<f32>, std: Vec<f32>) -> Result<Self> {
        ensure!(
            mean.len() == std.len(),
            "normalize: {} means but {} stds",
            mean.len(),
            std.len()
        );
        ensure!(
            std.iter().all(|&s| s > 0.0 && s.is_finite()),
            "normalize: std must be positive"
        );
        Ok(Normalize { mean, std })
    }
    /// Only scales to [0, 1].
    pub fn unit(channels: usize) -> Self {
        Normalize {
            mean: vec![0.0; channels],
            std: vec![1.0; channels],
        }
    }
    /// The usual training-set statistics of each dataset (CIFAR-10's as in the MWN/L2RW code:
    /// (125.3, 123.0, 113.9)/255 and (63.0, 62.1, 66.7)/255).
    pub fn for_dataset(name: &str) -> Result<Self> {
        Ok(match name {
            "mnist" => Normalize {
                mean: vec![0.1307],
                std: vec![0.3081],
            },
            "fashion_mnist" => Normalize {
                mean: vec![0.2860],
                std: vec![0.3530],
            },
            "cifar10" => Normalize {
                mean: vec![0.4914, 0.4824, 0.4467],
                std: vec![0.2471, 0.2435, 0.2616],
            },
            "cifar100" | "cifar100_coarse" => Normalize {
                mean: vec![0.5071, 0.4865, 0.4409],
                std: vec![0.2673, 0.2564, 0.2762],
            },
            other => {
                crate::registry::spec(other)?;
                anyhow::bail!("no normalisation statistics for dataset '{other}'")
            }
        })
    }
}

/// A batch: images f32 (b, c, h, w) normalised, labels u32 (b,), and the dataset rows they came from.
#[derive(Debug)]
pub struct Batch {
    pub images: Tensor,
    pub labels: Tensor,
    pub indices: Vec<usize>,
}

/// Builds a batch from rows `indices` of `ds`, with per-image augmentation parameters `params`
/// (`None`: no augmentation). Images are filled in parallel.
pub fn make_batch(
    ds: &ImageDataset,
    indices: &[usize],
    norm: &Normalize,
    params: Option<&[AugParams]>,
    device: &Device,
) -> Result<Batch> {
    let (c, h, w) = (ds.channels, ds.height, ds.width);
    ensure!(
        norm.mean.len() == c,
        "normalize has {} channels, dataset {c}",
        norm.mean.len()
    );
    if let Some(p) = params {
        ensure!(
            p.len() == indices.len(),
            "{} augmentation draws for {} rows",
            p.len(),
            indices.len()
        );
    }
    if let Some(&bad) = indices.iter().find(|&&i| i >= ds.len()) {
        anyhow::bail!("batch row {bad} outside the dataset's {} rows", ds.len());
    }
    let sz = c * h * w;
    let scale: Vec<f32> = norm.std.iter().map(|s| 1.0 / (255.0 * s)).collect();
    let shift: Vec<f32> = norm
        .mean
        .iter()
        .zip(&norm.std)
        .map(|(m, s)| -m / s)
        .collect();
    let mut out = vec![0f32; indices.len() * sz];
    out.par_chunks_mut(sz).enumerate().for_each_init(
        || vec![0u8; sz],
        |tmp, (k, o)| {
            let src = ds.image(indices[k]);
            let px: &[u8] = match params {
                Some(p) => {
                    apply_params(p[k], src, tmp, c, h, w);
                    tmp
                }
                None => src,
            };
            for ch in 0..c {
                let (a, b) = (scale[ch], shift[ch]);
                for (d, &s) in o[ch * h * w..(ch + 1) * h * w]
                    .iter_mut()
                    .zip(&px[ch * h * w..(ch + 1) * h * w])
                {
                    *d = s as f32 * a + b;
                }
            }
        },
    );
    let b = indices.len();
    let labels: Vec<u32> = indices.iter().map(|&i| ds.labels[i]).collect();
    Ok(Batch {
        images: Tensor::from_vec(out, (b, c, h, w), device)?,
        labels: Tensor::from_vec(labels, b, device)?,
        indices: indices.to_vec(),
    })
}

/// SplitMix64 finaliser: decorrelates (seed, epoch) into an rng seed.
fn mix(seed: u64, epoch: u64) -> u64 {
    let mut z = seed ^ epoch.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Yields batches epoch by epoch. Epoch e uses its own rng seeded from (seed, e), so resuming at
/// epoch e reproduces exactly the batches an uninterrupted run would have seen.
pub struct Loader<'a> {
    ds: &'a ImageDataset,
    batch_size: usize,
    norm: Normalize,
    augment: Augment,
    sampler: Box<dyn Sampler + 'a>,
    seed: u64,
    device: Device,
    drop_last: bool,
}

impl<'a> Loader<'a> {
    pub fn new(
        ds: &'a ImageDataset,
        batch_size: usize,
        norm: Normalize,
        augment: Augment,
        sampler: Box<dyn Sampler + 'a>,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        ensure!(batch_size > 0, "batch size must be positive");
        ensure!(
            norm.mean.len() == ds.channels,
            "normalize has {} channels, dataset {}",
            norm.mean.len(),
            ds.channels
        );
        Ok(Loader {
            ds,
            batch_size,
            norm,
            augment,
            sampler,
            seed,
            device: device.clone(),
            drop_last: false,
        })
    }
    /// Drop the last, smaller batch of each epoch.
    pub fn drop_last(mut self, yes: bool) -> Self {
        self.drop_last = yes;
        self
    }
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }
    /// The batches of epoch `epoch` (0-based).
    pub fn epoch(&mut self, epoch: usize) -> EpochIter<'_, 'a> {
        let mut rng = StdRng::seed_from_u64(mix(self.seed, epoch as u64));
        let order = self.sampler.epoch_indices(epoch, &mut rng);
        EpochIter {
            loader: self,
            order,
            pos: 0,
            rng,
        }
    }
}

/// Iterator over one epoch's batches.
pub struct EpochIter<'l, 'a> {
    loader: &'l Loader<'a>,
    order: Vec<usize>,
    pos: usize,
    rng: StdRng,
}

impl EpochIter<'_, '_> {
    /// Rows this epoch visits, in order.
    pub fn order(&self) -> &[usize] {
        &self.order
    }
    /// Number of batches in the epoch.
    pub fn num_batches(&self) -> usize {
        let (n, b) = (self.order.len(), self.loader.batch_size);
        if self.loader.drop_last {
            n / b
        } else {
            n.div_ceil(b)
        }
    }
}

impl Iterator for EpochIter<'_, '_> {
    type Item = Result<Batch>;
    fn next(&mut self) -> Option<Self::Item> {
        let l = self.loader;
        let end = (self.pos + l.batch_size).min(self.order.len());
        if self.pos >= end || (l.drop_last && end - self.pos < l.batch_size) {
            return None;
        }
        let idx = &self.order[self.pos..end];
        self.pos = end;
        let params: Option<Vec<AugParams>> = match l.augment {
            Augment::None => None,
            a => Some(idx.iter().map(|_| a.sample(&mut self.rng)).collect()),
        };
        Some(make_batch(l.ds, idx, &l.norm, params.as_deref(), &l.device))
    }
}
