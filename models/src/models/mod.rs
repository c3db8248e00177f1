//! The model architectures. Every classifier is built as `X::new(config, &mut rng, &device)`
//! from a seeded [`StdRng`](rand::rngs::StdRng) and implements [`Classifier`](crate::Classifier).

use candle_core::{bail, Result};

/// The [`Classifier`](crate::Classifier) methods the zoo's models write alike, for a model with
/// `store: ParamStore` and `cfg.num_classes` fields whose head is the linear layer `$head`
/// (`$head.weight`, `$head.bias`): `store`, `head` and `num_classes`. Written inside the
/// model's `impl Classifier` block.
macro_rules! store_head_and_classes {
    ($head:literal) => {
        fn store(&self) -> &ParamStore {
            &self.store
        }

        fn head(&self) -> (&str, Option<&str>) {
            (concat!($head, ".weight"), Some(concat!($head, ".bias")))
        }

        fn num_classes(&self) -> usize {
            self.cfg.num_classes
        }
    };
}

/// `config()`, the configuration `$config` the model `$model` was built from (its `cfg` field).
macro_rules! config_accessor {
    ($model:ty, $config:ty) => {
        impl $model {
            /// The configuration.
            pub fn config(&self) -> &$config {
                &self.cfg
            }
        }
    };
}

mod densenet;
mod lenet;
mod mlp;
mod preact_resnet;
mod resnet_cifar;
mod resnet_imagenet;
mod vnet;
mod wide_resnet;

pub use densenet::{DenseNet40, DenseNetConfig};
pub use lenet::{LeNet, LeNetConfig};
pub use mlp::{Mlp, MlpConfig};
pub use preact_resnet::{PreActResNet18, PreActResNetConfig};
pub use resnet_cifar::{ResNetCifar, ResNetCifarConfig};
pub use resnet_imagenet::{Block, ResNeXt50, ResNet, ResNet10, ResNetConfig};
pub use vnet::VNet;
pub use wide_resnet::{WideResNet, WideResNetConfig};

/// Blocks per stage `n` of a network whose depth is `per_block · n + offset` with `n >= 1`; an
/// error naming the model and the depths it builds (`examples`) otherwise.
fn blocks_per_stage(
    model: &str,
    depth: usize,
    per_block: usize,
    offset: usize,
    examples: &str,
) -> Result<usize> {
    if depth < per_block + offset || !(depth - offset).is_multiple_of(per_block) {
        bail!("{model} depth must be {per_block}n+{offset} with n >= 1 ({examples}), got {depth}")
    }
    Ok((depth - offset) / per_block)
}

/// Rejects a dropout probability outside `[0, 1)`.
fn check_dropout(model: &str, p: f64) -> Result<()> {
    if !(0.0..1.0).contains(&p) {
        bail!("{model} dropout must be in [0, 1), got {p}")
    }
    Ok(())
}

/// Rejects a zero among the named `sizes` and `in_channels`:
/// "{model}: a, b and in_channels must be non-zero".
fn check_nonzero(model: &str, sizes: &[(&str, usize)], in_channels: usize) -> Result<()> {
    if in_channels == 0 || sizes.iter().any(|&(_, v)| v == 0) {
        let names: Vec<&str> = sizes.iter().map(|&(name, _)| name).collect();
        bail!(
            "{model}: {} and in_channels must be non-zero",
            names.join(", ")
        )
    }
    Ok(())
}

/// The head of the pre-activation networks (DenseNet, WideResNet): a final batch norm `bn1` on
/// `c` channels and the linear layer `fc` to `num_classes` (PyTorch's default weights, zero bias).
fn bn_fc_head(b: &mut crate::layers::Builder, c: usize, num_classes: usize) -> Result<()> {
    b.bn("bn1", c)?;
    let zero = crate::init::Init::Constant(0.0);
    b.linear(
        "fc",
        c,
        num_classes,
        crate::init::Init::PytorchDefault,
        Some(zero),
    )
}
