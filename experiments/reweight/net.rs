//! The CIFAR classifiers the reweighting experiments train, as a serialisable spec.

use anyhow::{ensure, Result};
use candle_core::Device;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use zoo_models::models::{ResNetCifar, ResNetCifarConfig, WideResNet, WideResNetConfig};
use zoo_models::Classifier;

/// Network for the CIFAR experiments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NetSpec {
    /// He et al.'s CIFAR ResNet (depth 6n+2), option-A shortcuts.
    ResNet {
        /// Depth (8, 20, 32, 56).
        depth: usize,
    },
    /// Zagoruyko & Komodakis' Wide ResNet.
    WideResNet {
        /// Depth (6n+4).
        depth: usize,
        /// Width multiplier.
        widen: usize,
    },
}

impl std::fmt::Display for NetSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NetSpec::ResNet { depth } => write!(f, "ResNet-{depth}"),
            NetSpec::WideResNet { depth, widen } => write!(f, "WRN-{depth}-{widen}"),
        }
    }
}

impl NetSpec {
    /// Rejects depths the architectures cannot build; `what` prefixes the message.
    pub fn check(&self, what: &str) -> Result<()> {
        match *self {
            NetSpec::ResNet { depth } => ensure!(
                depth >= 8 && (depth - 2).is_multiple_of(6),
                "{what}ResNet depth must be 6n+2 (8, 20, 32…), got {depth}"
            ),
            NetSpec::WideResNet { depth, widen } => ensure!(
                depth >= 10 && (depth - 4).is_multiple_of(6) && widen >= 1,
                "{what}WideResNet depth must be 6n+4 and widen >= 1, got {depth}-{widen}"
            ),
        }
        Ok(())
    }

    /// The classifier with `nc` outputs, initialised from `rng`.
    pub fn build(&self, nc: usize, rng: &mut StdRng, dev: &Device) -> Result<Box<dyn Classifier>> {
        Ok(match *self {
            NetSpec::ResNet { depth } => Box::new(ResNetCifar::new(
                ResNetCifarConfig::new(depth, nc),
                rng,
                dev,
            )?),
            NetSpec::WideResNet { depth, widen } => Box::new(WideResNet::new(
                WideResNetConfig::new(depth, widen, nc),
                rng,
                dev,
            )?),
        })
    }
}
