//! Wide ResNet WRN-depth-k (Zagoruyko & Komodakis 2016) for 32×32 input, as in the PyTorch code
//! Meta-Weight-Net uses (`xternalz/WideResNet-pytorch`): pre-activation basic blocks with
//! 16k/32k/64k channels, dropout between the two convolutions, 1×1 convolution shortcuts where the
//! width changes (applied to the block's activated input), convolutions drawn from
//! N(0, 2/(k·k·c_out)), BatchNorm 1/0, linear bias zero.

use crate::classifier::{Classifier, Ctx};
use crate::init::Init;
use crate::layers::{self, Builder};
use crate::ops;
use crate::params::{ParamSet, ParamStore};
use candle_core::{Device, Result, Tensor};
use rand::rngs::StdRng;

/// Configuration of a [`WideResNet`].
#[derive(Debug, Clone, PartialEq)]
pub struct WideResNetConfig {
    /// Depth 6n+4 (28 for WRN-28-10).
    pub depth: usize,
    /// Widening factor k (10 for WRN-28-10).
    pub widen_factor: usize,
    /// Output classes.
    pub num_classes: usize,
    /// Dropout rate between a block's convolutions (0.3 in the WRN paper's dropout runs).
    pub dropout: f64,
    /// Input channels (3).
    pub in_channels: usize,
}

impl WideResNetConfig {
    /// WRN-`depth`-`widen_factor` without dropout.
    pub fn new(depth: usize, widen_factor: usize, num_classes: usize) -> Self {
        Self {
            depth,
            widen_factor,
            num_classes,
            dropout: 0.0,
            in_channels: 3,
        }
    }
}

/// Wide ResNet. Parameters: `conv1`, `block{1,2,3}.layer.{i}.{bn1,conv1,bn2,conv2[,convShortcut]}`,
/// `bn1`, head `fc`. Features: the 64k-d global average after the final BN-ReLU.
pub struct WideResNet {
    cfg: WideResNetConfig,
    n: usize,
    widths: [usize; 4],
    store: ParamStore,
}

impl WideResNet {
    /// Builds the network, drawing weights from `rng`.
    pub fn new(cfg: WideResNetConfig, rng: &mut StdRng, device: &Device) -> Result<Self> {
        let n = super::blocks_per_stage("WideResNet", cfg.depth, 6, 4, "10, 16, 28, 40, …")?;
        let sizes = [
            ("widen_factor", cfg.widen_factor),
            ("num_classes", cfg.num_classes),
        ];
        super::check_nonzero("WideResNet", &sizes, cfg.in_channels)?;
        super::check_dropout("WideResNet", cfg.dropout)?;
        let k = cfg.widen_factor;
        let widths = [16, 16 * k, 32 * k, 64 * k];
        let kn = Init::KaimingNormalFanOut;
        let mut b = Builder::new(device, rng);
        b.conv("conv1", cfg.in_channels, widths[0], 3, 1, kn)?;
        for blk in 0..3 {
            for i in 0..n {
                let c_in = if i == 0 { widths[blk] } else { widths[blk + 1] };
                let c_out = widths[blk + 1];
                let pre = format!("block{}.layer.{i}", blk + 1);
                b.bn(&format!("{pre}.bn1"), c_in)?;
                b.conv(&format!("{pre}.conv1"), c_in, c_out, 3, 1, kn)?;
                b.bn(&format!("{pre}.bn2"), c_out)?;
                b.conv(&format!("{pre}.conv2"), c_out, c_out, 3, 1, kn)?;
                if c_in != c_out {
                    b.conv(&format!("{pre}.convShortcut"), c_in, c_out, 1, 1, kn)?;
                }
            }
        }
        super::bn_fc_head(&mut b, widths[3], cfg.num_classes)?;
        Ok(Self {
            cfg,
            n,
            widths,
            store: b.finish(),
        })
    }
}

config_accessor!(WideResNet, WideResNetConfig);

impl Classifier for WideResNet {
    fn features(&self, p: &ParamSet, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        let s = &self.store;
        let mut h = layers::conv2d(p, "conv1", x, 1, 1, 1)?;
        for blk in 0..3 {
            for i in 0..self.n {
                let c_in = if i == 0 {
                    self.widths[blk]
                } else {
                    self.widths[blk + 1]
                };
                let c_out = self.widths[blk + 1];
                let stride = if blk > 0 && i == 0 { 2 } else { 1 };
                let pre = format!("block{}.layer.{i}", blk + 1);
                let a = layers::batch_norm_relu(s, p, &format!("{pre}.bn1"), &h, ctx)?;
                let mut o = layers::conv2d(p, &format!("{pre}.conv1"), &a, stride, 1, 1)?;
                o = layers::batch_norm_relu(s, p, &format!("{pre}.bn2"), &o, ctx)?;
                o = layers::dropout(&o, self.cfg.dropout, ctx)?;
                o = layers::conv2d(p, &format!("{pre}.conv2"), &o, 1, 1, 1)?;
                let short = if c_in == c_out {
                    h
                } else {
                    layers::conv2d(p, &format!("{pre}.convShortcut"), &a, stride, 0, 1)?
                };
                h = (short + o)?;
            }
        }
        h = layers::batch_norm_relu(s, p, "bn1", &h, ctx)?;
        ops::global_avg_pool(&h)
    }

    fn feature_dim(&self) -> usize {
        self.widths[3]
    }

    store_head_and_classes!("fc");
}
