//! Breiman's protocol, its configuration and presets.
//!
//! For every data set and every repetition: split (real tables: a random 10 % test set; simulated
//! problems: a fresh learning set and test set of Breiman's sizes), grow one CART tree pruned by
//! 10-fold cross-validation, grow `curve_bags` bagged trees (the first `bags` of them are the bagged
//! predictor of the table; all of them give the error-versus-bags curve), and, for classification,
//! AdaBoost.M1 with the same kind of trees.

use std::time::Instant;

use anyhow::{bail, Result};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::cart::{CartParams, Pruning, Tree};
use super::datasets::{self, Table};
use super::ensemble::{fit_bag_tree, plurality, AdaBoostM1, BagPruning};
use super::neural::NeuralConfig;
use crate::cli::{ExperimentConfig, Preset};

/// Every data set the binary knows, in table order.
pub const ALL_DATASETS: [&str; 8] = [
    "waveform",
    "breast_cancer",
    "iris",
    "friedman1",
    "friedman2",
    "friedman3",
    "boston",
    "diabetes",
];

/// The resolved configuration (written to `config.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// Repetitions per data set (Breiman: 100).
    pub reps: usize,
    /// Trees in the bagged predictor of the table (Breiman: 50).
    pub bags: usize,
    /// Trees grown for the error-versus-bags curve (≥ `bags`; the first `bags` are the table's).
    pub curve_bags: usize,
    /// AdaBoost.M1 rounds (0: skip boosting).
    pub boost_rounds: usize,
    /// Fraction of a real table held out as the test set (Breiman: 0.1).
    pub holdout: f64,
    /// Data sets to run (names from [`ALL_DATASETS`]).
    pub datasets: Vec<String>,
    /// Waveform learning/test set sizes (Breiman: 300 / 1800).
    pub waveform_train: usize,
    pub waveform_test: usize,
    /// Friedman #1–#3 learning/test set sizes (Breiman: 200 / 1000 — test size assumed).
    pub friedman_train: usize,
    pub friedman_test: usize,
    /// Noise standard deviations of Friedman #1, #2, #3.
    pub friedman_noise: [f64; 3],
    /// CART's N_min: nodes with fewer rows are not split.
    pub min_split: usize,
    /// Cross-validation folds for pruning the single tree (and AdaBoost's trees).
    pub folds: usize,
    /// 0 = minimum-risk subtree; 1 = CART's 1-SE rule.
    pub se_rule: f64,
    /// How the bagged trees are pruned.
    pub bag_pruning: BagPruning,
    /// The neural part (bagged MLPs on Fashion-MNIST and their distillation); `None` skips it.
    pub neural: Option<NeuralConfig>,
}

impl Config {
    /// Tree growing/pruning parameters.
    pub fn cart(&self) -> CartParams {
        CartParams {
            min_split: self.min_split,
            max_depth: 64,
            folds: self.folds,
            se_rule: self.se_rule,
        }
    }
}

impl ExperimentConfig for Config {
    fn preset(preset: Preset) -> Self {
        let all = ALL_DATASETS.iter().map(|s| s.to_string()).collect();
        let base = Config {
            reps: 100,
            bags: 50,
            curve_bags: 100,
            boost_rounds: 50,
            holdout: 0.1,
            datasets: all,
            waveform_train: 300,
            waveform_test: 1800,
            friedman_train: 200,
            friedman_test: 1000,
            friedman_noise: [1.0, 125.0, 0.1],
            min_split: 5,
            folds: 10,
            se_rule: 0.0,
            bag_pruning: BagPruning::LearningSet,
            neural: Some(NeuralConfig::preset(preset)),
        };
        match preset {
            Preset::Paper => base,
            // The tree protocol is cheap: all 100 repetitions take ~6 CPU-minutes here, so the
            // cpu preset keeps them; it differs from `paper` only in the neural part's size.
            Preset::Cpu => base,
            Preset::Smoke => Config {
                reps: 2,
                bags: 5,
                curve_bags: 8,
                boost_rounds: 3,
                datasets: vec!["waveform".into(), "iris".into(), "friedman1".into()],
                waveform_train: 100,
                waveform_test: 200,
                friedman_train: 80,
                friedman_test: 100,
                folds: 3,
                ..base
            },
        }
    }

    fn data_needs(&self) -> Vec<crate::preflight::DataNeed> {
        let neural = self.neural.iter();
        neural
            .map(|_| crate::preflight::DataNeed::dataset("fashion_mnist"))
            .collect()
    }

    fn validate(&self) -> Result<()> {
        if self.reps == 0 {
            bail!("reps must be at least 1");
        }
        if self.bags == 0 {
            bail!("bags must be at least 1");
        }
        if self.curve_bags < self.bags {
            bail!(
                "curve_bags ({}) must be at least bags ({})",
                self.curve_bags,
                self.bags
            );
        }
        if !(self.holdout > 0.0 && self.holdout < 1.0) {
            bail!("holdout must be in (0, 1), got {}", self.holdout);
        }
        if self.datasets.is_empty() {
            bail!("datasets: give at least one of {}", ALL_DATASETS.join(", "));
        }
        for d in &self.datasets {
            if !ALL_DATASETS.contains(&d.as_str()) {
                bail!(
                    "unknown data set {d:?}: expected one of {}",
                    ALL_DATASETS.join(", ")
                );
            }
        }
        if self.waveform_train < 10 || self.waveform_test == 0 {
            bail!("waveform_train must be >= 10 and waveform_test >= 1");
        }
        if self.friedman_train < 10 || self.friedman_test == 0 {
            bail!("friedman_train must be >= 10 and friedman_test >= 1");
        }
        if self
            .friedman_noise
            .iter()
            .any(|s| !(s.is_finite() && *s >= 0.0))
        {
            bail!("friedman_noise must be finite and non-negative");
        }
        if self.min_split < 2 {
            bail!("min_split must be at least 2");
        }
        if self.folds < 2 {
            bail!("folds must be at least 2");
        }
        if !(self.se_rule.is_finite() && self.se_rule >= 0.0) {
            bail!("se_rule must be finite and >= 0");
        }
        if let Some(n) = &self.neural {
            n.validate()?;
        }
        Ok(())
    }
}

/// Results of one repetition on one data set. Errors are % misclassified or test MSE.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RepResult {
    pub single: f64,
    pub bagged: f64,
    pub boosted: Option<f64>,
    /// Error of the bagged predictor made of the first 1, 2, …, `curve_bags` trees. Not written
    /// to `repetitions.json` (its mean is in `bags_curve.csv`), which keeps that file small.
    #[serde(skip_serializing, default)]
    pub curve: Vec<f64>,
    /// Leaves of the single pruned tree and mean leaves of the bagged trees.
    pub single_leaves: f64,
    pub bag_leaves: f64,
}

/// All repetitions of one data set.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatasetResult {
    pub name: String,
    pub classification: bool,
    pub train_size: usize,
    pub test_size: usize,
    pub reps: Vec<RepResult>,
    pub seconds: f64,
}

/// SplitMix64 finaliser: independent-looking seeds for (seed, data set, repetition) so every
/// repetition is reproducible on its own, whatever the thread count or data set selection.
pub fn mix_seed(seed: u64, a: u64, b: u64) -> u64 {
    let mut z = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(a.wrapping_mul(0xBF58_476D_1CE4_E5B9))
        .wrapping_add(b.wrapping_mul(0x94D0_49BB_1331_11EB))
        .wrapping_add(0x2545_F491_4F6C_DD1D);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Loads a real table, or `None` for a simulated problem.
fn real_table(name: &str) -> Result<Option<Table>> {
    Ok(match name {
        "breast_cancer" => Some(datasets::breast_cancer()?),
        "iris" => Some(datasets::iris()?),
        "boston" => Some(datasets::boston()?),
        "diabetes" => Some(datasets::diabetes()?),
        _ => None,
    })
}

/// One repetition's data: a table holding learning and test rows, and the two index lists.
fn draw_split(
    cfg: &Config,
    name: &str,
    real: Option<&Table>,
    rng: &mut StdRng,
) -> Result<(Table, Vec<usize>, Vec<usize>)> {
    if let Some(t) = real {
        let mut idx: Vec<usize> = (0..t.len()).collect();
        idx.shuffle(rng);
        let n_test = ((t.len() as f64) * cfg.holdout).round().max(1.0) as usize;
        let test = idx[..n_test].to_vec();
        let train = idx[n_test..].to_vec();
        return Ok((t.clone(), train, test));
    }
    let (n_tr, n_te) = match name {
        "waveform" => (cfg.waveform_train, cfg.waveform_test),
        _ => (cfg.friedman_train, cfg.friedman_test),
    };
    let gen = |n: usize, rng: &mut StdRng| -> Result<Table> {
        Ok(match name {
            "waveform" => datasets::waveform(n, rng),
            "friedman1" => datasets::friedman1(n, cfg.friedman_noise[0], rng),
            "friedman2" => datasets::friedman2(n, cfg.friedman_noise[1], rng),
            "friedman3" => datasets::friedman3(n, cfg.friedman_noise[2], rng),
            _ => bail!("unknown data set {name:?}"),
        })
    };
    let train = gen(n_tr, rng)?;
    let test = gen(n_te, rng)?;
    Ok((
        Table::concat(&train, &test),
        (0..n_tr).collect(),
        (n_tr..n_tr + n_te).collect(),
    ))
}

/// Runs one repetition.
pub fn run_rep(
    cfg: &Config,
    name: &str,
    real: Option<&Table>,
    rng: &mut StdRng,
) -> Result<RepResult> {
    let (table, train, test) = draw_split(cfg, name, real, rng)?;
    let params = cfg.cart();
    let single = Tree::fit(&table, &train, None, &params, Pruning::CrossValidation, rng);
    let classification = table.is_classification();
    let error = |pred: &dyn Fn(&[f64]) -> (u32, f64)| -> f64 {
        let mut s = 0.0;
        for &r in &test {
            let (c, v) = pred(table.row(r));
            s += if classification {
                (c != table.labels()[r]) as u8 as f64
            } else {
                (v - table.values()[r]).powi(2)
            };
        }
        let m = s / test.len() as f64;
        if classification {
            100.0 * m
        } else {
            m
        }
    };
    let single_err = error(&|x| (single.predict_class(x), single.predict_value(x)));

    // Bagged trees, scored after each addition: votes (classification) or running sums.
    let k = table.num_classes().max(1);
    let mut votes = vec![0.0; test.len() * k];
    let mut sums = vec![0.0; test.len()];
    let mut curve = Vec::with_capacity(cfg.curve_bags);
    let mut leaves = 0.0;
    for b in 0..cfg.curve_bags {
        let tree = fit_bag_tree(&table, &train, &params, cfg.bag_pruning, rng);
        if b < cfg.bags {
            leaves += tree.num_leaves() as f64;
        }
        let mut s = 0.0;
        for (j, &r) in test.iter().enumerate() {
            let x = table.row(r);
            if classification {
                votes[j * k + tree.predict_class(x) as usize] += 1.0;
                let c = plurality(&votes[j * k..(j + 1) * k]) as u32;
                s += (c != table.labels()[r]) as u8 as f64;
            } else {
                sums[j] += tree.predict_value(x);
                s += (sums[j] / (b + 1) as f64 - table.values()[r]).powi(2);
            }
        }
        let m = s / test.len() as f64;
        curve.push(if classification { 100.0 * m } else { m });
    }
    let boosted = if classification && cfg.boost_rounds > 0 {
        let ada = AdaBoostM1::fit(&table, &train, cfg.boost_rounds, &params, rng);
        Some(error(&|x| (ada.predict_class(x), 0.0)))
    } else {
        None
    };
    Ok(RepResult {
        single: single_err,
        bagged: curve[cfg.bags - 1],
        boosted,
        curve,
        single_leaves: single.num_leaves() as f64,
        bag_leaves: leaves / cfg.bags as f64,
    })
}

/// Runs every repetition of one data set (repetitions in parallel; results are independent of
/// the thread count).
pub fn run_dataset(cfg: &Config, name: &str, seed: u64) -> Result<DatasetResult> {
    let started = Instant::now();
    let real = real_table(name)?;
    let d_index = ALL_DATASETS
        .iter()
        .position(|d| *d == name)
        .unwrap_or(usize::MAX) as u64;
    let reps = (0..cfg.reps)
        .into_par_iter()
        .map(|r| {
            let mut rng = StdRng::seed_from_u64(mix_seed(seed, d_index, r as u64));
            run_rep(cfg, name, real.as_ref(), &mut rng)
        })
        .collect::<Result<Vec<_>>>()?;
    let (train_size, test_size, classification) = match (&real, name) {
        (Some(t), _) => {
            let n_test = ((t.len() as f64) * cfg.holdout).round().max(1.0) as usize;
            (t.len() - n_test, n_test, t.is_classification())
        }
        (None, "waveform") => (cfg.waveform_train, cfg.waveform_test, true),
        (None, _) => (cfg.friedman_train, cfg.friedman_test, false),
    };
    Ok(DatasetResult {
        name: name.to_string(),
        classification,
        train_size,
        test_size,
        reps,
        seconds: started.elapsed().as_secs_f64(),
    })
}
