//! Label corruptions and class-imbalance subsampling, as the papers define them.
//!
//! Every noise function draws one Bernoulli(rate) per example (as the Meta-Weight-Net and L2RW
//! reference code do), so the realised rate varies around the nominal one by sampling error, and
//! returns the new labels with the mask of rows whose label actually changed.

use anyhow::{bail, ensure, Result};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;

/// Corrupted labels and which rows differ from the clean ones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Corrupted {
    pub labels: Vec<u32>,
    pub changed: Vec<bool>,
}

impl Corrupted {
    pub fn num_changed(&self) -> usize {
        self.changed.iter().filter(|&&c| c).count()
    }
    /// Fraction of rows whose label changed.
    pub fn realised_rate(&self) -> f64 {
        if self.labels.is_empty() {
            0.0
        } else {
            self.num_changed() as f64 / self.labels.len() as f64
        }
    }
    fn from_fn(labels: &[u32], mut f: impl FnMut(u32) -> u32) -> Self {
        let new: Vec<u32> = labels.iter().map(|&l| f(l)).collect();
        let changed = new.iter().zip(labels).map(|(a, b)| a != b).collect();
        Corrupted {
            labels: new,
            changed,
        }
    }
}

fn check_rate(rate: f64) -> Result<()> {
    ensure!(
        rate.is_finite() && (0.0..=1.0).contains(&rate),
        "noise rate {rate} must lie in [0, 1]"
    );
    Ok(())
}

fn check_labels(labels: &[u32], num_classes: usize) -> Result<()> {
    ensure!(
        num_classes >= 2,
        "label noise needs at least 2 classes, got {num_classes}"
    );
    if let Some(&l) = labels.iter().find(|&&l| l as usize >= num_classes) {
        bail!("label {l} outside 0..{num_classes}");
    }
    Ok(())
}

/// Checks `rate` and `labels`, then draws `u ~ U[0, 1)` for every row in order (so the stream
/// does not depend on the labels) and, where `u < rate`, replaces its label `l` by
/// `new(l, rng)` (which may draw further).
fn flip_each(
    labels: &[u32],
    num_classes: usize,
    rate: f64,
    rng: &mut StdRng,
    mut new: impl FnMut(u32, &mut StdRng) -> u32,
) -> Result<Corrupted> {
    check_rate(rate)?;
    check_labels(labels, num_classes)?;
    Ok(Corrupted::from_fn(labels, |l| {
        if rng.random::<f64>() < rate {
            new(l, rng)
        } else {
            l
        }
    }))
}

/// Uniform noise, Meta-Weight-Net convention: with probability `rate` the label is redrawn
/// uniformly from all `num_classes` classes, the true one included, so the expected fraction of
/// changed labels is `rate·(C−1)/C`.
pub fn uniform_any(
    labels: &[u32],
    num_classes: usize,
    rate: f64,
    rng: &mut StdRng,
) -> Result<Corrupted> {
    flip_each(labels, num_classes, rate, rng, |_, rng| {
        rng.random_range(0..num_classes as u32)
    })
}

/// Uniform noise, L2RW / symmetric-flip convention: with probability `rate` the label becomes one
/// of the other `C−1` classes uniformly, so the expected changed fraction is `rate`.
pub fn uniform_other(
    labels: &[u32],
    num_classes: usize,
    rate: f64,
    rng: &mut StdRng,
) -> Result<Corrupted> {
    flip_each(labels, num_classes, rate, rng, |l, rng| {
        let k = rng.random_range(0..num_classes as u32 - 1);
        if k >= l {
            k + 1
        } else {
            k
        }
    })
}

/// Pair flip: with probability `rate` class c becomes (c+1) mod C.
pub fn pair_flip(
    labels: &[u32],
    num_classes: usize,
    rate: f64,
    rng: &mut StdRng,
) -> Result<Corrupted> {
    let c = num_classes as u32;
    flip_each(labels, num_classes, rate, rng, |l, _| (l + 1) % c)
}

/// Background flip (L2RW §5.2): with probability `rate` a label becomes the single `background`
/// class; rows already of that class cannot change.
pub fn background_flip(
    labels: &[u32],
    num_classes: usize,
    rate: f64,
    background: u32,
    rng: &mut StdRng,
) -> Result<Corrupted> {
    ensure!(
        (background as usize) < num_classes,
        "background class {background} outside 0..{num_classes}"
    );
    flip_each(labels, num_classes, rate, rng, |_, _| background)
}

/// CIFAR-10 asymmetric noise (Patrini et al.): with probability `rate`, truck→automobile,
/// bird→airplane, deer→horse, cat→dog, dog→cat; other classes are never changed.
pub fn cifar10_asymmetric(labels: &[u32], rate: f64, rng: &mut StdRng) -> Result<Corrupted> {
    flip_each(labels, 10, rate, rng, |l, _| match l {
        9 => 1,
        2 => 0,
        4 => 7,
        3 => 5,
        5 => 3,
        _ => l,
    })
}

/// Long-tail profile n_c = ⌊n_max · IF^(−c/(C−1))⌋ (CIFAR-LT, Cao et al. 2019): class 0 keeps
/// `n_max`, class C−1 keeps ⌊n_max/IF⌋.
pub fn long_tail_profile(n_max: usize, num_classes: usize, imbalance_factor: f64) -> Vec<usize> {
    if num_classes == 1 {
        return vec![n_max];
    }
    (0..num_classes)
        .map(|c| {
            let e = -(c as f64) / (num_classes as f64 - 1.0);
            (n_max as f64 * imbalance_factor.powf(e)).floor() as usize
        })
        .collect()
}

/// Step profile (Cao et al.): the first ⌊C/2⌋ classes keep `n_max`, the rest ⌊n_max/ρ⌋.
pub fn step_profile(n_max: usize, num_classes: usize, ratio: f64) -> Vec<usize> {
    (0..num_classes)
        .map(|c| {
            if c < num_classes / 2 {
                n_max
            } else {
                (n_max as f64 / ratio).floor() as usize
            }
        })
        .collect()
}

fn check_factor(f: f64, what: &str) -> Result<()> {
    ensure!(
        f.is_finite() && f >= 1.0,
        "{what} {f} must be a finite number >= 1"
    );
    Ok(())
}

/// Draws `profile[c]` random rows of each class c; returns them sorted (original order kept).
pub fn subsample_to_profile(
    labels: &[u32],
    profile: &[usize],
    rng: &mut StdRng,
) -> Result<Vec<usize>> {
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); profile.len()];
    for (i, &l) in labels.iter().enumerate() {
        let l = l as usize;
        ensure!(l < profile.len(), "label {l} outside 0..{}", profile.len());
        by_class[l].push(i);
    }
    let mut out = Vec::with_capacity(profile.iter().sum());
    for (c, idx) in by_class.iter_mut().enumerate() {
        ensure!(
            idx.len() >= profile[c],
            "class {c} has {} rows, the imbalance profile asks for {}",
            idx.len(),
            profile[c]
        );
        idx.shuffle(rng);
        out.extend_from_slice(&idx[..profile[c]]);
    }
    out.sort_unstable();
    Ok(out)
}

/// `profile(n_max, num_classes, factor)` with n_max the smallest class count of `labels` (so
/// every class can supply its quota: 5000 on balanced CIFAR), after checking the factor (`what`).
fn profile_of(
    labels: &[u32],
    num_classes: usize,
    factor: f64,
    what: &str,
    profile: fn(usize, usize, f64) -> Vec<usize>,
) -> Result<Vec<usize>> {
    check_factor(factor, what)?;
    check_labels(labels, num_classes)?;
    let counts = crate::dataset::class_counts(labels, num_classes);
    let n_max = counts.into_iter().min().unwrap_or(0);
    Ok(profile(n_max, num_classes, factor))
}

/// Long-tailed subset (CIFAR-LT): indices following [`long_tail_profile`] with n_max the smallest
/// class count of `labels`.
pub fn long_tail_indices(
    labels: &[u32],
    num_classes: usize,
    imbalance_factor: f64,
    rng: &mut StdRng,
) -> Result<Vec<usize>> {
    let what = "imbalance factor";
    let profile = profile_of(
        labels,
        num_classes,
        imbalance_factor,
        what,
        long_tail_profile,
    )?;
    subsample_to_profile(labels, &profile, rng)
}

/// Step-imbalanced subset following [`step_profile`].
pub fn step_imbalance(
    labels: &[u32],
    num_classes: usize,
    ratio: f64,
    rng: &mut StdRng,
) -> Result<Vec<usize>> {
    let profile = profile_of(
        labels,
        num_classes,
        ratio,
        "step imbalance ratio",
        step_profile,
    )?;
    subsample_to_profile(labels, &profile, rng)
}

/// L2RW's imbalanced MNIST 4-vs-9 set: `n_total` images of digits 4 and 9 where 9 (the majority)
/// makes up `majority` of them (round(n_total·majority) nines). Returns sorted MNIST row indices and
/// binary labels: **4 → 0, 9 → 1** (the task is binary, so the model has 2 outputs).
pub fn mnist_4v9(
    labels: &[u32],
    n_total: usize,
    majority: f64,
    rng: &mut StdRng,
) -> Result<(Vec<usize>, Vec<u32>)> {
    ensure!(
        majority.is_finite() && (0.0..=1.0).contains(&majority),
        "majority proportion {majority} must lie in [0, 1]"
    );
    let n9 = (n_total as f64 * majority).round() as usize;
    let n4 = n_total - n9;
    let mut fours: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == 4).collect();
    let mut nines: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == 9).collect();
    ensure!(
        fours.len() >= n4,
        "need {n4} images of 4, have {}",
        fours.len()
    );
    ensure!(
        nines.len() >= n9,
        "need {n9} images of 9, have {}",
        nines.len()
    );
    fours.shuffle(rng);
    nines.shuffle(rng);
    let mut idx: Vec<usize> = fours[..n4].iter().chain(&nines[..n9]).copied().collect();
    idx.sort_unstable();
    let bin = idx.iter().map(|&i| u32::from(labels[i] == 9)).collect();
    Ok((idx, bin))
}

/// All 4s and 9s of `labels` (e.g. the balanced test set of the 4-vs-9 task), relabelled 4 → 0, 9 → 1.
pub fn relabel_4v9(labels: &[u32]) -> (Vec<usize>, Vec<u32>) {
    let idx: Vec<usize> = (0..labels.len())
        .filter(|&i| labels[i] == 4 || labels[i] == 9)
        .collect();
    let bin = idx.iter().map(|&i| u32::from(labels[i] == 9)).collect();
    (idx, bin)
}

/// A label-noise setting, parsed from `none`, `uniform:R` (always a different class),
/// `uniform_any:R` (true class may be drawn, MWN), `pair:R`, `background:R[:CLASS]` (class 0 by
/// default), `asym:R` (CIFAR-10 only).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub enum NoiseSpec {
    None,
    UniformOther(f64),
    UniformAny(f64),
    Pair(f64),
    Background { rate: f64, class: u32 },
    Cifar10Asym(f64),
}

fn parse_num(s: &str, what: &str, spec: &str) -> Result<f64> {
    // Messages are self-contained (no context chain): clap prints only the outer error.
    s.trim()
        .parse::<f64>()
        .map_err(|_| anyhow::anyhow!("bad spec '{spec}': {what} '{s}' is not a number"))
}

impl std::str::FromStr for NoiseSpec {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        let parts: Vec<&str> = s.trim().split(':').collect();
        let kind = parts[0].to_ascii_lowercase();
        if kind == "none" && parts.len() == 1 {
            return Ok(NoiseSpec::None);
        }
        let usage = "expected none, uniform:R, uniform_any:R, pair:R, background:R[:CLASS] or asym:R with R in [0, 1]";
        let max_parts = if kind == "background" { 3 } else { 2 };
        if parts.len() < 2 || parts.len() > max_parts {
            bail!("bad noise spec '{s}': {usage}");
        }
        let rate = parse_num(parts[1], "rate", s)?;
        check_rate(rate).map_err(|e| anyhow::anyhow!("bad noise spec '{s}': {e}"))?;
        Ok(match kind.as_str() {
            "uniform" | "uniform_other" | "symmetric" => NoiseSpec::UniformOther(rate),
            "uniform_any" => NoiseSpec::UniformAny(rate),
            "pair" | "pairflip" => NoiseSpec::Pair(rate),
            "background" => {
                let class = match parts.get(2) {
                    Some(c) => c.trim().parse::<u32>().map_err(|_| {
                        anyhow::anyhow!("bad noise spec '{s}': class '{c}' is not a class index")
                    })?,
                    None => 0,
                };
                NoiseSpec::Background { rate, class }
            }
            "asym" | "asymmetric" => NoiseSpec::Cifar10Asym(rate),
            _ => bail!("bad noise spec '{s}': unknown kind '{}'; {usage}", parts[0]),
        })
    }
}

impl std::fmt::Display for NoiseSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoiseSpec::None => write!(f, "none"),
            NoiseSpec::UniformOther(r) => write!(f, "uniform:{r}"),
            NoiseSpec::UniformAny(r) => write!(f, "uniform_any:{r}"),
            NoiseSpec::Pair(r) => write!(f, "pair:{r}"),
            NoiseSpec::Background { rate, class } => write!(f, "background:{rate}:{class}"),
            NoiseSpec::Cifar10Asym(r) => write!(f, "asym:{r}"),
        }
    }
}

impl NoiseSpec {
    /// Applies the noise; `asym` needs exactly 10 classes (CIFAR-10's).
    pub fn apply(&self, labels: &[u32], num_classes: usize, rng: &mut StdRng) -> Result<Corrupted> {
        match *self {
            NoiseSpec::None => Ok(Corrupted {
                labels: labels.to_vec(),
                changed: vec![false; labels.len()],
            }),
            NoiseSpec::UniformOther(r) => uniform_other(labels, num_classes, r, rng),
            NoiseSpec::UniformAny(r) => uniform_any(labels, num_classes, r, rng),
            NoiseSpec::Pair(r) => pair_flip(labels, num_classes, r, rng),
            NoiseSpec::Background { rate, class } => {
                background_flip(labels, num_classes, rate, class, rng)
            }
            NoiseSpec::Cifar10Asym(r) => {
                ensure!(
                    num_classes == 10,
                    "asym noise is defined for CIFAR-10's 10 classes, not {num_classes}"
                );
                cifar10_asymmetric(labels, r, rng)
            }
        }
    }
    /// Checks the spec against dataset `name` before any work: `asym` is CIFAR-10's class mapping
    /// and is refused elsewhere, plus the checks of [`NoiseSpec::validate`].
    pub fn validate_for_dataset(&self, name: &str, num_classes: usize) -> Result<()> {
        if matches!(self, NoiseSpec::Cifar10Asym(_)) && name != "cifar10" {
            bail!("asym noise is CIFAR-10's class mapping (truck->automobile, ...); not defined for '{name}'");
        }
        self.validate(num_classes)
    }
    /// Checks the spec against a class count before any work (asym needs 10, background class).
    pub fn validate(&self, num_classes: usize) -> Result<()> {
        match *self {
            NoiseSpec::Cifar10Asym(_) if num_classes != 10 => {
                bail!("asym noise is defined for CIFAR-10's 10 classes, not {num_classes}")
            }
            NoiseSpec::Background { class, .. } if class as usize >= num_classes => {
                bail!("background class {class} outside 0..{num_classes}")
            }
            _ => Ok(()),
        }
    }
}

/// A class-imbalance setting, parsed from `none`, `longtail:IF` or `step:RHO` (factors ≥ 1).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub enum ImbalanceSpec {
    None,
    LongTail(f64),
    Step(f64),
}

impl std::str::FromStr for ImbalanceSpec {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        let parts: Vec<&str> = s.trim().split(':').collect();
        let kind = parts[0].to_ascii_lowercase();
        if kind == "none" && parts.len() == 1 {
            return Ok(ImbalanceSpec::None);
        }
        let usage = "expected none, longtail:IF or step:RHO with a factor >= 1";
        if parts.len() != 2 {
            bail!("bad imbalance spec '{s}': {usage}");
        }
        let f = parse_num(parts[1], "factor", s)?;
        check_factor(f, "factor").map_err(|e| anyhow::anyhow!("bad imbalance spec '{s}': {e}"))?;
        Ok(match kind.as_str() {
            "longtail" | "long_tail" | "lt" => ImbalanceSpec::LongTail(f),
            "step" => ImbalanceSpec::Step(f),
            _ => bail!(
                "bad imbalance spec '{s}': unknown kind '{}'; {usage}",
                parts[0]
            ),
        })
    }
}

impl std::fmt::Display for ImbalanceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImbalanceSpec::None => write!(f, "none"),
            ImbalanceSpec::LongTail(x) => write!(f, "longtail:{x}"),
            ImbalanceSpec::Step(x) => write!(f, "step:{x}"),
        }
    }
}

impl ImbalanceSpec {
    /// Rows to keep (sorted); `None` keeps all.
    pub fn indices(
        &self,
        labels: &[u32],
        num_classes: usize,
        rng: &mut StdRng,
    ) -> Result<Vec<usize>> {
        match *self {
            ImbalanceSpec::None => Ok((0..labels.len()).collect()),
            ImbalanceSpec::LongTail(f) => long_tail_indices(labels, num_classes, f, rng),
            ImbalanceSpec::Step(f) => step_imbalance(labels, num_classes, f, rng),
        }
    }
}
