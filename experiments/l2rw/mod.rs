//! Ren, Zeng, Yang & Urtasun (2018), "Learning to Reweight Examples for Robust Deep Learning".
//!
//! Each training step takes one virtual SGD step on `Σ ε_i ℓ_i` from `ε = 0`, measures the loss of
//! a small clean meta set after it, and weights example `i` by `max(−∂L_meta/∂ε_i, 0)` normalised
//! to sum 1; the real step then minimises `Σ w_i ℓ_i`. The meta-gradient is the audited
//! [`zoo_models::meta::l2rw_grad`]; this module adds the weighting rule, the baselines (plain,
//! proportional class weights, class-balanced resampling, random weights), the MNIST 4-vs-9
//! imbalance experiment (Fig. 3) and the CIFAR noisy-label experiment (Table 1).

pub mod config;
pub mod experiment;
pub mod task;

pub use config::{
    AllZero, CifarConfig, L2rwConfig, Method, MnistConfig, NetSpec, NoiseSetting, OptConfig, Part,
};
pub use experiment::{run, RunResult, PAPER};
pub use task::{
    l2rw_example_weights, normalised_weights, proportional_class_weights, ExampleWeights,
    ReweightTask, RuleStep, StepRule, TaskData,
};
