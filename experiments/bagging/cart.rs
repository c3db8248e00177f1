//! A compact CART (Breiman, Friedman, Olshen & Stone 1984): binary axis-aligned splits chosen by the
//! Gini index (classification) or squared error (regression), grown large and then cut back by
//! **minimal cost-complexity pruning**, with the complexity parameter α chosen by V-fold
//! cross-validation (V = 10) or by a test set.
//!
//! Why not a crate: Breiman (1996) bags *pruned* CART trees, and the pruning is the
//! cost-complexity pruning of CART chapter 3 (a nested sequence of subtrees T(α), α picked by
//! cross-validation). At the time of writing neither `smartcore` 0.7 (`DecisionTreeClassifier`:
//! depth / min-samples limits only) nor `linfa-trees` 0.8 (its `prune` only merges sibling leaves that
//! predict the same class) offers cost-complexity pruning, neither offers sample weights for
//! regression trees, and both pull large dependency trees (ndarray, num, …). This file is ~450
//! lines with no dependency beyond `rand`.
//!
//! Conventions (documented because they change numbers):
//! * a node with fewer than [`CartParams::min_split`] rows (default 5, CART's N_min) or with zero
//!   impurity is not split; leaves may hold a single row;
//! * thresholds are mid-points between consecutive distinct values; `x <= t` goes left;
//! * ties between equally good splits go to the lowest feature index, then the lowest threshold;
//!   class ties in a node go to the lowest class index;
//! * the selected subtree is the one with minimum estimated risk (the "0-SE" rule) unless
//!   [`CartParams::se_rule`] > 0 (1.0 = CART's 1-SE rule: the smallest tree within one standard error).
//!
//! Rows are given as indices into a [`Table`] and may repeat (bootstrap replicates), and every row
//! position carries a weight (all 1 for plain CART and bagging; AdaBoost's distribution otherwise).

use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::datasets::{Table, Target};

/// Growing and pruning settings.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CartParams {
    /// Nodes with fewer rows than this are not split (CART's N_min).
    pub min_split: usize,
    /// Hard depth limit, a guard against degenerate inputs (never reached on the paper's data).
    pub max_depth: usize,
    /// Number of cross-validation folds for [`Pruning::CrossValidation`].
    pub folds: usize,
    /// Pick the smallest subtree whose risk is within `se_rule` standard errors of the minimum.
    pub se_rule: f64,
}

impl Default for CartParams {
    fn default() -> Self {
        Self {
            min_split: 5,
            max_depth: 64,
            folds: 10,
            se_rule: 0.0,
        }
    }
}

/// How the pruned subtree T(α) is selected.
#[derive(Debug, Clone, Copy)]
pub enum Pruning<'a> {
    /// Keep the fully grown tree (α = 0).
    None,
    /// V-fold cross-validation on the growing rows (CART §3.4.2, §11.5).
    CrossValidation,
    /// Minimum risk on the given rows (CART §3.4.1); `weights` default to 1.
    TestSet {
        rows: &'a [usize],
        weights: Option<&'a [f64]>,
    },
}

const LEAF: u32 = u32::MAX;

#[derive(Debug, Clone)]
struct Node {
    feature: u32,
    threshold: f64,
    left: u32,
    right: u32,
    /// Prediction if this node is (or is pruned to) a leaf.
    class: u32,
    value: f64,
    /// Resubstitution risk R(t), normalised by the total weight of the growing set.
    risk: f64,
    /// The node becomes a leaf in T(α) for every α >= `prune_alpha` (∞ if never pruned by the path).
    prune_alpha: f64,
}

/// A grown (and possibly pruned) CART tree.
#[derive(Debug, Clone)]
pub struct Tree {
    nodes: Vec<Node>,
    alpha: f64,
    /// The distinct α at which the subtree sequence changes, ascending, starting at 0.
    path: Vec<f64>,
}

impl Tree {
    /// Grows the full tree on `rows` (indices into `table`, repeats allowed) with one weight per
    /// row position, then computes its cost-complexity pruning path. The tree starts unpruned.
    pub fn grow(table: &Table, rows: &[usize], weights: &[f64], params: &CartParams) -> Tree {
        assert_eq!(rows.len(), weights.len(), "one weight per row");
        assert!(!rows.is_empty(), "cannot grow a tree on zero rows");
        let total: f64 = weights.iter().sum();
        let mut g = Grower {
            table,
            rows,
            weights,
            params,
            total,
            nodes: Vec::new(),
            scratch: Vec::with_capacity(rows.len()),
        };
        let mut pos: Vec<usize> = (0..rows.len()).collect();
        g.build(&mut pos, 0);
        let mut tree = Tree {
            nodes: g.nodes,
            alpha: 0.0,
            path: Vec::new(),
        };
        tree.path = tree.compute_path();
        tree
    }

    /// Grows and prunes: the usual entry point.
    pub fn fit(
        table: &Table,
        rows: &[usize],
        weights: Option<&[f64]>,
        params: &CartParams,
        pruning: Pruning<'_>,
        rng: &mut StdRng,
    ) -> Tree {
        let ones;
        let w = match weights {
            Some(w) => w,
            None => {
                ones = vec![1.0; rows.len()];
                &ones[..]
            }
        };
        let mut tree = Tree::grow(table, rows, w, params);
        let alpha = match pruning {
            Pruning::None => 0.0,
            Pruning::TestSet {
                rows: test,
                weights: tw,
            } => {
                let risks: Vec<f64> = tree
                    .path
                    .iter()
                    .map(|&a| tree.risk_at(table, test, tw, a).0)
                    .collect();
                select(&tree.path, &risks, &vec![0.0; risks.len()], 0.0)
            }
            Pruning::CrossValidation => cv_alpha(&tree, table, rows, w, params, rng),
        };
        tree.set_alpha(alpha);
        tree
    }

    /// Selects the subtree T(α): every node whose `prune_alpha <= α` becomes a leaf.
    pub fn set_alpha(&mut self, alpha: f64) {
        self.alpha = alpha;
    }

    /// The current α.
    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    /// The α values at which the nested subtree sequence changes (ascending, first is 0).
    pub fn pruning_path(&self) -> &[f64] {
        &self.path
    }

    fn is_leaf_at(&self, i: usize, alpha: f64) -> bool {
        let n = &self.nodes[i];
        n.left == LEAF || n.prune_alpha <= alpha
    }

    fn leaf_of(&self, row: &[f64], alpha: f64) -> &Node {
        let mut i = 0usize;
        while !self.is_leaf_at(i, alpha) {
            let n = &self.nodes[i];
            i = if row[n.feature as usize] <= n.threshold {
                n.left
            } else {
                n.right
            } as usize;
        }
        &self.nodes[i]
    }

    /// Class prediction of the current subtree.
    pub fn predict_class(&self, row: &[f64]) -> u32 {
        self.leaf_of(row, self.alpha).class
    }

    /// Regression prediction (mean of the leaf) of the current subtree.
    pub fn predict_value(&self, row: &[f64]) -> f64 {
        self.leaf_of(row, self.alpha).value
    }

    /// Number of leaves of the current subtree.
    pub fn num_leaves(&self) -> usize {
        self.leaves_at(self.alpha)
    }

    /// Number of leaves of T(α).
    pub fn leaves_at(&self, alpha: f64) -> usize {
        let mut count = 0;
        let mut stack = vec![0usize];
        while let Some(i) = stack.pop() {
            if self.is_leaf_at(i, alpha) {
                count += 1;
            } else {
                stack.push(self.nodes[i].left as usize);
                stack.push(self.nodes[i].right as usize);
            }
        }
        count
    }

    /// Weighted mean loss of T(α) on `rows` (0/1 loss or squared error) and its standard error.
    fn risk_at(&self, table: &Table, rows: &[usize], w: Option<&[f64]>, alpha: f64) -> (f64, f64) {
        let losses: Vec<f64> = rows.iter().map(|&r| self.loss(table, r, alpha)).collect();
        weighted_mean_se(&losses, w)
    }

    fn loss(&self, table: &Table, r: usize, alpha: f64) -> f64 {
        let leaf = self.leaf_of(table.row(r), alpha);
        match &table.target {
            Target::Classes { labels, .. } => (leaf.class != labels[r]) as u8 as f64,
            Target::Values(y) => (leaf.value - y[r]).powi(2),
        }
    }

    /// Minimal cost-complexity pruning (CART §3.3, weakest-link cutting): repeatedly collapse the
    /// internal nodes t minimising g(t) = (R(t) − R(T_t)) / (|T̃_t| − 1). Stores in each node the α at
    /// which it collapses and returns the distinct α's.
    fn compute_path(&mut self) -> Vec<f64> {
        let n = self.nodes.len();
        let mut path = vec![0.0];
        // Nodes are stored parent-before-child, so a reverse scan visits children first.
        let mut sub_risk = vec![0.0; n];
        let mut sub_leaves = vec![0usize; n];
        let mut prev = 0.0f64;
        loop {
            let mut best = f64::INFINITY;
            let mut g = vec![f64::INFINITY; n];
            for i in (0..n).rev() {
                let node = &self.nodes[i];
                if node.left == LEAF || node.prune_alpha.is_finite() {
                    sub_risk[i] = node.risk;
                    sub_leaves[i] = 1;
                } else {
                    let (l, r) = (node.left as usize, node.right as usize);
                    sub_risk[i] = sub_risk[l] + sub_risk[r];
                    sub_leaves[i] = sub_leaves[l] + sub_leaves[r];
                    // R(t) >= R(T_t) in exact arithmetic; clamp rounding noise so α never decreases.
                    let gi = ((node.risk - sub_risk[i]) / (sub_leaves[i] - 1) as f64).max(prev);
                    g[i] = gi;
                    best = best.min(gi);
                }
            }
            if !best.is_finite() {
                break;
            }
            let tol = 1e-12 * best.abs().max(1e-300) + 1e-15;
            // Collapse every weakest link at once (top-down, so descendants inherit the same α).
            for (i, &gi) in g.iter().enumerate() {
                if gi <= best + tol && !self.nodes[i].prune_alpha.is_finite() {
                    self.collapse(i, best);
                }
            }
            if best > *path.last().unwrap_or(&0.0) {
                path.push(best);
            }
            prev = best;
        }
        path
    }

    fn collapse(&mut self, i: usize, alpha: f64) {
        let mut stack = vec![i];
        while let Some(j) = stack.pop() {
            let node = &mut self.nodes[j];
            if !node.prune_alpha.is_finite() {
                node.prune_alpha = alpha;
            }
            if node.left != LEAF {
                stack.push(node.left as usize);
                stack.push(node.right as usize);
            }
        }
    }
}

/// Picks the α of the smallest subtree whose risk is within `se_rule`·SE of the minimum risk
/// (ties go to the smaller tree, i.e. the larger α).
fn select(path: &[f64], risks: &[f64], ses: &[f64], se_rule: f64) -> f64 {
    let mut k_min = 0;
    for (k, &r) in risks.iter().enumerate() {
        if r <= risks[k_min] {
            k_min = k;
        }
    }
    let bound = risks[k_min] + se_rule * ses[k_min];
    let k_sel = (k_min..risks.len())
        .rev()
        .find(|&k| risks[k] <= bound)
        .unwrap_or(k_min);
    path[k_sel]
}

/// α by V-fold cross-validation (CART §11.5): grow a tree on each V−1 folds, evaluate it at the
/// geometric mid-points β_k = √(α_k α_{k+1}) of the main tree's path, and pick the α_k whose
/// pooled held-out risk is lowest.
fn cv_alpha(
    main: &Tree,
    table: &Table,
    rows: &[usize],
    w: &[f64],
    params: &CartParams,
    rng: &mut StdRng,
) -> f64 {
    let path = &main.path;
    let k_len = path.len();
    if k_len == 1 || rows.len() < 2 * params.folds.max(2) {
        return 0.0;
    }
    let betas: Vec<f64> = (0..k_len)
        .map(|k| {
            if k + 1 < k_len {
                (path[k] * path[k + 1]).sqrt()
            } else {
                f64::INFINITY
            }
        })
        .collect();
    let folds = params.folds.max(2);
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.shuffle(rng);
    let mut fold_of = vec![0usize; rows.len()];
    for (j, &p) in order.iter().enumerate() {
        fold_of[p] = j % folds;
    }
    // losses[k][pos]: held-out loss of position `pos` under the fold tree pruned at β_k.
    let mut losses = vec![vec![0.0; rows.len()]; k_len];
    for v in 0..folds {
        let (mut tr_rows, mut tr_w, mut te) = (Vec::new(), Vec::new(), Vec::new());
        for p in 0..rows.len() {
            if fold_of[p] == v {
                te.push(p);
            } else {
                tr_rows.push(rows[p]);
                tr_w.push(w[p]);
            }
        }
        let fold_tree = Tree::grow(table, &tr_rows, &tr_w, params);
        for (k, &beta) in betas.iter().enumerate() {
            for &p in &te {
                losses[k][p] = fold_tree.loss(table, rows[p], beta);
            }
        }
    }
    let (risks, ses): (Vec<f64>, Vec<f64>) =
        losses.iter().map(|l| weighted_mean_se(l, Some(w))).unzip();
    select(path, &risks, &ses, params.se_rule)
}

fn weighted_mean_se(losses: &[f64], w: Option<&[f64]>) -> (f64, f64) {
    let wt = |i: usize| w.map_or(1.0, |w| w[i]);
    let (mut sw, mut sw2, mut sl) = (0.0, 0.0, 0.0);
    for (i, l) in losses.iter().enumerate() {
        sw += wt(i);
        sw2 += wt(i) * wt(i);
        sl += wt(i) * l;
    }
    if sw <= 0.0 {
        return (0.0, 0.0);
    }
    let mean = sl / sw;
    let var = losses
        .iter()
        .enumerate()
        .map(|(i, l)| wt(i) * (l - mean).powi(2))
        .sum::<f64>()
        / sw;
    let n_eff = sw * sw / sw2;
    (mean, (var / n_eff).sqrt())
}

struct Grower<'a> {
    table: &'a Table,
    rows: &'a [usize],
    weights: &'a [f64],
    params: &'a CartParams,
    total: f64,
    nodes: Vec<Node>,
    scratch: Vec<(f64, usize)>,
}

/// Node statistics: per-class weight (classification) or (Σw, Σwy) (regression).
struct Stats {
    class_w: Vec<f64>,
    sw: f64,
    swy: f64,
}

impl Grower<'_> {
    fn stats(&self, pos: &[usize]) -> Stats {
        let mut s = Stats {
            class_w: vec![0.0; self.table.num_classes()],
            sw: 0.0,
            swy: 0.0,
        };
        for &p in pos {
            let (r, w) = (self.rows[p], self.weights[p]);
            s.sw += w;
            match &self.table.target {
                Target::Classes { labels, .. } => s.class_w[labels[r] as usize] += w,
                Target::Values(y) => s.swy += w * y[r],
            }
        }
        s
    }

    /// Adds the node for `pos` (and its subtree); returns its index.
    fn build(&mut self, pos: &mut [usize], depth: usize) -> u32 {
        let s = self.stats(pos);
        let (class, value, risk, pure) = match &self.table.target {
            Target::Classes { .. } => {
                let mut best = 0;
                for (k, &cw) in s.class_w.iter().enumerate() {
                    if cw > s.class_w[best] {
                        best = k;
                    }
                }
                let err = s.sw - s.class_w[best];
                (
                    best as u32,
                    best as f64,
                    err / self.total,
                    err <= 1e-12 * s.sw,
                )
            }
            Target::Values(y) => {
                let mean = if s.sw > 0.0 { s.swy / s.sw } else { 0.0 };
                let sse: f64 = pos
                    .iter()
                    .map(|&p| self.weights[p] * (y[self.rows[p]] - mean).powi(2))
                    .sum();
                (
                    0,
                    mean,
                    sse / self.total,
                    sse <= 1e-12 * (1.0 + mean * mean) * s.sw,
                )
            }
        };
        let id = self.nodes.len();
        self.nodes.push(Node {
            feature: 0,
            threshold: 0.0,
            left: LEAF,
            right: LEAF,
            class,
            value,
            risk,
            prune_alpha: f64::INFINITY,
        });
        if pure || pos.len() < self.params.min_split.max(2) || depth >= self.params.max_depth {
            return id as u32;
        }
        let Some((feature, threshold)) = self.best_split(pos, &s) else {
            return id as u32;
        };
        // Stable partition: rows with x <= threshold first.
        let p = self.table.p;
        let x = &self.table.x;
        let (mut left, mut right): (Vec<usize>, Vec<usize>) = pos
            .iter()
            .partition(|&&q| x[self.rows[q] * p + feature] <= threshold);
        let n_left = left.len();
        pos[..n_left].copy_from_slice(&left);
        pos[n_left..].copy_from_slice(&right);
        left.clear();
        right.clear();
        let (lp, rp) = pos.split_at_mut(n_left);
        let l = self.build(lp, depth + 1);
        let r = self.build(rp, depth + 1);
        let node = &mut self.nodes[id];
        node.feature = feature as u32;
        node.threshold = threshold;
        node.left = l;
        node.right = r;
        id as u32
    }

    /// Best (feature, threshold) by impurity decrease; `None` if no split improves the node.
    fn best_split(&mut self, pos: &[usize], s: &Stats) -> Option<(usize, f64)> {
        let (p, x) = (self.table.p, &self.table.x);
        let classes = self.table.num_classes();
        // Both criteria reduce to maximising a sum of (Σ_class w)² / Σw over the two children
        // (Gini: Σ_k W_k²/W; squared error: (Σwy)²/Σw), compared with the parent's value.
        let parent = match &self.table.target {
            Target::Classes { .. } => s.class_w.iter().map(|c| c * c).sum::<f64>() / s.sw,
            Target::Values(_) => s.swy * s.swy / s.sw,
        };
        let mut best_gain = 1e-12 * parent.abs().max(1e-12);
        let mut best: Option<(usize, f64)> = None;
        let mut left_w = vec![0.0; classes];
        for f in 0..p {
            self.scratch.clear();
            self.scratch
                .extend(pos.iter().map(|&q| (x[self.rows[q] * p + f], q)));
            self.scratch
                .sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            left_w.iter_mut().for_each(|v| *v = 0.0);
            let (mut lw, mut lwy) = (0.0, 0.0);
            let mut left_sq = 0.0; // Σ_k L_k² maintained incrementally for Gini
            for j in 0..self.scratch.len() - 1 {
                let (v, q) = self.scratch[j];
                let (r, w) = (self.rows[q], self.weights[q]);
                lw += w;
                match &self.table.target {
                    Target::Classes { labels, .. } => {
                        let k = labels[r] as usize;
                        left_sq += 2.0 * left_w[k] * w + w * w;
                        left_w[k] += w;
                    }
                    Target::Values(y) => lwy += w * y[r],
                }
                let next = self.scratch[j + 1].0;
                if next <= v {
                    continue; // split only between distinct values
                }
                let rw = s.sw - lw;
                if lw <= 0.0 || rw <= 0.0 {
                    continue;
                }
                let crit = match &self.table.target {
                    Target::Classes { .. } => {
                        let right_sq: f64 = s
                            .class_w
                            .iter()
                            .zip(&left_w)
                            .map(|(t, l)| (t - l) * (t - l))
                            .sum();
                        left_sq / lw + right_sq / rw
                    }
                    Target::Values(_) => {
                        let rwy = s.swy - lwy;
                        lwy * lwy / lw + rwy * rwy / rw
                    }
                };
                let gain = crit - parent;
                if gain > best_gain {
                    best_gain = gain;
                    // Mid-point; guard against rounding onto `next` for adjacent floats.
                    let mut t = v + (next - v) / 2.0;
                    if t >= next {
                        t = v;
                    }
                    best = Some((f, t));
                }
            }
        }
        best
    }
}
