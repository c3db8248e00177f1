//! ImageNet-style ResNet / ResNeXt (torchvision layout and names), as used by Kang et al. (2020),
//! *Decoupling Representation and Classifier*, for ImageNet-LT: ResNet-10 (basic blocks
//! [1, 1, 1, 1]) and ResNeXt-50 32×4d (bottlenecks [3, 4, 6, 3], 32 groups of width 4).
//! Stem: 7×7 stride-2 convolution, BN, ReLU, 3×3 stride-2 max pooling (padding 1); stride on the
//! 3×3 convolution of a bottleneck (torchvision's "v1.5"); convolutions drawn from
//! N(0, 2/(k·k·c_out)) as Kang's code does, BatchNorm 1/0, PyTorch's default linear head `fc`.
//! Global average pooling replaces `AvgPool2d(7)` (identical on 224×224 input, and it accepts
//! other sizes).

use crate::classifier::{Classifier, Ctx};
use crate::init::Init;
use crate::layers::{self, Builder};
use crate::ops;
use crate::params::{ParamSet, ParamStore};
use candle_core::{bail, Device, Result, Tensor};
use rand::rngs::StdRng;

/// Residual block type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Block {
    /// Two 3×3 convolutions (expansion 1).
    Basic,
    /// 1×1, grouped 3×3, 1×1 convolutions (expansion 4).
    Bottleneck,
}

impl Block {
    fn expansion(self) -> usize {
        match self {
            Block::Basic => 1,
            Block::Bottleneck => 4,
        }
    }
}

/// Configuration of a [`ResNet`].
#[derive(Debug, Clone, PartialEq)]
pub struct ResNetConfig {
    /// Block type.
    pub block: Block,
    /// Blocks per stage.
    pub layers: [usize; 4],
    /// Groups of the 3×3 convolution in bottlenecks (32 for ResNeXt-50 32×4d).
    pub groups: usize,
    /// Channels per group at the first stage (4 for 32×4d; 64 for a plain ResNet).
    pub width_per_group: usize,
    /// Output classes.
    pub num_classes: usize,
    /// Input channels (3).
    pub in_channels: usize,
}

impl ResNetConfig {
    /// Kang et al.'s ResNet-10: basic blocks [1, 1, 1, 1].
    pub fn resnet10(num_classes: usize) -> Self {
        Self {
            block: Block::Basic,
            layers: [1, 1, 1, 1],
            groups: 1,
            width_per_group: 64,
            num_classes,
            in_channels: 3,
        }
    }

    /// ResNeXt-50 32×4d.
    pub fn resnext50_32x4d(num_classes: usize) -> Self {
        Self {
            block: Block::Bottleneck,
            layers: [3, 4, 6, 3],
            groups: 32,
            width_per_group: 4,
            num_classes,
            in_channels: 3,
        }
    }
}

/// torchvision-style ResNet/ResNeXt. Parameters: `conv1`, `bn1`,
/// `layer{1..4}.{j}.{conv1,bn1,conv2,bn2[,conv3,bn3][,downsample.0,downsample.1]}`, head `fc`.
pub struct ResNet {
    cfg: ResNetConfig,
    store: ParamStore,
}

/// ResNet-10 of Kang et al.: build with [`ResNetConfig::resnet10`].
pub type ResNet10 = ResNet;
/// ResNeXt-50 32×4d: build with [`ResNetConfig::resnext50_32x4d`].
pub type ResNeXt50 = ResNet;

const PLANES: [usize; 4] = [64, 128, 256, 512];

impl ResNet {
    /// Builds the network, drawing weights from `rng`.
    pub fn new(cfg: ResNetConfig, rng: &mut StdRng, device: &Device) -> Result<Self> {
        if cfg.num_classes == 0
            || cfg.in_channels == 0
            || cfg.groups == 0
            || cfg.width_per_group == 0
            || cfg.layers.contains(&0)
        {
            bail!("ResNet: every size must be non-zero, got {cfg:?}")
        }
        if cfg.block == Block::Basic && (cfg.groups != 1 || cfg.width_per_group != 64) {
            bail!("ResNet: basic blocks support only groups = 1 and width_per_group = 64")
        }
        let kn = Init::KaimingNormalFanOut;
        let exp = cfg.block.expansion();
        let mut b = Builder::new(device, rng);
        b.conv("conv1", cfg.in_channels, 64, 7, 1, kn)?;
        b.bn("bn1", 64)?;
        let mut c_in = 64;
        for (l, &planes) in PLANES.iter().enumerate() {
            for j in 0..cfg.layers[l] {
                let pre = format!("layer{}.{j}", l + 1);
                let stride = if l > 0 && j == 0 { 2 } else { 1 };
                match cfg.block {
                    Block::Basic => {
                        b.conv(&format!("{pre}.conv1"), c_in, planes, 3, 1, kn)?;
                        b.bn(&format!("{pre}.bn1"), planes)?;
                        b.conv(&format!("{pre}.conv2"), planes, planes, 3, 1, kn)?;
                        b.bn(&format!("{pre}.bn2"), planes)?;
                    }
                    Block::Bottleneck => {
                        let width = planes * cfg.width_per_group / 64 * cfg.groups;
                        b.conv(&format!("{pre}.conv1"), c_in, width, 1, 1, kn)?;
                        b.bn(&format!("{pre}.bn1"), width)?;
                        b.conv(&format!("{pre}.conv2"), width, width, 3, cfg.groups, kn)?;
                        b.bn(&format!("{pre}.bn2"), width)?;
                        b.conv(&format!("{pre}.conv3"), width, planes * exp, 1, 1, kn)?;
                        b.bn(&format!("{pre}.bn3"), planes * exp)?;
                    }
                }
                if stride != 1 || c_in != planes * exp {
                    b.conv(&format!("{pre}.downsample.0"), c_in, planes * exp, 1, 1, kn)?;
                    b.bn(&format!("{pre}.downsample.1"), planes * exp)?;
                }
                c_in = planes * exp;
            }
        }
        b.linear_default("fc", 512 * exp, cfg.num_classes)?;
        Ok(Self {
            cfg,
            store: b.finish(),
        })
    }
}

config_accessor!(ResNet, ResNetConfig);

impl Classifier for ResNet {
    fn features(&self, p: &ParamSet, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        let s = &self.store;
        let exp = self.cfg.block.expansion();
        let mut h = layers::conv2d(p, "conv1", x, 2, 3, 1)?;
        h = layers::batch_norm_relu(s, p, "bn1", &h, ctx)?;
        h = ops::max_pool2d_ext(&h, 3, 2, 1)?;
        let mut c_in = 64;
        for (l, &planes) in PLANES.iter().enumerate() {
            for j in 0..self.cfg.layers[l] {
                let pre = format!("layer{}.{j}", l + 1);
                let stride = if l > 0 && j == 0 { 2 } else { 1 };
                let bn = |name: &str, t: &Tensor, ctx: &mut Ctx| {
                    layers::batch_norm(s, p, &format!("{pre}.{name}"), t, ctx)
                };
                let bn_relu = |name: &str, t: &Tensor, ctx: &mut Ctx| {
                    layers::batch_norm_relu(s, p, &format!("{pre}.{name}"), t, ctx)
                };
                let conv = |name: &str, t: &Tensor, stride, pad, groups| {
                    layers::conv2d(p, &format!("{pre}.{name}"), t, stride, pad, groups)
                };
                let o = match self.cfg.block {
                    Block::Basic => {
                        let o = bn_relu("bn1", &conv("conv1", &h, stride, 1, 1)?, ctx)?;
                        bn("bn2", &conv("conv2", &o, 1, 1, 1)?, ctx)?
                    }
                    Block::Bottleneck => {
                        let o = bn_relu("bn1", &conv("conv1", &h, 1, 0, 1)?, ctx)?;
                        let o =
                            bn_relu("bn2", &conv("conv2", &o, stride, 1, self.cfg.groups)?, ctx)?;
                        bn("bn3", &conv("conv3", &o, 1, 0, 1)?, ctx)?
                    }
                };
                let short = if stride != 1 || c_in != planes * exp {
                    bn(
                        "downsample.1",
                        &conv("downsample.0", &h, stride, 0, 1)?,
                        ctx,
                    )?
                } else {
                    h
                };
                h = ops::add_relu(&o, &short)?;
                c_in = planes * exp;
            }
        }
        ops::global_avg_pool(&h)
    }

    fn feature_dim(&self) -> usize {
        512 * self.cfg.block.expansion()
    }

    store_head_and_classes!("fc");
}
