//! Epoch samplers: which dataset rows an epoch visits, and how often.
//!
//! Class-based samplers (Kang et al. 2020, "Decoupling representation and classifier") draw a
//! class j with probability p_j, then a row of that class uniformly: p_j ∝ n_j^q with q = 1
//! (instance-balanced), q = 0 (class-balanced), q = ½ (square-root); progressively balanced
//! interpolates p_j(t) = (1 − t/T)·p_IB + (t/T)·p_CB over epochs.

use anyhow::{ensure, Result};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;

/// Yields the dataset rows of one epoch, in order.
pub trait Sampler: Send {
    fn epoch_indices(&mut self, epoch: usize, rng: &mut StdRng) -> Vec<usize>;
}

/// `0..n` in order, every epoch (evaluation).
#[derive(Clone, Debug)]
pub struct Sequential {
    pub n: usize,
}

impl Sampler for Sequential {
    fn epoch_indices(&mut self, _epoch: usize, _rng: &mut StdRng) -> Vec<usize> {
        (0..self.n).collect()
    }
}

/// A fresh random permutation of `0..n` each epoch: every row once (instance-balanced sampling as
/// plain shuffling does it).
#[derive(Clone, Debug)]
pub struct InstanceBalanced {
    pub n: usize,
}

impl Sampler for InstanceBalanced {
    fn epoch_indices(&mut self, _epoch: usize, rng: &mut StdRng) -> Vec<usize> {
        let mut v: Vec<usize> = (0..self.n).collect();
        v.shuffle(rng);
        v
    }
}

fn group(labels: &[u32], num_classes: usize) -> Result<Vec<Vec<usize>>> {
    let mut by = vec![Vec::new(); num_classes];
    for (i, &l) in labels.iter().enumerate() {
        ensure!(
            (l as usize) < num_classes,
            "label {l} outside 0..{num_classes}"
        );
        by[l as usize].push(i);
    }
    Ok(by)
}

/// Class probabilities p_j ∝ n_j^q (empty classes get 0).
pub fn class_probs(counts: &[usize], q: f64) -> Vec<f64> {
    let w: Vec<f64> = counts
        .iter()
        .map(|&n| if n == 0 { 0.0 } else { (n as f64).powf(q) })
        .collect();
    let s: f64 = w.iter().sum();
    w.iter()
        .map(|x| if s > 0.0 { x / s } else { 0.0 })
        .collect()
}

fn draw(by_class: &[Vec<usize>], probs: &[f64], n: usize, rng: &mut StdRng) -> Vec<usize> {
    let mut cum = Vec::with_capacity(probs.len());
    let mut acc = 0.0;
    for p in probs {
        acc += p;
        cum.push(acc);
    }
    (0..n)
        .map(|_| {
            let u = rng.random::<f64>() * acc;
            let mut j = cum.partition_point(|&c| c <= u).min(probs.len() - 1);
            while by_class[j].is_empty() {
                j = (j + 1) % probs.len(); // only reachable through float round-off at the edge
            }
            let rows = &by_class[j];
            rows[rng.random_range(0..rows.len())]
        })
        .collect()
}

/// Draws a class with fixed probabilities, then a row of it uniformly; `num_samples` draws per epoch.
#[derive(Clone, Debug)]
pub struct ClassWeighted {
    by_class: Vec<Vec<usize>>,
    probs: Vec<f64>,
    pub num_samples: usize,
}

impl ClassWeighted {
    /// p_j ∝ n_j^q; `num_samples` defaults to the dataset size in the named constructors.
    pub fn with_power(
        labels: &[u32],
        num_classes: usize,
        q: f64,
        num_samples: usize,
    ) -> Result<Self> {
        let by_class = group(labels, num_classes)?;
        ensure!(!labels.is_empty(), "cannot sample from an empty dataset");
        let counts: Vec<usize> = by_class.iter().map(Vec::len).collect();
        Ok(ClassWeighted {
            probs: class_probs(&counts, q),
            by_class,
            num_samples,
        })
    }
    pub fn probs(&self) -> &[f64] {
        &self.probs
    }
}

impl Sampler for ClassWeighted {
    fn epoch_indices(&mut self, _epoch: usize, rng: &mut StdRng) -> Vec<usize> {
        draw(&self.by_class, &self.probs, self.num_samples, rng)
    }
}

/// Class-balanced: every non-empty class equally likely (q = 0), `labels.len()` draws per epoch.
pub struct ClassBalanced;
impl ClassBalanced {
    #[allow(clippy::new_ret_no_self)]
    pub fn new(labels: &[u32], num_classes: usize) -> Result<ClassWeighted> {
        ClassWeighted::with_power(labels, num_classes, 0.0, labels.len())
    }
}

/// Square-root sampling: p_j ∝ √n_j (q = ½), `labels.len()` draws per epoch.
pub struct SquareRoot;
impl SquareRoot {
    #[allow(clippy::new_ret_no_self)]
    pub fn new(labels: &[u32], num_classes: usize) -> Result<ClassWeighted> {
        ClassWeighted::with_power(labels, num_classes, 0.5, labels.len())
    }
}

/// Progressively balanced (Kang et al.): p_j(t) = (1 − t/T)·p_IB + (t/T)·p_CB with t the epoch and
/// T = `total_epochs` (t/T capped at 1); `labels.len()` draws per epoch.
#[derive(Clone, Debug)]
pub struct ProgressivelyBalanced {
    by_class: Vec<Vec<usize>>,
    p_ib: Vec<f64>,
    p_cb: Vec<f64>,
    pub total_epochs: usize,
}

impl ProgressivelyBalanced {
    pub fn new(labels: &[u32], num_classes: usize, total_epochs: usize) -> Result<Self> {
        ensure!(
            total_epochs > 0,
            "progressively balanced sampling needs total_epochs > 0"
        );
        ensure!(!labels.is_empty(), "cannot sample from an empty dataset");
        let by_class = group(labels, num_classes)?;
        let counts: Vec<usize> = by_class.iter().map(Vec::len).collect();
        Ok(Self {
            p_ib: class_probs(&counts, 1.0),
            p_cb: class_probs(&counts, 0.0),
            by_class,
            total_epochs,
        })
    }
    /// Class probabilities at `epoch`.
    pub fn probs_at(&self, epoch: usize) -> Vec<f64> {
        let a = (epoch as f64 / self.total_epochs as f64).min(1.0);
        self.p_ib
            .iter()
            .zip(&self.p_cb)
            .map(|(ib, cb)| (1.0 - a) * ib + a * cb)
            .collect()
    }
}

impl Sampler for ProgressivelyBalanced {
    fn epoch_indices(&mut self, epoch: usize, rng: &mut StdRng) -> Vec<usize> {
        let p = self.probs_at(epoch);
        let n = self.by_class.iter().map(Vec::len).sum();
        draw(&self.by_class, &p, n, rng)
    }
}

/// `m` draws from `0..n` with replacement (a bootstrap replicate), in draw order.
pub fn bootstrap_indices(n: usize, m: usize, rng: &mut StdRng) -> Vec<usize> {
    (0..m).map(|_| rng.random_range(0..n)).collect()
}

/// Bagging (Breiman 1996): one bootstrap replicate of size n drawn at construction and kept for
/// the whole training run; each epoch visits that bag (duplicates included) in a new random order.
#[derive(Clone, Debug)]
pub struct Bootstrap {
    bag: Vec<usize>,
    n: usize,
}

impl Bootstrap {
    pub fn new(n: usize, rng: &mut StdRng) -> Result<Self> {
        ensure!(n > 0, "cannot bootstrap an empty dataset");
        Ok(Bootstrap {
            bag: bootstrap_indices(n, n, rng),
            n,
        })
    }
    /// The replicate's rows, with repeats.
    pub fn bag(&self) -> &[usize] {
        &self.bag
    }
    /// Rows never drawn (about 36.8% of them), for out-of-bag estimates.
    pub fn out_of_bag(&self) -> Vec<usize> {
        let mut seen = vec![false; self.n];
        for &i in &self.bag {
            seen[i] = true;
        }
        (0..self.n).filter(|&i| !seen[i]).collect()
    }
}

impl Sampler for Bootstrap {
    fn epoch_indices(&mut self, _epoch: usize, rng: &mut StdRng) -> Vec<usize> {
        let mut v = self.bag.clone();
        v.shuffle(rng);
        v
    }
}
