//! Evaluation metrics, computed on the CPU in f64 from logits.
//!
//! Collect an evaluation set's logits batch by batch into [`Predictions`] (softmax in f64 with the
//! log-sum-exp trick, so saturated f32 logits do not produce `log 0`), then read any metric. The
//! free functions do the same for a single `(logits, labels)` pair of tensors.
//!
//! Ties in the arg-max go to the lowest class index (as `torch.argmax` on CPU).

use candle_core::{bail, DType, Result, Tensor};

/// Log-probabilities, predictions and labels of an evaluation set.
#[derive(Debug, Clone, Default)]
pub struct Predictions {
    num_classes: usize,
    log_probs: Vec<f64>,
    labels: Vec<u32>,
}

fn log_softmax_row(z: &[f64], out: &mut Vec<f64>) {
    let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let lse = m + z.iter().map(|&x| (x - m).exp()).sum::<f64>().ln();
    out.extend(z.iter().map(|&x| x - lse));
}

fn argmax(row: &[f64]) -> usize {
    let mut best = 0;
    for (i, &x) in row.iter().enumerate() {
        if x > row[best] {
            best = i;
        }
    }
    best
}

impl Predictions {
    /// An empty set for `num_classes` classes.
    pub fn new(num_classes: usize) -> Self {
        Self {
            num_classes,
            ..Default::default()
        }
    }

    /// From `(n, C)` logits and `(n,)` integer labels.
    pub fn from_logits(logits: &Tensor, labels: &Tensor) -> Result<Self> {
        let (_, c) = logits.dims2()?;
        let mut p = Self::new(c);
        p.push(logits, labels)?;
        Ok(p)
    }

    /// From per-class log-probabilities (row-major `n × C`) and labels, e.g. an ensemble's
    /// averaged prediction. Rows are renormalised (log-softmax), so unnormalised scores work too.
    pub fn from_log_scores(num_classes: usize, scores: &[f64], labels: Vec<u32>) -> Result<Self> {
        if num_classes == 0 || scores.len() != labels.len() * num_classes {
            bail!(
                "{} scores for {} labels and {num_classes} classes",
                scores.len(),
                labels.len()
            )
        }
        if let Some(&y) = labels.iter().find(|&&y| y as usize >= num_classes) {
            bail!("label {y} out of range for {num_classes} classes")
        }
        let mut log_probs = Vec::with_capacity(scores.len());
        for row in scores.chunks(num_classes) {
            log_softmax_row(row, &mut log_probs);
        }
        Ok(Self {
            num_classes,
            log_probs,
            labels,
        })
    }

    /// Appends a batch of `(b, C)` logits with `(b,)` labels.
    pub fn push(&mut self, logits: &Tensor, labels: &Tensor) -> Result<()> {
        let (b, c) = logits.dims2()?;
        if c != self.num_classes {
            bail!("logits have {c} classes, expected {}", self.num_classes)
        }
        let y = labels.to_dtype(DType::U32)?.to_vec1::<u32>()?;
        if y.len() != b {
            bail!("{} labels for a batch of {b}", y.len())
        }
        if let Some(&bad) = y.iter().find(|&&l| l as usize >= c) {
            bail!("label {bad} out of range for {c} classes")
        }
        let z = crate::readout::vec_f64(&logits.detach())?;
        if z.iter().any(|x| !x.is_finite()) {
            bail!("non-finite logits in evaluation")
        }
        for row in z.chunks(c) {
            log_softmax_row(row, &mut self.log_probs);
        }
        self.labels.extend(y);
        Ok(())
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when no example was added.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// The labels.
    pub fn labels(&self) -> &[u32] {
        &self.labels
    }

    /// Log-probabilities of example `i`.
    pub fn log_probs(&self, i: usize) -> &[f64] {
        &self.log_probs[i * self.num_classes..(i + 1) * self.num_classes]
    }

    /// Arg-max class per example.
    pub fn predicted(&self) -> Vec<u32> {
        (0..self.len())
            .map(|i| argmax(self.log_probs(i)) as u32)
            .collect()
    }

    /// Number of misclassified examples.
    pub fn error_count(&self) -> usize {
        self.predicted()
            .iter()
            .zip(&self.labels)
            .filter(|(p, y)| p != y)
            .count()
    }

    /// Fraction misclassified (0 for an empty set).
    pub fn error_rate(&self) -> f64 {
        if self.is_empty() {
            0.0
        } else {
            self.error_count() as f64 / self.len() as f64
        }
    }

    /// Top-1 accuracy (1 − error rate).
    pub fn accuracy(&self) -> f64 {
        1.0 - self.error_rate()
    }

    /// Accuracy of each class over its test examples; `None` for a class absent from the set.
    pub fn per_class_accuracy(&self) -> Vec<Option<f64>> {
        let mut correct = vec![0usize; self.num_classes];
        let mut total = vec![0usize; self.num_classes];
        for (p, &y) in self.predicted().iter().zip(&self.labels) {
            total[y as usize] += 1;
            if *p == y {
                correct[y as usize] += 1;
            }
        }
        correct
            .iter()
            .zip(&total)
            .map(|(&c, &t)| (t > 0).then(|| c as f64 / t as f64))
            .collect()
    }

    /// Mean of the per-class accuracies over the classes present (balanced accuracy).
    pub fn mean_class_accuracy(&self) -> f64 {
        let acc: Vec<f64> = self.per_class_accuracy().into_iter().flatten().collect();
        if acc.is_empty() {
            0.0
        } else {
            acc.iter().sum::<f64>() / acc.len() as f64
        }
    }

    /// Many/medium/few-shot accuracy (Kang et al. 2020; Liu et al. 2019): classes with more than
    /// 100 training examples are many-shot, 20–100 medium-shot, fewer than 20 few-shot; each
    /// group's accuracy is the mean of its classes' accuracies (classes absent from the
    /// evaluation set are left out).
    pub fn shot_accuracy(&self, train_class_counts: &[usize]) -> Result<ShotAccuracy> {
        if train_class_counts.len() != self.num_classes {
            bail!(
                "{} training class counts for {} classes",
                train_class_counts.len(),
                self.num_classes
            )
        }
        let mut groups: [Vec<f64>; 3] = Default::default();
        for (acc, &n) in self.per_class_accuracy().iter().zip(train_class_counts) {
            if let Some(a) = acc {
                let g = if n > 100 {
                    0
                } else if n >= 20 {
                    1
                } else {
                    2
                };
                groups[g].push(*a);
            }
        }
        let mean = |v: &Vec<f64>| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
        Ok(ShotAccuracy {
            many: mean(&groups[0]),
            medium: mean(&groups[1]),
            few: mean(&groups[2]),
            num_classes: [groups[0].len(), groups[1].len(), groups[2].len()],
        })
    }

    /// Mean negative log-likelihood of the true labels (nats).
    pub fn nll(&self) -> f64 {
        if self.is_empty() {
            return 0.0;
        }
        let s: f64 = (0..self.len())
            .map(|i| -self.log_probs(i)[self.labels[i] as usize])
            .sum();
        s / self.len() as f64
    }

    /// Mean entropy of the predictive distributions (nats).
    pub fn mean_entropy(&self) -> f64 {
        if self.is_empty() {
            return 0.0;
        }
        let s: f64 = self.entropies().into_iter().sum();
        s / self.len() as f64
    }

    /// The entropy of each example's predictive distribution (nats), in order.
    pub fn entropies(&self) -> Vec<f64> {
        (0..self.len())
            .map(|i| {
                self.log_probs(i)
                    .iter()
                    .map(|&lp| {
                        if lp == f64::NEG_INFINITY {
                            0.0
                        } else {
                            -lp.exp() * lp
                        }
                    })
                    .sum::<f64>()
            })
            .collect()
    }

    /// Expected calibration error and reliability-diagram data (Guo et al. 2017) with `num_bins`
    /// equal-width confidence bins; bin `b` holds confidences in `(b/B, (b+1)/B]` (the first bin
    /// also holds 0). Confidence is the arg-max probability.
    /// `ECE = Σ_b (n_b / n)·|acc_b − conf_b|`.
    pub fn reliability(&self, num_bins: usize) -> Result<Reliability> {
        if num_bins == 0 {
            bail!("ECE needs at least one bin")
        }
        let mut count = vec![0usize; num_bins];
        let mut conf_sum = vec![0f64; num_bins];
        let mut correct = vec![0usize; num_bins];
        for i in 0..self.len() {
            let lp = self.log_probs(i);
            let k = argmax(lp);
            let conf = lp[k].exp();
            let b = ((conf * num_bins as f64).ceil() as usize).clamp(1, num_bins) - 1;
            count[b] += 1;
            conf_sum[b] += conf;
            if k as u32 == self.labels[i] {
                correct[b] += 1;
            }
        }
        let n = self.len().max(1) as f64;
        let mut ece = 0.0;
        let bins = (0..num_bins)
            .map(|b| {
                let (confidence, accuracy) = if count[b] > 0 {
                    (
                        conf_sum[b] / count[b] as f64,
                        correct[b] as f64 / count[b] as f64,
                    )
                } else {
                    (0.0, 0.0)
                };
                ece += count[b] as f64 / n * (accuracy - confidence).abs();
                ReliabilityBin {
                    lower: b as f64 / num_bins as f64,
                    upper: (b + 1) as f64 / num_bins as f64,
                    confidence,
                    accuracy,
                    count: count[b],
                }
            })
            .collect();
        Ok(Reliability { ece, bins })
    }

    /// ECE with the customary 15 bins.
    pub fn ece(&self) -> f64 {
        // 15 > 0, so reliability cannot fail.
        self.reliability(ECE_BINS)
            .map(|r| r.ece)
            .unwrap_or(f64::NAN)
    }
}

/// The number of bins of [`Predictions::ece`] (Guo et al. 2017).
pub const ECE_BINS: usize = 15;

/// Many/medium/few-shot accuracies; `None` where a group has no class.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShotAccuracy {
    /// Classes with more than 100 training examples.
    pub many: Option<f64>,
    /// Classes with 20–100 training examples.
    pub medium: Option<f64>,
    /// Classes with fewer than 20 training examples.
    pub few: Option<f64>,
    /// Number of classes in each group (many, medium, few).
    pub num_classes: [usize; 3],
}

/// One bin of a reliability diagram.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReliabilityBin {
    /// Lower edge (exclusive, except for the first bin).
    pub lower: f64,
    /// Upper edge (inclusive).
    pub upper: f64,
    /// Mean confidence of the examples in the bin (0 if empty).
    pub confidence: f64,
    /// Accuracy of the examples in the bin (0 if empty).
    pub accuracy: f64,
    /// Number of examples in the bin.
    pub count: usize,
}

/// ECE and the per-bin data behind it.
#[derive(Debug, Clone, PartialEq)]
pub struct Reliability {
    /// Expected calibration error.
    pub ece: f64,
    /// Equal-width bins from 0 to 1.
    pub bins: Vec<ReliabilityBin>,
}

/// Number of misclassified examples.
pub fn error_count(logits: &Tensor, labels: &Tensor) -> Result<usize> {
    Ok(Predictions::from_logits(logits, labels)?.error_count())
}

/// Fraction misclassified.
pub fn error_rate(logits: &Tensor, labels: &Tensor) -> Result<f64> {
    Ok(Predictions::from_logits(logits, labels)?.error_rate())
}

/// Per-class accuracy (`None` for classes absent from `labels`).
pub fn per_class_accuracy(logits: &Tensor, labels: &Tensor) -> Result<Vec<Option<f64>>> {
    Ok(Predictions::from_logits(logits, labels)?.per_class_accuracy())
}

/// Many/medium/few-shot accuracy given the training set's class counts.
pub fn shot_accuracy(
    logits: &Tensor,
    labels: &Tensor,
    train_class_counts: &[usize],
) -> Result<ShotAccuracy> {
    Predictions::from_logits(logits, labels)?.shot_accuracy(train_class_counts)
}

/// Mean negative log-likelihood (nats).
pub fn nll(logits: &Tensor, labels: &Tensor) -> Result<f64> {
    Ok(Predictions::from_logits(logits, labels)?.nll())
}

/// Mean predictive entropy (nats) of `softmax(logits)`.
pub fn mean_entropy(logits: &Tensor) -> Result<f64> {
    let (b, _) = logits.dims2()?;
    let labels = Tensor::zeros(b, DType::U32, logits.device())?;
    Ok(Predictions::from_logits(logits, &labels)?.mean_entropy())
}

/// 15-bin ECE and reliability-diagram data.
pub fn ece(logits: &Tensor, labels: &Tensor) -> Result<Reliability> {
    Predictions::from_logits(logits, labels)?.reliability(ECE_BINS)
}
