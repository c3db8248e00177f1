//! The model architectures. Every classifier is built as `X::new(config, &mut rng, &device)`
//! from a seeded [`StdRng`](rand::rngs::StdRng) and implements [`Classifier`](crate::Classifier).

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
