//! Bagging (Breiman 1996) and AdaBoost.M1 (Freund & Schapire 1996/1997) over CART trees.

use rand::rngs::StdRng;
use rand::Rng;

use super::cart::{CartParams, Pruning, Tree};
use super::datasets::Table;

/// `n` row indices drawn uniformly with replacement from `rows` (a bootstrap replicate).
/// On average a fraction 1 − (1 − 1/n)^n ≈ 1 − 1/e ≈ 63.2 % of the rows appear.
pub fn bootstrap(rows: &[usize], rng: &mut StdRng) -> Vec<usize> {
    (0..rows.len())
        .map(|_| rows[rng.random_range(0..rows.len())])
        .collect()
}

/// Index of the largest count; ties go to the **lowest** class index, so a vote never depends on
/// the order in which the trees were grown. Returns 0 for an empty slice.
pub fn plurality(counts: &[f64]) -> usize {
    let mut best = 0;
    for (k, &c) in counts.iter().enumerate() {
        if c > counts[best] {
            best = k;
        }
    }
    best
}

/// How each bagged tree is pruned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BagPruning {
    /// Grow on the bootstrap replicate L_B, choose T(α) by its risk on the original learning set L
    /// (our reading of Breiman 1996 §2; one tree per bag).
    LearningSet,
    /// 10-fold cross-validation inside the replicate (11 trees per bag; duplicates leak across folds).
    CrossValidation,
    /// No pruning (the now-common "bag unpruned trees" practice).
    None,
}

impl std::str::FromStr for BagPruning {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s {
            "learning-set" => Ok(Self::LearningSet),
            "cv" => Ok(Self::CrossValidation),
            "none" => Ok(Self::None),
            _ => anyhow::bail!("unknown bag pruning {s:?}: expected learning-set, cv or none"),
        }
    }
}

/// A bagged ensemble of CART trees.
#[derive(Debug, Clone)]
pub struct BaggedTrees {
    pub trees: Vec<Tree>,
    num_classes: usize,
}

impl BaggedTrees {
    /// Grows `bags` trees, each on a bootstrap replicate of `rows`.
    pub fn fit(
        table: &Table,
        rows: &[usize],
        bags: usize,
        params: &CartParams,
        pruning: BagPruning,
        rng: &mut StdRng,
    ) -> Self {
        let trees = (0..bags)
            .map(|_| fit_bag_tree(table, rows, params, pruning, rng))
            .collect();
        Self {
            trees,
            num_classes: table.num_classes(),
        }
    }

    /// Plurality vote of the first `m` trees (all trees if `m` exceeds their number).
    pub fn predict_class(&self, row: &[f64], m: usize) -> u32 {
        let mut counts = vec![0.0; self.num_classes];
        for t in self.trees.iter().take(m) {
            counts[t.predict_class(row) as usize] += 1.0;
        }
        plurality(&counts) as u32
    }

    /// Average of the first `m` trees' predictions.
    pub fn predict_value(&self, row: &[f64], m: usize) -> f64 {
        let m = m.min(self.trees.len()).max(1);
        self.trees
            .iter()
            .take(m)
            .map(|t| t.predict_value(row))
            .sum::<f64>()
            / m as f64
    }
}

/// One bagged tree: bootstrap replicate, grow, prune as requested.
pub fn fit_bag_tree(
    table: &Table,
    rows: &[usize],
    params: &CartParams,
    pruning: BagPruning,
    rng: &mut StdRng,
) -> Tree {
    let sample = bootstrap(rows, rng);
    let pruning = match pruning {
        BagPruning::LearningSet => Pruning::TestSet {
            rows,
            weights: None,
        },
        BagPruning::CrossValidation => Pruning::CrossValidation,
        BagPruning::None => Pruning::None,
    };
    Tree::fit(table, &sample, None, params, pruning, rng)
}

/// AdaBoost.M1 with reweighting: each round fits a CV-pruned CART tree to the weighted learning
/// set; vote weight log(1/β_t), β_t = ε_t/(1 − ε_t).
#[derive(Debug, Clone)]
pub struct AdaBoostM1 {
    pub trees: Vec<Tree>,
    pub vote_weights: Vec<f64>,
    num_classes: usize,
}

impl AdaBoostM1 {
    /// Runs up to `rounds` rounds. As in Freund & Schapire's M1, boosting stops when a tree's
    /// weighted error reaches ½ (that tree is discarded, unless it is the first) or is 0 (that
    /// tree is kept with the weight of ε = 10⁻¹⁰ and nothing more can be learnt).
    pub fn fit(
        table: &Table,
        rows: &[usize],
        rounds: usize,
        params: &CartParams,
        rng: &mut StdRng,
    ) -> Self {
        let n = rows.len();
        let labels = table.labels();
        // Weights are kept with mean 1 so tree-growing tolerances see ordinary magnitudes.
        let mut w = vec![1.0; n];
        let (mut trees, mut vote_weights) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let tree = Tree::fit(table, rows, Some(&w), params, Pruning::CrossValidation, rng);
            let wrong: Vec<bool> = rows
                .iter()
                .map(|&r| tree.predict_class(table.row(r)) != labels[r])
                .collect();
            let total: f64 = w.iter().sum();
            let eps = wrong
                .iter()
                .zip(&w)
                .filter(|(b, _)| **b)
                .map(|(_, w)| w)
                .sum::<f64>()
                / total;
            if eps >= 0.5 {
                if trees.is_empty() {
                    trees.push(tree);
                    vote_weights.push(1.0);
                }
                break;
            }
            let eps_c = eps.max(1e-10);
            let beta = eps_c / (1.0 - eps_c);
            trees.push(tree);
            vote_weights.push((1.0 / beta).ln());
            if eps == 0.0 {
                break;
            }
            for (wi, &bad) in w.iter_mut().zip(&wrong) {
                if !bad {
                    *wi *= beta;
                }
            }
            let s: f64 = w.iter().sum::<f64>() / n as f64;
            w.iter_mut().for_each(|wi| *wi /= s);
        }
        Self {
            trees,
            vote_weights,
            num_classes: table.num_classes(),
        }
    }

    /// Weighted vote (ties to the lowest class index).
    pub fn predict_class(&self, row: &[f64]) -> u32 {
        let mut counts = vec![0.0; self.num_classes];
        for (t, a) in self.trees.iter().zip(&self.vote_weights) {
            counts[t.predict_class(row) as usize] += a;
        }
        plurality(&counts) as u32
    }
}
