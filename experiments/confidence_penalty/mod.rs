//! Pereyra et al. (2017), "Regularizing Neural Networks by Penalizing Confident Output
//! Distributions" (ICLR workshop; arXiv:1701.06548), with label smoothing (Szegedy et al. 2016)
//! as its mirror image: label smoothing adds KL(u ‖ p) to the cross-entropy, the confidence
//! penalty the reverse KL(p ‖ u), i.e. −H(p) up to a constant.
//!
//! * [`method`]: method names (`none`, `dropout`, `ls_uniform`, `ls_unigram`, `cp`,
//!   `cp_annealed`, `cp_thresholded`, `dropout+…`), their hyper-parameters and objectives.
//! * [`config`]: presets (paper: MNIST MLP and CIFAR-10 DenseNet-40; cpu; smoke).
//! * [`tuning`]: grids on the validation split and the choice of values.
//! * [`trainer`]: one training run as a [`crate::runner::EpochTask`].
//! * [`report`]: per-method test statistics, Welch's and paired t-tests.
//! * [`tradeoff`]: the penalty's error–calibration trade-off over β on validation.
//! * [`dry_run`]: `--dry-run`, the plan and its projected time on this device.
//! * [`run`]: the flow (tune, retrain per seed, report, plots).

pub mod config;
pub mod dry_run;
pub mod method;
pub mod report;
pub mod run;
pub mod tradeoff;
pub mod trainer;
pub mod tuning;

pub use config::CpConfig;
pub use method::{Hyper, Method, Objective, Regulariser};
