//! The data of a reweighting run: a training set whose labels are noisy or whose classes are
//! imbalanced, with a per-row flag for the rows of interest, and a small clean meta (validation)
//! set drawn before the corruption. Every draw comes from the generator the caller passes, in a
//! fixed order, so a seed's split is the same for every method and every binary that asks.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use rand::rngs::StdRng;
use zoo_data::corrupt::{long_tail_indices, NoiseSpec};
use zoo_data::split::balanced_meta_set;
use zoo_data::{load, DataSource, ImageDataset, Normalize, Split as DataSplit};

use super::net::NetSpec;
use super::rng::{random_subset, role_rng};

/// A training set (labels as trained on), its flags and the clean meta set.
pub struct Split {
    /// Training set.
    pub train: ImageDataset,
    /// `flagged[i]`: row `i` is a corrupted-label or minority/tail-class example.
    pub flagged: Vec<bool>,
    /// Clean meta (validation) set.
    pub meta: ImageDataset,
}

/// A split ready to train on: its setting's names, network, test set and normalisation.
pub struct Prepared {
    /// `cifar10`, `cifar100`…
    pub dataset: String,
    /// The setting's name (a noise spec, `IF=100`…).
    pub setting: String,
    /// Network.
    pub net: NetSpec,
    /// Training, flags and meta set.
    pub split: Split,
    /// Test set.
    pub test: ImageDataset,
    /// Per-channel normalisation of the dataset.
    pub norm: Normalize,
}

/// Loads each dataset's train and test splits once per invocation.
pub struct Datasets<'s> {
    src: &'s DataSource,
    cache: BTreeMap<String, (ImageDataset, ImageDataset)>,
}

impl<'s> Datasets<'s> {
    /// An empty cache reading from `src`.
    pub fn new(src: &'s DataSource) -> Self {
        Self {
            src,
            cache: BTreeMap::new(),
        }
    }

    /// `(train, test)` of `name`.
    pub fn get(&mut self, name: &str) -> Result<&(ImageDataset, ImageDataset)> {
        if !self.cache.contains_key(name) {
            let train = load(name, DataSplit::Train, self.src)
                .with_context(|| format!("loading {name} (train)"))?;
            let test = load(name, DataSplit::Test, self.src)
                .with_context(|| format!("loading {name} (test)"))?;
            self.cache.insert(name.to_string(), (train, test));
        }
        Ok(&self.cache[name])
    }
}

/// The first `limit` rows of `test` (all of them for `None`).
pub fn limit_test(test: &ImageDataset, limit: Option<usize>) -> ImageDataset {
    match limit {
        Some(k) => test.subset(&(0..k.min(test.len())).collect::<Vec<_>>()),
        None => test.clone(),
    }
}

/// A random subset of `limit` rows of `all` (all of them for `None`) and, from it, a clean
/// class-balanced meta set of `meta_per_class` rows per class; returns `(base, meta rows, rest rows)`.
fn base_and_meta(
    all: &ImageDataset,
    limit: Option<usize>,
    meta_per_class: usize,
    rng: &mut StdRng,
) -> Result<(ImageDataset, Vec<usize>, Vec<usize>)> {
    let base = match limit {
        Some(k) => all.subset(&random_subset(all.len(), k, rng)),
        None => all.clone(),
    };
    let (meta_idx, rest_idx) = balanced_meta_set(&base.labels, meta_per_class, rng)?;
    Ok((base, meta_idx, rest_idx))
}

/// Noisy labels: a random subset (if limited), the clean meta set drawn first, then `noise`
/// applied to the rest; flagged rows are those whose label changed.
pub fn noisy_split(
    all: &ImageDataset,
    limit: Option<usize>,
    meta_per_class: usize,
    noise: &NoiseSpec,
    rng: &mut StdRng,
) -> Result<Split> {
    let (base, meta_idx, rest_idx) = base_and_meta(all, limit, meta_per_class, rng)?;
    let rest = base.subset(&rest_idx);
    let noisy = noise.apply(&rest.labels, all.num_classes, rng)?;
    tracing::info!(
        "{} {noise}: {} training images, {:.1}% labels changed, {} clean meta images",
        all.name,
        rest.len(),
        100.0 * noisy.realised_rate(),
        meta_idx.len()
    );
    Ok(Split {
        train: rest.with_labels(noisy.labels.clone()),
        flagged: noisy.changed.clone(),
        meta: base.subset(&meta_idx),
    })
}

/// Long-tailed classes: a random subset (if limited), the clean balanced meta set drawn first,
/// then the long-tailed subset of the rest (`n_c = n_max · IF^(−c/(C−1))`); flagged rows are
/// those of the classes with fewer examples than the median class.
pub fn long_tail_split(
    all: &ImageDataset,
    limit: Option<usize>,
    meta_per_class: usize,
    imbalance_factor: f64,
    rng: &mut StdRng,
) -> Result<Split> {
    let (base, meta_idx, rest_idx) = base_and_meta(all, limit, meta_per_class, rng)?;
    let rest = base.subset(&rest_idx);
    let keep = long_tail_indices(&rest.labels, all.num_classes, imbalance_factor, rng)?;
    let train = rest.subset(&keep);
    let counts = train.class_counts();
    let mut sorted = counts.clone();
    sorted.sort_unstable();
    let median = sorted[sorted.len() / 2];
    let flagged = train
        .labels
        .iter()
        .map(|&y| counts[y as usize] < median)
        .collect();
    tracing::info!(
        "{}-LT IF {imbalance_factor}: {} training images (class counts {counts:?}), {} clean meta images",
        all.name,
        train.len(),
        meta_idx.len()
    );
    Ok(Split {
        train,
        flagged,
        meta: base.subset(&meta_idx),
    })
}

/// One setting of the CIFAR noise and long-tail experiments of `mwn` and `mlnt`: the same seed
/// gives both binaries the same subset, meta set, corruption, test set and network.
pub struct Setting<'a> {
    dataset: &'a str,
    net: &'a NetSpec,
    meta_per_class: usize,
    train_limit: Option<usize>,
    test_limit: Option<usize>,
}

impl<'a> Setting<'a> {
    /// `dataset` trained with `net`; `meta_per_class` clean images per class held out; a random
    /// subset of `train_limit` training images (`None`: all); the first `test_limit` test images.
    pub fn new(
        dataset: &'a str,
        net: &'a NetSpec,
        meta_per_class: usize,
        (train_limit, test_limit): (Option<usize>, Option<usize>),
    ) -> Self {
        Self {
            dataset,
            net,
            meta_per_class,
            train_limit,
            test_limit,
        }
    }

    fn prepared(&self, test: &ImageDataset, setting: String, split: Split) -> Result<Prepared> {
        Ok(Prepared {
            dataset: self.dataset.to_string(),
            setting,
            net: self.net.clone(),
            split,
            test: limit_test(test, self.test_limit),
            norm: Normalize::for_dataset(self.dataset)?,
        })
    }

    /// Noisy labels `noise` (a `zoo_data::corrupt` spec) for `seed` ([`noisy_split`]).
    pub fn noisy(&self, data: &mut Datasets, noise: &str, seed: u64) -> Result<Prepared> {
        let spec: NoiseSpec = noise.parse()?;
        let (train_all, test_all) = data.get(self.dataset)?;
        // The generator's role keeps the name it had when only `mwn` drew this split.
        let mut rng = role_rng(seed, &format!("mwn-noise-{}-{noise}", self.dataset));
        let split = noisy_split(
            train_all,
            self.train_limit,
            self.meta_per_class,
            &spec,
            &mut rng,
        )?;
        self.prepared(test_all, noise.to_string(), split)
    }

    /// Long-tailed classes at `imbalance_factor` for `seed` ([`long_tail_split`]).
    pub fn long_tailed(
        &self,
        data: &mut Datasets,
        imbalance_factor: f64,
        seed: u64,
    ) -> Result<Prepared> {
        let (train_all, test_all) = data.get(self.dataset)?;
        let role = format!("mwn-lt-{}-{imbalance_factor}", self.dataset);
        let split = long_tail_split(
            train_all,
            self.train_limit,
            self.meta_per_class,
            imbalance_factor,
            &mut role_rng(seed, &role),
        )?;
        self.prepared(test_all, format!("IF={imbalance_factor}"), split)
    }
}
