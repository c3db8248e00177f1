//! Meta-Weight-Net's weighting network (Shu et al. 2019): a 1-100-1 MLP with ReLU and a sigmoid
//! output mapping each example's loss to its weight. PyTorch's default `nn.Linear`
//! initialisation, as the authors' `VNet(1, 100, 1)`.

use crate::layers::{self, Builder};
use crate::params::{ParamSet, ParamStore};
use candle_core::{bail, Device, Result, Tensor};
use rand::rngs::StdRng;

/// The weighting network `w = σ(W₂ · relu(W₁ ℓ + b₁) + b₂)`. Parameters: `linear1`, `linear2`.
pub struct VNet {
    hidden: usize,
    store: ParamStore,
}

impl VNet {
    /// A 1-`hidden`-1 network (`hidden` = 100 in the paper).
    pub fn new(hidden: usize, rng: &mut StdRng, device: &Device) -> Result<Self> {
        if hidden == 0 {
            bail!("VNet hidden width must be non-zero")
        }
        let mut b = Builder::new(device, rng);
        b.linear_default("linear1", 1, hidden)?;
        b.linear_default("linear2", hidden, 1)?;
        Ok(Self {
            hidden,
            store: b.finish(),
        })
    }

    /// Hidden width.
    pub fn hidden(&self) -> usize {
        self.hidden
    }

    /// Variables (`linear1.*`, `linear2.*`).
    pub fn store(&self) -> &ParamStore {
        &self.store
    }

    /// Weights in (0, 1) for per-example `losses` of shape `(n, 1)`, with parameters `p` (usually
    /// `store().params()`, or a virtual set in the meta step).
    pub fn forward(&self, p: &ParamSet, losses: &Tensor) -> Result<Tensor> {
        if losses.rank() != 2 || losses.dim(1)? != 1 {
            bail!(
                "VNet expects losses of shape (n, 1), got {:?}",
                losses.dims()
            )
        }
        let h = layers::linear_relu(p, "linear1", losses)?;
        candle_nn::ops::sigmoid(&layers::linear(p, "linear2", &h)?)
    }
}
