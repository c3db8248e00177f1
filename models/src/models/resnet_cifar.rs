//! CIFAR ResNets of He et al. (2016, §4.2): depth 6n+2, 16/32/64 channels, option-A (parameter
//! free) shortcuts that subsample and zero-pad channels. Layout, names and initialisation follow
//! the code Meta-Weight-Net and LDAM build on (Y. Idelbayev, `pytorch_resnet_cifar10`):
//! `kaiming_normal_` (fan-in, ReLU gain) for convolution and linear weights, PyTorch's default
//! linear bias, and the head called `linear`.

use crate::classifier::{Classifier, Ctx};
use crate::init::Init;
use crate::layers::{self, Builder};
use crate::ops;
use crate::params::{ParamSet, ParamStore};
use candle_core::{Device, Result, Tensor};
use rand::rngs::StdRng;

/// Configuration of a [`ResNetCifar`].
#[derive(Debug, Clone, PartialEq)]
pub struct ResNetCifarConfig {
    /// Depth 6n+2: 8, 20, 32, 44, 56, 110, …
    pub depth: usize,
    /// Output classes.
    pub num_classes: usize,
    /// Input channels (3).
    pub in_channels: usize,
}

impl ResNetCifarConfig {
    /// ResNet-`depth` for `num_classes` classes on RGB input.
    pub fn new(depth: usize, num_classes: usize) -> Self {
        Self {
            depth,
            num_classes,
            in_channels: 3,
        }
    }
}

/// CIFAR ResNet with option-A shortcuts. Parameters: `conv1`, `bn1`,
/// `layer{1,2,3}.{j}.{conv1,bn1,conv2,bn2}`, head `linear`. Features: the 64-d global average.
pub struct ResNetCifar {
    cfg: ResNetCifarConfig,
    n: usize,
    store: ParamStore,
}

const WIDTHS: [usize; 3] = [16, 32, 64];

impl ResNetCifar {
    /// Builds the network, drawing weights from `rng`.
    pub fn new(cfg: ResNetCifarConfig, rng: &mut StdRng, device: &Device) -> Result<Self> {
        let n = super::blocks_per_stage("ResNetCifar", cfg.depth, 6, 2, "8, 20, 32, 56, …")?;
        super::check_nonzero(
            "ResNetCifar",
            &[("num_classes", cfg.num_classes)],
            cfg.in_channels,
        )?;
        let kn = Init::KaimingNormalFanIn;
        let mut b = Builder::new(device, rng);
        b.conv("conv1", cfg.in_channels, 16, 3, 1, kn)?;
        b.bn("bn1", 16)?;
        let mut c_in = 16;
        for (l, &planes) in WIDTHS.iter().enumerate() {
            for j in 0..n {
                let pre = format!("layer{}.{j}", l + 1);
                b.conv(&format!("{pre}.conv1"), c_in, planes, 3, 1, kn)?;
                b.bn(&format!("{pre}.bn1"), planes)?;
                b.conv(&format!("{pre}.conv2"), planes, planes, 3, 1, kn)?;
                b.bn(&format!("{pre}.bn2"), planes)?;
                c_in = planes;
            }
        }
        b.linear(
            "linear",
            64,
            cfg.num_classes,
            kn,
            Some(Init::bias_default(64)),
        )?;
        Ok(Self {
            cfg,
            n,
            store: b.finish(),
        })
    }
}

config_accessor!(ResNetCifar, ResNetCifarConfig);

impl Classifier for ResNetCifar {
    fn features(&self, p: &ParamSet, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        let s = &self.store;
        let mut h = layers::conv2d(p, "conv1", x, 1, 1, 1)?;
        h = layers::batch_norm_relu(s, p, "bn1", &h, ctx)?;
        let mut c_in = 16;
        for (l, &planes) in WIDTHS.iter().enumerate() {
            for j in 0..self.n {
                let pre = format!("layer{}.{j}", l + 1);
                let stride = if l > 0 && j == 0 { 2 } else { 1 };
                let mut o = layers::conv2d(p, &format!("{pre}.conv1"), &h, stride, 1, 1)?;
                o = layers::batch_norm_relu(s, p, &format!("{pre}.bn1"), &o, ctx)?;
                o = layers::conv2d(p, &format!("{pre}.conv2"), &o, 1, 1, 1)?;
                o = layers::batch_norm(s, p, &format!("{pre}.bn2"), &o, ctx)?;
                let short = if stride != 1 || c_in != planes {
                    // Option A: x[:, :, ::2, ::2] zero-padded by planes/4 channels each side.
                    let sub = if stride == 2 {
                        layers::subsample2(&h)?
                    } else {
                        h.clone()
                    };
                    let extra = planes - c_in;
                    sub.pad_with_zeros(1, extra / 2, extra - extra / 2)?
                } else {
                    h.clone()
                };
                h = ops::add_relu(&o, &short)?;
                c_in = planes;
            }
        }
        ops::global_avg_pool(&h)
    }

    fn feature_dim(&self) -> usize {
        64
    }

    store_head_and_classes!("linear");
}
