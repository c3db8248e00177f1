//! The reweighting core shared by the noisy-label and class-imbalance papers (`l2rw`, `mwn`,
//! `mlnt`): the training loop ([`ReweightTask`]), the data splits and role-seeded generators,
//! one [`RunRecord`] per trained run, one checkpoint layout, and the step rules every paper
//! shares. A method plugs in as a [`StepRule`]; a paper module holds its presets, what is unique
//! to its method and its report.

mod checkpoint;
pub mod dry_run;
pub mod net;
pub mod opt;
pub mod record;
pub mod rng;
pub mod rule;
pub mod rules;
pub mod split;
mod stats;
pub mod task;

pub use net::NetSpec;
pub use opt::OptConfig;
pub use record::{json_test_accuracy, pct_accuracy, train, RunOut, RunRecord};
pub use rng::{fnv1a, random_subset, role_rng};
pub use rule::{check_meta_step, MetaDraw, RuleStep, Sampling, StepRule};
pub use rules::AllZero;
pub use split::{limit_test, long_tail_split, noisy_split, Datasets, Prepared, Setting, Split};
pub use task::{ReweightTask, TaskData};
