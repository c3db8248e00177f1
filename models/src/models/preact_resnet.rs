//! Pre-activation ResNet-18 (He et al. 2016b) for 32×32 input, as in `kuangliu/pytorch-cifar`
//! (the variant the noisy-label literature, MLNT included, trains on CIFAR): 3×3 stem with 64
//! channels, four stages of two pre-activation basic blocks (64/128/256/512), 1×1 convolution
//! shortcuts applied to the activated input, no final BN-ReLU, global average pooling (the
//! original's `avg_pool2d(out, 4)` on a 4×4 map), PyTorch default initialisation throughout.

use crate::classifier::{Classifier, Ctx};
use crate::init::Init;
use crate::layers::{self, Builder};
use crate::ops;
use crate::params::{ParamSet, ParamStore};
use candle_core::{Device, Result, Tensor};
use rand::rngs::StdRng;

/// Configuration of a [`PreActResNet18`].
#[derive(Debug, Clone, PartialEq)]
pub struct PreActResNetConfig {
    /// Output classes.
    pub num_classes: usize,
    /// Input channels (3).
    pub in_channels: usize,
}

impl PreActResNetConfig {
    /// RGB input, `num_classes` outputs.
    pub fn new(num_classes: usize) -> Self {
        Self {
            num_classes,
            in_channels: 3,
        }
    }
}

/// Pre-activation ResNet-18. Parameters: `conv1`,
/// `layer{1..4}.{0,1}.{bn1,conv1,bn2,conv2[,shortcut.0]}`, head `linear`. Features: 512-d.
pub struct PreActResNet18 {
    cfg: PreActResNetConfig,
    store: ParamStore,
}

const PLANES: [usize; 4] = [64, 128, 256, 512];

impl PreActResNet18 {
    /// Builds the network, drawing weights from `rng`.
    pub fn new(cfg: PreActResNetConfig, rng: &mut StdRng, device: &Device) -> Result<Self> {
        let sizes = [("num_classes", cfg.num_classes)];
        super::check_nonzero("PreActResNet18", &sizes, cfg.in_channels)?;
        let d = Init::PytorchDefault;
        let mut b = Builder::new(device, rng);
        b.conv("conv1", cfg.in_channels, 64, 3, 1, d)?;
        let mut c_in = 64;
        for (l, &planes) in PLANES.iter().enumerate() {
            for j in 0..2 {
                let pre = format!("layer{}.{j}", l + 1);
                b.bn(&format!("{pre}.bn1"), c_in)?;
                b.conv(&format!("{pre}.conv1"), c_in, planes, 3, 1, d)?;
                b.bn(&format!("{pre}.bn2"), planes)?;
                b.conv(&format!("{pre}.conv2"), planes, planes, 3, 1, d)?;
                if c_in != planes {
                    b.conv(&format!("{pre}.shortcut.0"), c_in, planes, 1, 1, d)?;
                }
                c_in = planes;
            }
        }
        b.linear_default("linear", 512, cfg.num_classes)?;
        Ok(Self {
            cfg,
            store: b.finish(),
        })
    }
}

impl Classifier for PreActResNet18 {
    fn features(&self, p: &ParamSet, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        let s = &self.store;
        let mut h = layers::conv2d(p, "conv1", x, 1, 1, 1)?;
        let mut c_in = 64;
        for (l, &planes) in PLANES.iter().enumerate() {
            for j in 0..2 {
                let pre = format!("layer{}.{j}", l + 1);
                let stride = if l > 0 && j == 0 { 2 } else { 1 };
                let a = layers::batch_norm_relu(s, p, &format!("{pre}.bn1"), &h, ctx)?;
                let short = if c_in != planes || stride != 1 {
                    layers::conv2d(p, &format!("{pre}.shortcut.0"), &a, stride, 0, 1)?
                } else {
                    h
                };
                let mut o = layers::conv2d(p, &format!("{pre}.conv1"), &a, stride, 1, 1)?;
                o = layers::batch_norm_relu(s, p, &format!("{pre}.bn2"), &o, ctx)?;
                o = layers::conv2d(p, &format!("{pre}.conv2"), &o, 1, 1, 1)?;
                h = (o + short)?;
                c_in = planes;
            }
        }
        ops::global_avg_pool(&h)
    }

    fn feature_dim(&self) -> usize {
        512
    }

    store_head_and_classes!("linear");
}
