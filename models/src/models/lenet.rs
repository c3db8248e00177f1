//! The LeNet-style network of Ren et al. (2018), *Learning to Reweight Examples*, MNIST
//! experiments, following the authors' code (`uber-research/learning-to-reweight-examples`,
//! `mnist/mnist_model.py`): three 5×5 "SAME" convolutions with 16, 32, 64 channels, each followed
//! by 3×3 stride-2 "SAME" max pooling and then ReLU (28 → 14 → 7 → 4), a 100-unit ReLU layer and
//! the output layer; weights truncated-normal (σ = 0.1), biases zero.
//!
//! Differences from that code, all immaterial for training from scratch: the output layer has
//! `num_classes` logits (their binary 4-vs-9 task uses one sigmoid logit; use `num_classes = 1`
//! for that or 2 with softmax), and the flatten before `fc1` is in PyTorch's (C, H, W) order
//! rather than TensorFlow's (H, W, C).

use crate::classifier::{Classifier, Ctx};
use crate::init::Init;
use crate::layers::{self, Builder};
use crate::ops;
use crate::params::{ParamSet, ParamStore};
use candle_core::{bail, Device, Result, Tensor};
use rand::rngs::StdRng;

/// Configuration of a [`LeNet`].
#[derive(Debug, Clone, PartialEq)]
pub struct LeNetConfig {
    /// Input channels (1 for MNIST).
    pub in_channels: usize,
    /// Input height = width (28 for MNIST).
    pub image_size: usize,
    /// Output logits.
    pub num_classes: usize,
    /// Channels of the three convolutions.
    pub channels: [usize; 3],
    /// Width of the hidden fully connected layer.
    pub hidden: usize,
    /// Weight initialisation (truncated N(0, 0.1²) in Ren et al.'s code).
    pub init: Init,
}

impl LeNetConfig {
    /// Ren et al.'s MNIST network with `num_classes` outputs.
    pub fn mnist(num_classes: usize) -> Self {
        Self {
            in_channels: 1,
            image_size: 28,
            num_classes,
            channels: [16, 32, 64],
            hidden: 100,
            init: Init::TruncatedNormal { std: 0.1 },
        }
    }
}

/// Ren et al.'s LeNet. Parameters: `conv{1,2,3}.{weight,bias}`, `fc1`, and the head `fc2`.
pub struct LeNet {
    cfg: LeNetConfig,
    store: ParamStore,
}

/// Output size of TensorFlow's "SAME" 3×3 stride-2 pooling.
fn pooled(h: usize) -> usize {
    h.div_ceil(2)
}

/// TensorFlow's `max_pool(ksize 3, stride 2, "SAME")`: pads `total = max((out−1)·2 + 3 − h, 0)`
/// with the smaller half first. The padding replicates the edge, which is exact for max pooling
/// (the replicated value is inside the same window) and keeps the gradient on real inputs.
fn max_pool_3x3_s2_same(x: &Tensor) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let pad = |n: usize| {
        let total = ((pooled(n) - 1) * 2 + 3).saturating_sub(n);
        (total / 2, total - total / 2)
    };
    let (ht, hb) = pad(h);
    let (wl, wr) = pad(w);
    let x = x.pad_with_same(2, ht, hb)?.pad_with_same(3, wl, wr)?;
    ops::max_pool2d_ext(&x, 3, 2, 0)
}

impl LeNet {
    /// Builds the network, drawing weights from `rng`.
    pub fn new(cfg: LeNetConfig, rng: &mut StdRng, device: &Device) -> Result<Self> {
        if cfg.in_channels == 0 || cfg.image_size == 0 || cfg.num_classes == 0 || cfg.hidden == 0 {
            bail!("LeNet: every size must be non-zero, got {cfg:?}")
        }
        let mut b = Builder::new(device, rng);
        let zero = Init::Constant(0.0);
        let mut c_in = cfg.in_channels;
        for (i, &c) in cfg.channels.iter().enumerate() {
            let name = format!("conv{}", i + 1);
            b.conv(&name, c_in, c, 5, 1, cfg.init)?;
            b.bias(&name, c, zero)?;
            c_in = c;
        }
        let s = pooled(pooled(pooled(cfg.image_size)));
        b.linear("fc1", c_in * s * s, cfg.hidden, cfg.init, Some(zero))?;
        b.linear("fc2", cfg.hidden, cfg.num_classes, cfg.init, Some(zero))?;
        Ok(Self {
            cfg,
            store: b.finish(),
        })
    }
}

config_accessor!(LeNet, LeNetConfig);

impl Classifier for LeNet {
    fn features(&self, p: &ParamSet, x: &Tensor, _ctx: &mut Ctx) -> Result<Tensor> {
        let (_, c, h, w) = x.dims4()?;
        if c != self.cfg.in_channels || h != self.cfg.image_size || w != self.cfg.image_size {
            bail!(
                "LeNet expects (n, {}, {s}, {s}) input, got {:?}",
                self.cfg.in_channels,
                x.dims(),
                s = self.cfg.image_size
            )
        }
        let mut h = x.clone();
        for i in 1..=3 {
            h = layers::conv2d(p, &format!("conv{i}"), &h, 1, 2, 1)?;
            h = ops::relu(&max_pool_3x3_s2_same(&h)?)?;
        }
        layers::linear_relu(p, "fc1", &h.flatten_from(1)?)
    }

    fn feature_dim(&self) -> usize {
        self.cfg.hidden
    }

    store_head_and_classes!("fc2");
}
