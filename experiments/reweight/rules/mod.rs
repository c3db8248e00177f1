//! The step rules every reweighting paper shares: plain and resampled CE, class weights, random
//! weights, focal and class-balanced losses, and Learning to Reweight. Meta-Weight-Net and MLNT
//! bring their own (`crate::mwn`, `crate::mlnt`).

mod ce;
mod l2rw;
mod weights;

pub use ce::{ClassBalancedCe, Focal, Plain, Resample};
pub use l2rw::{l2rw_example_weights, normalised_weights, AllZero, ExampleWeights, L2rw};
pub use weights::{proportional_class_weights, ClassWeights, RandomWeights};
