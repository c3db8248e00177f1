//! Every zoo model by name, as timm's `create_model`: a table of [`MODELS`], a serde
//! [`ModelSpec`] for configs, named constructors (`resnet32(num_classes, rng, device)`), and a
//! [`summarize`] of parameters and FLOPs (the `models` binary prints it).
//!
//! ```
//! use candle_core::Device;
//! use rand::{rngs::StdRng, SeedableRng};
//! use zoo_models::registry;
//!
//! let mut rng = StdRng::seed_from_u64(0);
//! let net = registry::create_model("resnet8", 10, &mut rng, &Device::Cpu)?;
//! assert_eq!(net.num_classes(), 10);
//! assert!(registry::create_model("resnet9", 10, &mut rng, &Device::Cpu).is_err());
//! # Ok::<(), candle_core::Error>(())
//! ```

mod named;
mod spec;
mod summary;

pub use named::*;
pub use spec::ModelSpec;
pub use summary::{summarize, LayerSummary, ModelSummary, TensorSummary};

use crate::classifier::Classifier;
use crate::models::VNet;
use crate::params::ParamStore;
use candle_core::{Device, Error, Module, Result};
use rand::rngs::StdRng;

/// What [`ModelSpec::build`] returns: a candle [`Module`] (evaluation forward with the stored
/// parameters), its variables, and the [`Classifier`] the training code takes (every model but
/// the VNet).
pub trait ZooModel: Module + Send + Sync {
    /// Variables and buffers.
    fn store(&self) -> &ParamStore;
    /// The model as a classifier; `None` for the VNet, which maps losses to weights.
    fn as_classifier(&self) -> Option<&dyn Classifier>;
}

impl ZooModel for Box<dyn Classifier> {
    fn store(&self) -> &ParamStore {
        Classifier::store(self.as_ref())
    }
    fn as_classifier(&self) -> Option<&dyn Classifier> {
        Some(self.as_ref())
    }
}

impl ZooModel for VNet {
    fn store(&self) -> &ParamStore {
        VNet::store(self)
    }
    fn as_classifier(&self) -> Option<&dyn Classifier> {
        None
    }
}

/// One registered model.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    /// Registry name, e.g. `resnet32`.
    pub name: &'static str,
    /// One line: what it is and where it comes from.
    pub description: &'static str,
    /// Classes of the data set it was made for (the `models` binary's default).
    pub default_classes: usize,
    spec: fn(usize) -> ModelSpec,
}

impl Entry {
    /// The model's spec with `num_classes` outputs (ignored by the VNet).
    pub fn spec(&self, num_classes: usize) -> ModelSpec {
        (self.spec)(num_classes)
    }
}

const fn entry(
    name: &'static str,
    description: &'static str,
    default_classes: usize,
    spec: fn(usize) -> ModelSpec,
) -> Entry {
    Entry {
        name,
        description,
        default_classes,
        spec,
    }
}

fn cifar_resnet(depth: usize, num_classes: usize) -> ModelSpec {
    ModelSpec::ResNetCifar { depth, num_classes }
}

/// The entry `resnet{depth}`: He et al.'s CIFAR ResNet of `depth` layers.
macro_rules! cifar_resnet_entry {
    ($depth:literal) => {
        entry(
            concat!("resnet", $depth),
            concat!("CIFAR ResNet-", $depth, " (He et al. 2016)"),
            10,
            |n| cifar_resnet($depth, n),
        )
    };
}

/// Every model of the zoo, in the order `models list` prints them.
pub const MODELS: &[Entry] = &[
    entry(
        "mlp",
        "MLP 784-1200-1200-C, ReLU (Hinton et al. 2015, MNIST)",
        10,
        |n| ModelSpec::Mlp {
            widths: vec![784, 1200, 1200, n],
            input_dropout: 0.0,
            hidden_dropout: 0.0,
            max_norm: None,
        },
    ),
    entry(
        "lenet",
        "LeNet, 3 conv 5x5 + 2 fc (Ren et al. 2018, MNIST)",
        10,
        |n| ModelSpec::LeNet { num_classes: n },
    ),
    cifar_resnet_entry!(8),
    cifar_resnet_entry!(20),
    cifar_resnet_entry!(32),
    cifar_resnet_entry!(44),
    cifar_resnet_entry!(56),
    cifar_resnet_entry!(110),
    entry(
        "preact_resnet18",
        "pre-activation ResNet-18, 32x32 input (He et al. 2016)",
        10,
        |n| ModelSpec::PreActResNet18 { num_classes: n },
    ),
    entry(
        "wide_resnet28_10",
        "WRN-28-10 (Zagoruyko & Komodakis 2016)",
        10,
        |n| ModelSpec::WideResNet {
            depth: 28,
            widen_factor: 10,
            num_classes: n,
            dropout: 0.0,
        },
    ),
    entry(
        "densenet40",
        "DenseNet-40, k = 12 (Huang et al. 2017)",
        10,
        |n| ModelSpec::DenseNet {
            depth: 40,
            growth: 12,
            num_classes: n,
            dropout: 0.0,
        },
    ),
    entry(
        "resnet10",
        "ImageNet ResNet-10 (Kang et al. 2020)",
        1000,
        |n| ModelSpec::ResNet10 { num_classes: n },
    ),
    entry(
        "resnext50_32x4d",
        "ResNeXt-50 32x4d (Xie et al. 2017)",
        1000,
        |n| ModelSpec::ResNeXt50 { num_classes: n },
    ),
    entry(
        "vnet",
        "Meta-Weight-Net's loss -> weight net 1-100-1 (Shu et al. 2019)",
        1,
        |_| ModelSpec::VNet { hidden: 100 },
    ),
];

/// The registered names, in [`MODELS`] order.
pub fn names() -> Vec<&'static str> {
    MODELS.iter().map(|e| e.name).collect()
}

/// The entry called `name`; an unknown name is an error that lists the known ones.
pub fn find(name: &str) -> Result<&'static Entry> {
    // A plain message: `bail!` would attach a backtrace, noise for a mistyped name.
    MODELS.iter().find(|e| e.name == name).ok_or_else(|| {
        Error::Msg(format!(
            "unknown model `{name}`; the zoo has: {}",
            names().join(", ")
        ))
    })
}

/// The classifier called `name` with `num_classes` outputs, weights drawn from `rng`.
pub fn create_model(
    name: &str,
    num_classes: usize,
    rng: &mut StdRng,
    device: &Device,
) -> Result<Box<dyn Classifier>> {
    find(name)?.spec(num_classes).build_classifier(rng, device)
}
