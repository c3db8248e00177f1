//! Seeded weight initialisation. Every value is drawn on the CPU from a caller-supplied
//! [`StdRng`] (candle's own generator cannot be seeded), then moved to the device.
//!
//! Fans follow PyTorch (`torch.nn.init._calculate_fan_in_and_fan_out`): for a weight of shape
//! `(out, in, k…)`, `fan_in = in·∏k` and `fan_out = out·∏k`.

use candle_core::{bail, DType, Device, Result, Shape, Tensor};
use rand::rngs::StdRng;
use rand::Rng;

/// An initialisation scheme.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// PyTorch's default for `nn.Linear`/`nn.Conv2d` weights: `kaiming_uniform_(a=√5)`, i.e.
    /// U(−1/√fan_in, 1/√fan_in).
    PytorchDefault,
    /// `kaiming_normal_(mode="fan_out", nonlinearity="relu")`: N(0, 2/fan_out), as torchvision's
    /// ResNets and the CIFAR ResNet/WRN codebases use for convolutions.
    KaimingNormalFanOut,
    /// `kaiming_normal_(mode="fan_in", nonlinearity="relu")`: N(0, 2/fan_in), as the option-A
    /// CIFAR ResNet (`kaiming_normal_` default) uses.
    KaimingNormalFanIn,
    /// N(0, std²).
    Normal {
        /// Standard deviation.
        std: f64,
    },
    /// N(0, std²) truncated at ±2·std by redrawing, as TensorFlow's
    /// `truncated_normal_initializer` (the L2RW LeNet uses std 0.1).
    TruncatedNormal {
        /// Standard deviation of the untruncated normal.
        std: f64,
    },
    /// U(lo, hi).
    Uniform {
        /// Lower bound.
        lo: f64,
        /// Upper bound.
        hi: f64,
    },
    /// Every element equal to the value.
    Constant(f64),
}

impl Init {
    /// PyTorch's default bias for a layer with the given fan-in: U(−1/√fan_in, 1/√fan_in).
    pub fn bias_default(fan_in: usize) -> Init {
        let b = 1.0 / (fan_in.max(1) as f64).sqrt();
        Init::Uniform { lo: -b, hi: b }
    }

    /// A tensor of shape `shape` drawn with this scheme.
    pub fn tensor<S: Into<Shape>>(
        &self,
        shape: S,
        dtype: DType,
        device: &Device,
        rng: &mut StdRng,
    ) -> Result<Tensor> {
        let shape: Shape = shape.into();
        let n = shape.elem_count();
        let (fan_in, fan_out) = fans(shape.dims());
        let need_fans = matches!(
            self,
            Init::PytorchDefault | Init::KaimingNormalFanIn | Init::KaimingNormalFanOut
        );
        if need_fans && shape.rank() < 2 {
            bail!("{self:?} needs a weight of rank >= 2, got shape {shape:?}")
        }
        let values: Vec<f64> = match *self {
            Init::PytorchDefault => {
                let b = 1.0 / (fan_in as f64).sqrt();
                uniform(n, -b, b, rng)
            }
            Init::KaimingNormalFanOut => normal(n, (2.0 / fan_out as f64).sqrt(), rng)?,
            Init::KaimingNormalFanIn => normal(n, (2.0 / fan_in as f64).sqrt(), rng)?,
            Init::Normal { std } => normal(n, std, rng)?,
            Init::TruncatedNormal { std } => {
                let d = normal_dist(std)?;
                (0..n)
                    .map(|_| loop {
                        let v: f64 = rng.sample(d);
                        if v.abs() <= 2.0 * std {
                            break v;
                        }
                    })
                    .collect()
            }
            Init::Uniform { lo, hi } => {
                if lo >= hi {
                    bail!("Init::Uniform needs lo < hi, got [{lo}, {hi}]")
                }
                uniform(n, lo, hi, rng)
            }
            Init::Constant(c) => vec![c; n],
        };
        Tensor::from_vec(values, shape, &Device::Cpu)?
            .to_dtype(dtype)?
            .to_device(device)
    }
}

/// `(fan_in, fan_out)` of a weight shape, as PyTorch computes them.
pub fn fans(dims: &[usize]) -> (usize, usize) {
    match dims.len() {
        0 => (1, 1),
        1 => (dims[0], dims[0]),
        _ => {
            let rf: usize = dims[2..].iter().product();
            (dims[1] * rf, dims[0] * rf)
        }
    }
}

fn uniform(n: usize, lo: f64, hi: f64, rng: &mut StdRng) -> Vec<f64> {
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

fn normal_dist(std: f64) -> Result<rand_distr::Normal<f64>> {
    if !(std > 0.0 && std.is_finite()) {
        bail!("normal init needs a positive finite std, got {std}")
    }
    rand_distr::Normal::new(0.0, std)
        .map_err(|e| candle_core::Error::Msg(format!("normal init with std {std}: {e}")))
}

fn normal(n: usize, std: f64, rng: &mut StdRng) -> Result<Vec<f64>> {
    let d = normal_dist(std)?;
    Ok((0..n).map(|_| rng.sample(d)).collect())
}
