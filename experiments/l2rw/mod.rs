//! Ren, Zeng, Yang & Urtasun (2018), "Learning to Reweight Examples for Robust Deep Learning".
//!
//! Each training step takes one virtual SGD step on `Σ ε_i ℓ_i` from `ε = 0`, measures the loss of
//! a small clean meta set after it, and weights example `i` by `max(−∂L_meta/∂ε_i, 0)` normalised
//! to sum 1; the real step then minimises `Σ w_i ℓ_i`. The weighting rule and the baselines
//! (plain, proportional class weights, class-balanced resampling, random weights) are step rules
//! of the reweighting core ([`crate::reweight::rules`]); this module holds the presets, the MNIST
//! 4-vs-9 imbalance experiment (Fig. 3), the CIFAR noisy-label experiment (Table 1) and the report.

pub mod config;
pub mod dry_run;
pub mod experiment;
mod report;

pub use config::{CifarConfig, L2rwConfig, Method, MnistConfig, NoiseSetting, Part};
pub use experiment::{run, RunResult};
pub use report::PAPER;
// The L2RW weighting lives in the core; named here too for the paper's readers.
pub use crate::reweight::rules::{
    l2rw_example_weights, normalised_weights, AllZero, ExampleWeights,
};
