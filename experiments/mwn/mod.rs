//! Shu, Xie, Yi, Zhao, Zhou, Xu & Meng (2019), "Meta-Weight-Net: Learning an Explicit Mapping
//! For Sample Weighting".
//!
//! A small network `V_φ` (1-100-1, sigmoid) maps each example's loss to its weight. Every
//! iteration: a virtual SGD step of the classifier on `Σ V_φ(ℓ_i) ℓ_i`, the loss of a clean meta
//! batch after it, one optimiser step on `φ` from the exact second-order meta-gradient (the
//! core's [`zoo_models::meta::classifier_meta_gradient`]), then the real step weighted by the
//! updated `V_φ`. Training runs on the reweighting core's [`crate::reweight::ReweightTask`] loop
//! (MWN as its own [`crate::reweight::StepRule`]; CE, focal, class-balanced CE and L2RW as the
//! core's), on noisy labels (Tables 2–3) and long-tailed CIFAR (Table 1).

pub mod config;
pub mod dry_run;
pub mod experiment;
mod report;
pub mod task;

pub use config::{
    ImbalanceSetting, Method, MwnConfig, MwnSettings, NoiseSetting, Normalise, Part, PartConfig,
    VnetOptim,
};
pub use experiment::{run, RunResult};
pub use report::PAPER;
pub use task::{
    mwn_meta_gradient, normalise_vnet_weights, vnet_weights, weighting_function, MwnRule, Weighting,
};
