//! Named constructors, one per registered model (as candle-transformers' `resnet18(nclasses,
//! vb)`): the concrete type, so its own methods (e.g. `config()`) stay reachable. Each builds
//! exactly what [`super::create_model`] builds under the same name from the same `rng`.

use crate::models::{
    DenseNet40, DenseNetConfig, LeNet, LeNetConfig, Mlp, MlpConfig, PreActResNet18,
    PreActResNetConfig, ResNet, ResNetCifar, ResNetCifarConfig, ResNetConfig, VNet, WideResNet,
    WideResNetConfig,
};
use candle_core::{Device, Result};
use rand::rngs::StdRng;

/// The MNIST MLP 784-1200-1200-`num_classes` (Hinton et al. 2015), no dropout.
pub fn mlp(num_classes: usize, rng: &mut StdRng, device: &Device) -> Result<Mlp> {
    Mlp::new(MlpConfig::new(&[784, 1200, 1200, num_classes]), rng, device)
}

/// Ren et al.'s MNIST LeNet.
pub fn lenet(num_classes: usize, rng: &mut StdRng, device: &Device) -> Result<LeNet> {
    LeNet::new(LeNetConfig::mnist(num_classes), rng, device)
}

macro_rules! resnet_cifar {
    ($($name:ident = $depth:literal),* $(,)?) => {$(
        #[doc = concat!("He et al.'s CIFAR ResNet-", stringify!($depth), " (option-A shortcuts).")]
        pub fn $name(num_classes: usize, rng: &mut StdRng, device: &Device) -> Result<ResNetCifar> {
            ResNetCifar::new(ResNetCifarConfig::new($depth, num_classes), rng, device)
        }
    )*};
}

resnet_cifar!(
    resnet8 = 8,
    resnet20 = 20,
    resnet32 = 32,
    resnet44 = 44,
    resnet56 = 56,
    resnet110 = 110,
);

/// Pre-activation ResNet-18 for 32×32 input.
pub fn preact_resnet18(
    num_classes: usize,
    rng: &mut StdRng,
    device: &Device,
) -> Result<PreActResNet18> {
    PreActResNet18::new(PreActResNetConfig::new(num_classes), rng, device)
}

/// WRN-28-10 without dropout.
pub fn wide_resnet28_10(
    num_classes: usize,
    rng: &mut StdRng,
    device: &Device,
) -> Result<WideResNet> {
    WideResNet::new(WideResNetConfig::new(28, 10, num_classes), rng, device)
}

/// DenseNet-40, growth rate 12, without dropout.
pub fn densenet40(num_classes: usize, rng: &mut StdRng, device: &Device) -> Result<DenseNet40> {
    DenseNet40::new(DenseNetConfig::densenet40(num_classes), rng, device)
}

/// Kang et al.'s ImageNet ResNet-10.
pub fn resnet10(num_classes: usize, rng: &mut StdRng, device: &Device) -> Result<ResNet> {
    ResNet::new(ResNetConfig::resnet10(num_classes), rng, device)
}

/// ResNeXt-50 32×4d.
pub fn resnext50_32x4d(num_classes: usize, rng: &mut StdRng, device: &Device) -> Result<ResNet> {
    ResNet::new(ResNetConfig::resnext50_32x4d(num_classes), rng, device)
}

/// Meta-Weight-Net's 1-100-1 weighting network.
pub fn vnet(rng: &mut StdRng, device: &Device) -> Result<VNet> {
    VNet::new(100, rng, device)
}
