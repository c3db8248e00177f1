//! Seeded train/validation splits and the clean, class-balanced meta set of L2RW/MWN/MLNT.

use anyhow::{ensure, Result};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

/// Random split of `0..n` into (train, val) with `n_val` validation rows; both sorted.
pub fn train_val(n: usize, n_val: usize, rng: &mut StdRng) -> Result<(Vec<usize>, Vec<usize>)> {
    ensure!(
        n_val <= n,
        "validation size {n_val} exceeds the {n} rows available"
    );
    let mut idx: Vec<usize> = (0..n).collect();
    idx.shuffle(rng);
    let mut val = idx[..n_val].to_vec();
    let mut train = idx[n_val..].to_vec();
    val.sort_unstable();
    train.sort_unstable();
    Ok((train, val))
}

/// Draws `k_per_class` random rows of every class 0..=max(label) as the meta set; returns
/// (meta, rest), both sorted and disjoint, together covering all rows. Errors if a class has
/// fewer than `k_per_class` rows. Draw it from the clean labels, before corrupting the rest.
pub fn balanced_meta_set(
    labels: &[u32],
    k_per_class: usize,
    rng: &mut StdRng,
) -> Result<(Vec<usize>, Vec<usize>)> {
    let num_classes = labels.iter().map(|&l| l as usize + 1).max().unwrap_or(0);
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); num_classes];
    for (i, &l) in labels.iter().enumerate() {
        by_class[l as usize].push(i);
    }
    let mut meta = Vec::with_capacity(k_per_class * num_classes);
    for (c, idx) in by_class.iter_mut().enumerate() {
        ensure!(
            idx.len() >= k_per_class,
            "meta set: class {c} has {} rows, fewer than the {k_per_class} per class asked for",
            idx.len()
        );
        idx.shuffle(rng);
        meta.extend_from_slice(&idx[..k_per_class]);
    }
    meta.sort_unstable();
    let mut in_meta = vec![false; labels.len()];
    for &i in &meta {
        in_meta[i] = true;
    }
    let rest = (0..labels.len()).filter(|&i| !in_meta[i]).collect();
    Ok((meta, rest))
}
