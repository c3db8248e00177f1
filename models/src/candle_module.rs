//! candle's [`Module`] for every zoo model, so they plug into candle code (`seq()`, `Func`,
//! anything generic over `Module`): `forward(x)` is the evaluation forward with the model's own
//! stored parameters (running batch-norm statistics, no dropout), exactly
//! [`eval_forward`]. Training goes through [`Classifier`] with explicit parameters and a [`Ctx`].
//!
//! With both traits in scope, `model.forward(..)` is ambiguous: write
//! `Module::forward(&model, &x)` or `Classifier::forward(&model, &p, &x, &mut ctx)`.
//!
//! ```
//! use candle_core::{DType, Device, Module, Tensor};
//! use rand::{rngs::StdRng, SeedableRng};
//!
//! let net = zoo_models::registry::resnet8(10, &mut StdRng::seed_from_u64(0), &Device::Cpu)?;
//! let x = Tensor::zeros((2, 3, 32, 32), DType::F32, &Device::Cpu)?;
//! assert_eq!(net.forward(&x)?.dims(), &[2, 10]);
//! # Ok::<(), candle_core::Error>(())
//! ```

use crate::classifier::{Classifier, Ctx};
use crate::models::{
    DenseNet40, LeNet, Mlp, PreActResNet18, ResNet, ResNetCifar, VNet, WideResNet,
};
use candle_core::{Module, Result, Tensor};

/// Evaluation-mode logits of `model` with its stored parameters.
pub fn eval_forward<C: Classifier + ?Sized>(model: &C, x: &Tensor) -> Result<Tensor> {
    model.forward(&model.store().params(), x, &mut Ctx::eval())
}

macro_rules! classifier_module {
    ($($t:ty),* $(,)?) => {$(
        impl Module for $t {
            fn forward(&self, x: &Tensor) -> Result<Tensor> {
                eval_forward(self, x)
            }
        }
    )*};
}

classifier_module!(
    Mlp,
    LeNet,
    ResNetCifar,
    PreActResNet18,
    WideResNet,
    DenseNet40,
    ResNet,
    dyn Classifier,
);

impl Module for Box<dyn Classifier> {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        eval_forward(self.as_ref(), x)
    }
}

/// The example weights in (0, 1) for losses of shape `(n, 1)`, with the stored parameters.
impl Module for VNet {
    fn forward(&self, losses: &Tensor) -> Result<Tensor> {
        VNet::forward(self, &self.store().params(), losses)
    }
}
