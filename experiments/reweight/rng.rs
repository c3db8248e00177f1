//! Role-seeded generators and random subsets: every run of a seed draws its data, initial weights
//! and auxiliary streams from generators named by role, so paired methods see the same data.

use rand::rngs::StdRng;
use rand::seq::index::sample;
use rand::SeedableRng;

/// FNV-1a of `bytes` (stable across Rust versions, unlike `DefaultHasher`).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// A generator for one role of one seed ("lenet", "mnist-data-0.995"…): unrelated streams per
/// role, and the same stream for every method of a seed (paired comparisons: same data, same init).
pub fn role_rng(seed: u64, role: &str) -> StdRng {
    StdRng::seed_from_u64(fnv1a(role.as_bytes()) ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// Draw `k` distinct rows of `0..n` (sorted), for random subsets.
pub fn random_subset(n: usize, k: usize, rng: &mut StdRng) -> Vec<usize> {
    let mut v = sample(rng, n, k.min(n)).into_vec();
    v.sort_unstable();
    v
}
