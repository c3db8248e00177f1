//! candle models with functional parameters, losses, optimisers and the meta-gradient step.

pub mod backprop;
pub mod candle_module;
pub mod checkpoint;
pub mod classifier;
pub mod flops;
pub mod init;
pub mod layers;
pub mod loss;
pub mod meta;
pub mod metrics;
pub mod models;
pub mod ops;
pub mod optim;
pub mod params;
pub mod process;
pub mod readout;
pub mod registry;

pub use classifier::{Classifier, Ctx};
pub use params::{ParamSet, ParamStore};
pub use process::{init, init_with, InitOptions};

/// The names most users need: `use zoo_models::prelude::*;`.
pub mod prelude {
    pub use crate::classifier::{Classifier, Ctx};
    pub use crate::init::Init;
    pub use crate::models::{
        DenseNet40, DenseNetConfig, LeNet, LeNetConfig, Mlp, MlpConfig, PreActResNet18,
        PreActResNetConfig, ResNeXt50, ResNet, ResNet10, ResNetCifar, ResNetCifarConfig,
        ResNetConfig, VNet, WideResNet, WideResNetConfig,
    };
    pub use crate::params::{ParamSet, ParamStore};
}
