//! Li, Wong, Zhao & Kankanhalli (2019), "Learning to Learn from Noisy Labeled Data"
//! (Meta-Learning based Noise-Tolerant training, MLNT).
//!
//! Each iteration, before the ordinary CE update of the mini-batch: M synthetic noisy label sets
//! by random neighbour label transfer (a fraction ρ of the batch takes the label of one of its k
//! nearest neighbours in feature space), a fast SGD step of the student on each, and the
//! consistency loss `KL(teacher ‖ student(θ'_m))` averaged over m, with the teacher an
//! exponential moving average of the student; its meta-gradient flows through the fast steps to
//! θ (the core's [`zoo_models::meta::unrolled_meta_gradient`], exact or first order). Training
//! runs on the reweighting core's [`crate::reweight::ReweightTask`] loop as a
//! [`crate::reweight::StepRule`], on the core's noisy CIFAR split shared with `mwn` (same seed,
//! same split), against plain CE; optionally the paper's second iteration on the rows the first
//! round's mentor agrees with.

pub mod config;
pub mod dry_run;
pub mod experiment;
mod report;
pub mod task;

pub use config::{
    CifarPart, CifarSetting, Clothing1mPart, Features, Method, MlntConfig, MlntSettings, Part,
    Update,
};
pub use experiment::{check_parts_available, run, RunResult, PAPER_CLOTHING1M};
pub use report::PAPER;
pub use task::{
    consistency_kl, copy_weights, ema_update, mlnt_meta_gradient, nearest_neighbours,
    neighbour_label_transfer, schedule_at, FastSteps, MlntGrad, MlntRule, Transfer,
};
