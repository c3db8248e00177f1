//! DenseNet-40 (Huang et al. 2017, L = 40, growth k = 12, the basic non-BC variant with
//! 1.0M parameters of their Table 2), the CIFAR-10 network of Pereyra et al. (2017),
//! *Regularizing Neural Networks by Penalizing Confident Output Distributions*, which cites
//! "DenseNet with 40 layers and growth rate 12". Layout and names follow the PyTorch port
//! `andreasveit/densenet-pytorch`: a 3×3 stem with 16 channels, three dense blocks of 12
//! BN-ReLU-conv3×3 layers (each adding k channels, with dropout), BN-ReLU-conv1×1-avgpool
//! transitions keeping the channel count, a final BN-ReLU and global average pooling; convolutions
//! drawn from N(0, 2/(k·k·c_out)), BatchNorm 1/0, linear bias zero. Huang et al. use dropout 0.2
//! when training without data augmentation and none with it.

use crate::classifier::{Classifier, Ctx};
use crate::init::Init;
use crate::layers::{self, Builder};
use crate::ops;
use crate::params::{ParamSet, ParamStore};
use candle_core::{Device, Result, Tensor};
use rand::rngs::StdRng;

/// Configuration of a [`DenseNet40`] (any depth 3n+4 is accepted).
#[derive(Debug, Clone, PartialEq)]
pub struct DenseNetConfig {
    /// Depth 3n+4 (40).
    pub depth: usize,
    /// Growth rate k (12).
    pub growth: usize,
    /// Output classes.
    pub num_classes: usize,
    /// Dropout after every convolution except the stem (0.2 without augmentation).
    pub dropout: f64,
    /// Input channels (3).
    pub in_channels: usize,
}

impl DenseNetConfig {
    /// DenseNet-40, k = 12, without dropout.
    pub fn densenet40(num_classes: usize) -> Self {
        Self {
            depth: 40,
            growth: 12,
            num_classes,
            dropout: 0.0,
            in_channels: 3,
        }
    }
}

/// DenseNet for 32×32 input. Parameters: `conv1`, `block{1,2,3}.layer.{i}.{bn1,conv1}`,
/// `trans{1,2}.{bn1,conv1}`, `bn1`, head `fc`.
pub struct DenseNet40 {
    cfg: DenseNetConfig,
    n: usize,
    out_channels: usize,
    store: ParamStore,
}

impl DenseNet40 {
    /// Builds the network, drawing weights from `rng`.
    pub fn new(cfg: DenseNetConfig, rng: &mut StdRng, device: &Device) -> Result<Self> {
        let n = super::blocks_per_stage("DenseNet", cfg.depth, 3, 4, "40 for DenseNet-40")?;
        let sizes = [("growth", cfg.growth), ("num_classes", cfg.num_classes)];
        super::check_nonzero("DenseNet", &sizes, cfg.in_channels)?;
        super::check_dropout("DenseNet", cfg.dropout)?;
        let kn = Init::KaimingNormalFanOut;
        let mut b = Builder::new(device, rng);
        let mut c = 16;
        b.conv("conv1", cfg.in_channels, c, 3, 1, kn)?;
        for blk in 1..=3 {
            for i in 0..n {
                let pre = format!("block{blk}.layer.{i}");
                b.bn(&format!("{pre}.bn1"), c)?;
                b.conv(&format!("{pre}.conv1"), c, cfg.growth, 3, 1, kn)?;
                c += cfg.growth;
            }
            if blk < 3 {
                b.bn(&format!("trans{blk}.bn1"), c)?;
                b.conv(&format!("trans{blk}.conv1"), c, c, 1, 1, kn)?;
            }
        }
        super::bn_fc_head(&mut b, c, cfg.num_classes)?;
        Ok(Self {
            cfg,
            n,
            out_channels: c,
            store: b.finish(),
        })
    }
}

config_accessor!(DenseNet40, DenseNetConfig);

impl Classifier for DenseNet40 {
    fn features(&self, p: &ParamSet, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        let s = &self.store;
        let rate = self.cfg.dropout;
        let mut h = layers::conv2d(p, "conv1", x, 1, 1, 1)?;
        for blk in 1..=3 {
            for i in 0..self.n {
                let pre = format!("block{blk}.layer.{i}");
                let mut o = layers::batch_norm_relu(s, p, &format!("{pre}.bn1"), &h, ctx)?;
                o = layers::conv2d(p, &format!("{pre}.conv1"), &o, 1, 1, 1)?;
                o = layers::dropout(&o, rate, ctx)?;
                h = Tensor::cat(&[&h, &o], 1)?;
            }
            if blk < 3 {
                let pre = format!("trans{blk}");
                let mut o = layers::batch_norm_relu(s, p, &format!("{pre}.bn1"), &h, ctx)?;
                o = layers::conv2d(p, &format!("{pre}.conv1"), &o, 1, 0, 1)?;
                o = layers::dropout(&o, rate, ctx)?;
                h = layers::avg_pool2(&o)?;
            }
        }
        h = layers::batch_norm_relu(s, p, "bn1", &h, ctx)?;
        ops::global_avg_pool(&h)
    }

    fn feature_dim(&self) -> usize {
        self.out_channels
    }

    store_head_and_classes!("fc");
}
