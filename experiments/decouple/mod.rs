//! Kang, Xie, Rohrbach, Yan, Gordo, Feng & Kalantidis (2020), "Decoupling Representation and
//! Classifier for Long-Tailed Recognition".
//!
//! Stage 1 trains backbone and classifier jointly with one of four samplers (instance-balanced,
//! class-balanced, square-root, progressively balanced). Stage 2 freezes the representation and
//! re-balances only the classifier, on cached features: nearest class mean (NCM), classifier
//! re-training with class-balanced sampling (cRT), τ-normalisation of the joint classifier's
//! weights (τ chosen on a validation split), and learnable per-class weight scaling (LWS).
//! Accuracy is reported overall and for many- (> 100 training images), medium- (20–100) and
//! few-shot (< 20) classes, plus head/tail halves where a group is empty (CIFAR-10-LT).

pub mod classifiers;
pub mod config;
pub mod experiment;
pub mod plan;
pub mod report;

pub use classifiers::{
    lws_logits, row_norms, tau_normalize, train_crt, train_lws, HeadTraining, LinearHead, Ncm,
    NcmMetric,
};
pub use config::{DataSpec, DecoupleConfig, Net, Sampling, Schedule, Setting, Stage1, Stage2};
pub use experiment::{
    build_net, evaluate, extract_features, load_setting, make_sampler, Eval, RunResult,
    SettingData, CLASSIFIERS, PAPER,
};
pub use plan::{drive, plan, run, DecoupleRuns};
