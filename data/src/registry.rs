//! The one place that knows each dataset: hub repo, revision, files, column schema, shape, classes.
//!
//! Every loader, test and CLI reads these entries; nothing else hard-codes a repo id or a path.

use anyhow::{bail, Result};

/// Which half of a dataset to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Test,
}

impl Split {
    pub fn as_str(&self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Split {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "train" => Ok(Split::Train),
            "test" => Ok(Split::Test),
            other => bail!("unknown split '{other}': expected 'train' or 'test'"),
        }
    }
}

/// Hub location, parquet schema and shape of one image-classification dataset.
#[derive(Clone, Debug)]
pub struct DatasetSpec {
    /// Name used on the command line and in `load` (`mnist`, `cifar100_coarse`, ...).
    pub name: &'static str,
    /// Hugging Face dataset repo id.
    pub repo: &'static str,
    /// Branch, tag or commit; a branch is resolved through the cache's `refs/<revision>`.
    pub revision: &'static str,
    /// Parquet files of the training split, relative to the repo root (also used under `--data-dir`).
    pub train_files: &'static [&'static str],
    /// Parquet files of the test split.
    pub test_files: &'static [&'static str],
    /// Struct column `{bytes, path}` holding the encoded image.
    pub image_column: &'static str,
    /// Integer column holding the class index.
    pub label_column: &'static str,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub class_names: &'static [&'static str],
    /// Rows of (train, test), as published; used by tests and `datasets info`.
    pub rows: (usize, usize),
}

impl DatasetSpec {
    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }
    pub fn files(&self, split: Split) -> &'static [&'static str] {
        match split {
            Split::Train => self.train_files,
            Split::Test => self.test_files,
        }
    }
}

const DIGITS: &[&str] = &["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

const FASHION: &[&str] = &[
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

const CIFAR10: &[&str] = &[
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// CIFAR-100 fine classes in index order (alphabetical; the hub's `fine_label` ClassLabel names).
pub const CIFAR100_FINE: &[&str] = &[
    "apple",
    "aquarium_fish",
    "baby",
    "bear",
    "beaver",
    "bed",
    "bee",
    "beetle",
    "bicycle",
    "bottle",
    "bowl",
    "boy",
    "bridge",
    "bus",
    "butterfly",
    "camel",
    "can",
    "castle",
    "caterpillar",
    "cattle",
    "chair",
    "chimpanzee",
    "clock",
    "cloud",
    "cockroach",
    "couch",
    "crab",
    "crocodile",
    "cup",
    "dinosaur",
    "dolphin",
    "elephant",
    "flatfish",
    "forest",
    "fox",
    "girl",
    "hamster",
    "house",
    "kangaroo",
    "keyboard",
    "lamp",
    "lawn_mower",
    "leopard",
    "lion",
    "lizard",
    "lobster",
    "man",
    "maple_tree",
    "motorcycle",
    "mountain",
    "mouse",
    "mushroom",
    "oak_tree",
    "orange",
    "orchid",
    "otter",
    "palm_tree",
    "pear",
    "pickup_truck",
    "pine_tree",
    "plain",
    "plate",
    "poppy",
    "porcupine",
    "possum",
    "rabbit",
    "raccoon",
    "ray",
    "road",
    "rocket",
    "rose",
    "sea",
    "seal",
    "shark",
    "shrew",
    "skunk",
    "skyscraper",
    "snail",
    "snake",
    "spider",
    "squirrel",
    "streetcar",
    "sunflower",
    "sweet_pepper",
    "table",
    "tank",
    "telephone",
    "television",
    "tiger",
    "tractor",
    "train",
    "trout",
    "tulip",
    "turtle",
    "wardrobe",
    "whale",
    "willow_tree",
    "wolf",
    "woman",
    "worm",
];

/// CIFAR-100 superclasses in index order (the hub's `coarse_label` ClassLabel names).
pub const CIFAR100_COARSE: &[&str] = &[
    "aquatic_mammals",
    "fish",
    "flowers",
    "food_containers",
    "fruit_and_vegetables",
    "household_electrical_devices",
    "household_furniture",
    "insects",
    "large_carnivores",
    "large_man-made_outdoor_things",
    "large_natural_outdoor_scenes",
    "large_omnivores_and_herbivores",
    "medium_mammals",
    "non-insect_invertebrates",
    "people",
    "reptiles",
    "small_mammals",
    "trees",
    "vehicles_1",
    "vehicles_2",
];

/// All datasets `load` knows. CIFAR-100's schema (`img`, `fine_label`, `coarse_label`, files under
/// `cifar100/`) is the hub's parquet conversion of `uoft-cs/cifar100`; it is not in `../shared` and is
/// tested on parquet files the tests write themselves.
pub const DATASETS: &[DatasetSpec] = &[
    DatasetSpec {
        name: "mnist",
        repo: "ylecun/mnist",
        revision: "main",
        train_files: &["mnist/train-00000-of-00001.parquet"],
        test_files: &["mnist/test-00000-of-00001.parquet"],
        image_column: "image",
        label_column: "label",
        channels: 1,
        height: 28,
        width: 28,
        class_names: DIGITS,
        rows: (60_000, 10_000),
    },
    DatasetSpec {
        name: "fashion_mnist",
        repo: "zalando-datasets/fashion_mnist",
        revision: "main",
        train_files: &["fashion_mnist/train-00000-of-00001.parquet"],
        test_files: &["fashion_mnist/test-00000-of-00001.parquet"],
        image_column: "image",
        label_column: "label",
        channels: 1,
        height: 28,
        width: 28,
        class_names: FASHION,
        rows: (60_000, 10_000),
    },
    DatasetSpec {
        name: "cifar10",
        repo: "uoft-cs/cifar10",
        revision: "main",
        train_files: &["plain_text/train-00000-of-00001.parquet"],
        test_files: &["plain_text/test-00000-of-00001.parquet"],
        image_column: "img",
        label_column: "label",
        channels: 3,
        height: 32,
        width: 32,
        class_names: CIFAR10,
        rows: (50_000, 10_000),
    },
    DatasetSpec {
        name: "cifar100",
        repo: "uoft-cs/cifar100",
        revision: "main",
        train_files: &["cifar100/train-00000-of-00001.parquet"],
        test_files: &["cifar100/test-00000-of-00001.parquet"],
        image_column: "img",
        label_column: "fine_label",
        channels: 3,
        height: 32,
        width: 32,
        class_names: CIFAR100_FINE,
        rows: (50_000, 10_000),
    },
    DatasetSpec {
        name: "cifar100_coarse",
        repo: "uoft-cs/cifar100",
        revision: "main",
        train_files: &["cifar100/train-00000-of-00001.parquet"],
        test_files: &["cifar100/test-00000-of-00001.parquet"],
        image_column: "img",
        label_column: "coarse_label",
        channels: 3,
        height: 32,
        width: 32,
        class_names: CIFAR100_COARSE,
        rows: (50_000, 10_000),
    },
];

/// Looks a dataset up by name; an unknown name is an error listing the known ones.
pub fn spec(name: &str) -> Result<&'static DatasetSpec> {
    match DATASETS.iter().find(|d| d.name == name) {
        Some(d) => Ok(d),
        None => {
            let known: Vec<&str> = DATASETS.iter().map(|d| d.name).collect();
            bail!(
                "unknown dataset '{name}': known datasets are {}",
                known.join(", ")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_tables_have_the_right_sizes_and_hub_indices() {
        assert_eq!(CIFAR100_FINE.len(), 100);
        assert_eq!(CIFAR100_COARSE.len(), 20);
        // Index/name pairs read off the hub's dataset viewer for uoft-cs/cifar100.
        for (i, n) in [
            (0, "apple"),
            (19, "cattle"),
            (29, "dinosaur"),
            (86, "telephone"),
            (97, "wolf"),
        ] {
            assert_eq!(CIFAR100_FINE[i], n);
        }
        for (i, n) in [
            (4, "fruit_and_vegetables"),
            (11, "large_omnivores_and_herbivores"),
            (18, "vehicles_1"),
        ] {
            assert_eq!(CIFAR100_COARSE[i], n);
        }
        assert!(spec("imagenet").unwrap_err().to_string().contains("mnist"));
    }
}
