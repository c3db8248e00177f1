//! Fully connected ReLU network with dropout and a max-norm constraint: the MNIST nets of
//! Hinton et al. (2012, 2015) and Srivastava et al. (2014), e.g. 784-1200-1200-10.

use crate::classifier::{Classifier, Ctx};
use crate::init::Init;
use crate::layers::{self, Builder};
use crate::params::{ParamSet, ParamStore};
use candle_core::{bail, Device, Result, Tensor};
use rand::rngs::StdRng;

/// Configuration of an [`Mlp`].
#[derive(Debug, Clone, PartialEq)]
pub struct MlpConfig {
    /// Layer widths from input to output, e.g. `[784, 1200, 1200, 10]` (at least two).
    pub widths: Vec<usize>,
    /// Dropout rate on the input (Hinton et al. use 0.2).
    pub input_dropout: f64,
    /// Dropout rate after each hidden ReLU (Hinton et al. use 0.5).
    pub hidden_dropout: f64,
    /// Upper bound on the L2 norm of each hidden unit's incoming weight vector, enforced by
    /// [`Mlp::apply_max_norm`] after every optimiser step (Srivastava et al. 2014, §5.1).
    pub max_norm: Option<f64>,
    /// Weight initialisation (default PyTorch's; Srivastava et al. use N(0, 0.01²)).
    pub init: Init,
    /// Bias initialisation; `None` uses PyTorch's default U(±1/√fan_in).
    pub bias_init: Option<Init>,
}

impl MlpConfig {
    /// `widths` with no dropout, no max-norm and PyTorch's default initialisation.
    pub fn new(widths: &[usize]) -> Self {
        Self {
            widths: widths.to_vec(),
            input_dropout: 0.0,
            hidden_dropout: 0.0,
            max_norm: None,
            init: Init::PytorchDefault,
            bias_init: None,
        }
    }
}

/// ReLU MLP with input/hidden dropout and max-norm. Parameters are `layers.{i}.weight` /
/// `layers.{i}.bias` (`i` = 0 for input→first hidden); the last layer is the head. Features are
/// the last hidden layer's activations (after its dropout in training mode).
pub struct Mlp {
    cfg: MlpConfig,
    store: ParamStore,
    head_names: (String, String),
}

impl Mlp {
    /// Builds the network, drawing weights from `rng`.
    pub fn new(cfg: MlpConfig, rng: &mut StdRng, device: &Device) -> Result<Self> {
        if cfg.widths.len() < 2 || cfg.widths.contains(&0) {
            bail!(
                "Mlp needs at least two non-zero widths, got {:?}",
                cfg.widths
            )
        }
        for r in [cfg.input_dropout, cfg.hidden_dropout] {
            if !(0.0..1.0).contains(&r) {
                bail!("Mlp dropout rates must be in [0, 1), got {r}")
            }
        }
        if let Some(c) = cfg.max_norm {
            if !(c > 0.0 && c.is_finite()) {
                bail!("Mlp max_norm must be positive and finite, got {c}")
            }
        }
        let mut b = Builder::new(device, rng);
        for (i, w) in cfg.widths.windows(2).enumerate() {
            let bias = cfg.bias_init.unwrap_or(Init::bias_default(w[0]));
            b.linear(&format!("layers.{i}"), w[0], w[1], cfg.init, Some(bias))?;
        }
        let last = cfg.widths.len() - 2;
        Ok(Self {
            cfg,
            store: b.finish(),
            head_names: (
                format!("layers.{last}.weight"),
                format!("layers.{last}.bias"),
            ),
        })
    }

    fn n_layers(&self) -> usize {
        self.cfg.widths.len() - 1
    }

    /// Rescales every hidden unit's incoming weight vector (a row of `layers.{i}.weight`, for
    /// every layer except the output) whose L2 norm exceeds `max_norm` back onto the ball, as
    /// Srivastava et al. (2014) do after each update. The output layer is not constrained: its
    /// units are not hidden units. No-op when `max_norm` is `None`.
    pub fn apply_max_norm(&self) -> Result<()> {
        let Some(c) = self.cfg.max_norm else {
            return Ok(());
        };
        for i in 0..self.n_layers() - 1 {
            let v = self.store.var(&format!("layers.{i}.weight"))?;
            let w = v.as_detached_tensor();
            let norms = w.sqr()?.sum_keepdim(1)?.sqrt()?;
            // scale = min(1, c / norm); the 1e-12 guards zero rows.
            let scale = (norms + 1e-12)?.recip()?.affine(c, 0.0)?.clamp(0.0, 1.0)?;
            v.set(&w.broadcast_mul(&scale)?)?;
        }
        Ok(())
    }
}

config_accessor!(Mlp, MlpConfig);

impl Classifier for Mlp {
    fn store(&self) -> &ParamStore {
        &self.store
    }

    fn features(&self, p: &ParamSet, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        let mut h = x.flatten_from(1)?;
        if h.dim(1)? != self.cfg.widths[0] {
            bail!(
                "Mlp expects {} input features, got input of shape {:?}",
                self.cfg.widths[0],
                x.dims()
            )
        }
        h = layers::dropout(&h, self.cfg.input_dropout, ctx)?;
        for i in 0..self.n_layers() - 1 {
            h = layers::linear_relu(p, &format!("layers.{i}"), &h)?;
            h = layers::dropout(&h, self.cfg.hidden_dropout, ctx)?;
        }
        Ok(h)
    }

    fn head(&self) -> (&str, Option<&str>) {
        (self.head_names.0.as_str(), Some(self.head_names.1.as_str()))
    }

    fn num_classes(&self) -> usize {
        *self.cfg.widths.last().unwrap_or(&0)
    }

    fn feature_dim(&self) -> usize {
        self.cfg.widths[self.cfg.widths.len() - 2]
    }

    fn apply_constraints(&self) -> Result<()> {
        self.apply_max_norm()
    }
}
