//! Hinton, Vinyals & Dean (2015), "Distilling the Knowledge in a Neural Network", §3 (MNIST).
//!
//! A dropout-regularised, jittered 784-1200-1200-10 teacher is distilled into an unregularised
//! 784-800-800-10 student on the training set (the "transfer set"), on the training set without
//! any 3, and on the 7s and 8s only; the bias shift that repairs the students trained without some
//! classes is chosen on a held-out validation split and reported on the test set.

pub mod config;
pub mod data;
pub mod experiment;
pub mod plan;
pub mod task;
pub mod transfer;

pub use config::{DistillConfig, KdConfig, LrDecay, NetConfig, SgdConfig};
pub use experiment::{NetResult, SeedResults};
pub use plan::{drive, plan, run, DistillRuns};
pub use transfer::{errors_with_shift, select_bias, BiasChoice, TransferSet};
