//! MNIST splits for the experiment and evaluation helpers.

use anyhow::{ensure, Result};
use candle_core::{Device, Tensor};
use rand::rngs::StdRng;

use zoo_data::{make_batch, Augment, DataSource, ImageDataset, Normalize, Split};
use zoo_models::{Classifier, Ctx};

use super::config::DistillConfig;

/// Training (transfer) set, validation split (last `val_size` training images) and test set.
pub struct Splits {
    /// The first `60,000 − val_size` training images.
    pub train: ImageDataset,
    /// The last `val_size` training images: used only to choose bias shifts.
    pub val: ImageDataset,
    /// The 10,000 test images.
    pub test: ImageDataset,
}

/// Loads MNIST and holds out the validation split (after `train_limit`, if any).
pub fn load_splits(cfg: &DistillConfig, src: &DataSource) -> Result<Splits> {
    let mut train = zoo_data::load("mnist", Split::Train, src)?;
    let mut test = zoo_data::load("mnist", Split::Test, src)?;
    if let Some(n) = cfg.train_limit {
        let n = n.min(train.len());
        train = train.subset(&(0..n).collect::<Vec<_>>());
    }
    if let Some(n) = cfg.test_limit {
        let n = n.min(test.len());
        test = test.subset(&(0..n).collect::<Vec<_>>());
    }
    ensure!(
        cfg.val_size < train.len(),
        "val_size {} leaves no training images (of {})",
        cfg.val_size,
        train.len()
    );
    let cut = train.len() - cfg.val_size;
    let val = train.subset(&(cut..train.len()).collect::<Vec<_>>());
    let train = train.subset(&(0..cut).collect::<Vec<_>>());
    Ok(Splits { train, val, test })
}

/// Pixel normalisation of the config, `(x/255 − mean)/std`.
pub fn normalize(cfg: &DistillConfig) -> Result<Normalize> {
    Normalize::new(vec![cfg.normalize_mean], vec![cfg.normalize_std])
}

/// A batch of rows `idx` of `ds`, each translated by up to `jitter_px` pixels (parameters drawn
/// from `rng`; zero fill, MNIST's background), normalised: `(images (b,1,28,28), labels (b,))`.
pub fn batch(
    ds: &ImageDataset,
    idx: &[usize],
    norm: &Normalize,
    jitter_px: usize,
    rng: &mut StdRng,
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let params: Option<Vec<_>> = (jitter_px > 0).then(|| {
        let a = Augment::Jitter { max_px: jitter_px };
        idx.iter().map(|_| a.sample(rng)).collect()
    });
    let b = make_batch(ds, idx, norm, params.as_deref(), device)?;
    Ok((b.images, b.labels))
}

/// A whole split as one normalised tensor, for evaluation.
#[derive(Clone)]
pub struct EvalSet {
    /// `(n, 1, 28, 28)` normalised images.
    pub x: Tensor,
    /// Labels.
    pub labels: Vec<u32>,
}

impl EvalSet {
    /// Normalises all of `ds` (no jitter).
    pub fn new(ds: &ImageDataset, norm: &Normalize, device: &Device) -> Result<Self> {
        let idx: Vec<usize> = (0..ds.len()).collect();
        let b = make_batch(ds, &idx, norm, None, device)?;
        Ok(Self {
            x: b.images,
            labels: ds.labels.clone(),
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Evaluation-mode logits `(n, classes)` in chunks of 1,000.
    pub fn logits_tensor(&self, model: &dyn Classifier) -> Result<Tensor> {
        let p = model.store().params().detach();
        let n = self.len();
        let mut parts = Vec::new();
        let mut start = 0;
        while start < n {
            let len = 1000.min(n - start);
            let x = self.x.narrow(0, start, len)?;
            parts.push(model.forward(&p, &x, &mut Ctx::eval())?.detach());
            start += len;
        }
        Ok(Tensor::cat(&parts, 0)?)
    }

    /// Evaluation-mode logits, row-major `n × classes`.
    pub fn logits(&self, model: &dyn Classifier) -> Result<Vec<f32>> {
        Ok(self
            .logits_tensor(model)?
            .to_dtype(candle_core::DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?)
    }

    /// Number of misclassified images.
    pub fn errors(&self, model: &dyn Classifier) -> Result<usize> {
        let l = self.logits(model)?;
        Ok(super::transfer::errors_with_shift(&l, &self.labels, model.num_classes(), &[], 0.0).0)
    }
}
