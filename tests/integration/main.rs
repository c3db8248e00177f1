//! All of the root package's integration tests in one binary (one link instead of one per file:
//! faster CI and a fraction of the disk). Each module is one former `tests/<name>.rs`; run one
//! with `cargo test --test integration <name>::`.

mod common;

mod backends_smoke;
mod bagging_smoke;
mod bagging_trees;
mod confidence_penalty_cli;
mod confidence_penalty_loss;
mod datasets_cli;
mod decouple_classifiers;
mod decouple_smoke;
mod distill_loss;
mod distill_smoke;
mod distill_transfer;
mod dry_run;
mod golden;
mod gpu_check;
mod l2rw_cli;
mod l2rw_weights;
mod mlnt;
mod mwn_cli;
mod mwn_meta;
mod plan_merge;
mod results_report;
mod reweight_core;
mod run_guards;
mod runner_classifier;
mod runner_core;
mod workspace;
