//! [`ModelSpec`]: a model as data (serde), and what it builds.

use super::ZooModel;
use crate::classifier::Classifier;
use crate::models::{
    DenseNet40, DenseNetConfig, LeNet, LeNetConfig, Mlp, MlpConfig, PreActResNet18,
    PreActResNetConfig, ResNet, ResNetCifar, ResNetCifarConfig, ResNetConfig, VNet, WideResNet,
    WideResNetConfig,
};
use candle_core::{Device, Error, Result};
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

/// Any zoo model with its hyper-parameters, e.g. `{"arch": "resnet_cifar", "depth": 32,
/// "num_classes": 10}`. Optional fields (dropout, max-norm) default to off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "arch", deny_unknown_fields)]
pub enum ModelSpec {
    /// ReLU MLP ([`Mlp`]) with PyTorch's default initialisation.
    #[serde(rename = "mlp")]
    Mlp {
        /// Layer widths from input to output (the last is the number of classes).
        widths: Vec<usize>,
        /// Dropout on the input.
        #[serde(default)]
        input_dropout: f64,
        /// Dropout after each hidden layer.
        #[serde(default)]
        hidden_dropout: f64,
        /// Max-norm bound on hidden units' incoming weights.
        #[serde(default)]
        max_norm: Option<f64>,
    },
    /// Ren et al.'s MNIST LeNet ([`LeNet`], 1×28×28 input).
    #[serde(rename = "lenet")]
    LeNet {
        /// Output logits.
        num_classes: usize,
    },
    /// He et al.'s CIFAR ResNet ([`ResNetCifar`]).
    #[serde(rename = "resnet_cifar")]
    ResNetCifar {
        /// Depth 6n+2 (8, 20, 32, 44, 56, 110).
        depth: usize,
        /// Output classes.
        num_classes: usize,
    },
    /// Pre-activation ResNet-18 for 32×32 input ([`PreActResNet18`]).
    #[serde(rename = "preact_resnet18")]
    PreActResNet18 {
        /// Output classes.
        num_classes: usize,
    },
    /// Zagoruyko & Komodakis' Wide ResNet ([`WideResNet`]).
    #[serde(rename = "wide_resnet")]
    WideResNet {
        /// Depth 6n+4.
        depth: usize,
        /// Widening factor k.
        widen_factor: usize,
        /// Output classes.
        num_classes: usize,
        /// Dropout between a block's convolutions.
        #[serde(default)]
        dropout: f64,
    },
    /// Huang et al.'s DenseNet for 32×32 input ([`DenseNet40`]).
    #[serde(rename = "densenet")]
    DenseNet {
        /// Depth 3n+4 (40).
        depth: usize,
        /// Growth rate k (12).
        growth: usize,
        /// Output classes.
        num_classes: usize,
        /// Dropout after every convolution but the stem.
        #[serde(default)]
        dropout: f64,
    },
    /// Kang et al.'s ImageNet ResNet-10 ([`ResNet`], 3×224×224 input).
    #[serde(rename = "resnet10")]
    ResNet10 {
        /// Output classes.
        num_classes: usize,
    },
    /// ResNeXt-50 32×4d ([`ResNet`], 3×224×224 input).
    #[serde(rename = "resnext50_32x4d")]
    ResNeXt50 {
        /// Output classes.
        num_classes: usize,
    },
    /// Meta-Weight-Net's weighting network ([`VNet`]): a loss `(n, 1)` → a weight in (0, 1).
    /// Not a classifier.
    #[serde(rename = "vnet")]
    VNet {
        /// Hidden width (100).
        hidden: usize,
    },
}

impl ModelSpec {
    /// Builds the model, drawing its weights from `rng`.
    pub fn build(&self, rng: &mut StdRng, device: &Device) -> Result<Box<dyn ZooModel>> {
        match *self {
            ModelSpec::VNet { hidden } => Ok(Box::new(VNet::new(hidden, rng, device)?)),
            _ => Ok(Box::new(self.build_classifier(rng, device)?)),
        }
    }

    /// Builds the model as the [`Classifier`] the training code takes; an error for the VNet.
    pub fn build_classifier(
        &self,
        rng: &mut StdRng,
        device: &Device,
    ) -> Result<Box<dyn Classifier>> {
        Ok(match self {
            ModelSpec::Mlp {
                widths,
                input_dropout,
                hidden_dropout,
                max_norm,
            } => {
                let mut cfg = MlpConfig::new(widths);
                cfg.input_dropout = *input_dropout;
                cfg.hidden_dropout = *hidden_dropout;
                cfg.max_norm = *max_norm;
                Box::new(Mlp::new(cfg, rng, device)?)
            }
            ModelSpec::LeNet { num_classes } => {
                Box::new(LeNet::new(LeNetConfig::mnist(*num_classes), rng, device)?)
            }
            ModelSpec::ResNetCifar { depth, num_classes } => Box::new(ResNetCifar::new(
                ResNetCifarConfig::new(*depth, *num_classes),
                rng,
                device,
            )?),
            ModelSpec::PreActResNet18 { num_classes } => Box::new(PreActResNet18::new(
                PreActResNetConfig::new(*num_classes),
                rng,
                device,
            )?),
            ModelSpec::WideResNet {
                depth,
                widen_factor,
                num_classes,
                dropout,
            } => {
                let mut cfg = WideResNetConfig::new(*depth, *widen_factor, *num_classes);
                cfg.dropout = *dropout;
                Box::new(WideResNet::new(cfg, rng, device)?)
            }
            ModelSpec::DenseNet {
                depth,
                growth,
                num_classes,
                dropout,
            } => {
                let mut cfg = DenseNetConfig::densenet40(*num_classes);
                cfg.depth = *depth;
                cfg.growth = *growth;
                cfg.dropout = *dropout;
                Box::new(DenseNet40::new(cfg, rng, device)?)
            }
            ModelSpec::ResNet10 { num_classes } => Box::new(ResNet::new(
                ResNetConfig::resnet10(*num_classes),
                rng,
                device,
            )?),
            ModelSpec::ResNeXt50 { num_classes } => Box::new(ResNet::new(
                ResNetConfig::resnext50_32x4d(*num_classes),
                rng,
                device,
            )?),
            ModelSpec::VNet { .. } => {
                return Err(Error::Msg(
                    "vnet maps losses to example weights and is not a classifier: build it \
                     with ModelSpec::build or VNet::new"
                        .into(),
                ))
            }
        })
    }

    /// The shape of one input (batch dimension left out): what the model was designed for.
    pub fn input_shape(&self) -> Vec<usize> {
        match self {
            ModelSpec::Mlp { widths, .. } => vec![widths.first().copied().unwrap_or(0)],
            ModelSpec::LeNet { .. } => vec![1, 28, 28],
            ModelSpec::ResNet10 { .. } | ModelSpec::ResNeXt50 { .. } => vec![3, 224, 224],
            ModelSpec::VNet { .. } => vec![1],
            ModelSpec::ResNetCifar { .. }
            | ModelSpec::PreActResNet18 { .. }
            | ModelSpec::WideResNet { .. }
            | ModelSpec::DenseNet { .. } => vec![3, 32, 32],
        }
    }

    /// Outputs per input: the number of classes (1 for the VNet's weight).
    pub fn num_outputs(&self) -> usize {
        match self {
            ModelSpec::Mlp { widths, .. } => widths.last().copied().unwrap_or(0),
            ModelSpec::VNet { .. } => 1,
            ModelSpec::LeNet { num_classes }
            | ModelSpec::ResNetCifar { num_classes, .. }
            | ModelSpec::PreActResNet18 { num_classes }
            | ModelSpec::WideResNet { num_classes, .. }
            | ModelSpec::DenseNet { num_classes, .. }
            | ModelSpec::ResNet10 { num_classes }
            | ModelSpec::ResNeXt50 { num_classes } => *num_classes,
        }
    }
}
