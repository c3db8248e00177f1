//! Rules that weight each example of a batch by a fixed rule, from the first step: inverse
//! class frequency, and random weights (the paper's control for L2RW).

use anyhow::{Context, Result};
use candle_core::Tensor;
use rand_distr::{Distribution, StandardNormal};
use zoo_models::loss::{self, Reduction};
use zoo_models::meta::InnerForward;

use crate::reweight::rule::{RuleStep, StepRule};

/// Inverse-frequency class weights `N / (C·n_c)` (0 for empty classes), mean weight 1 per example.
pub fn proportional_class_weights(counts: &[usize]) -> Vec<f64> {
    let n: usize = counts.iter().sum();
    let c = counts.iter().filter(|&&k| k > 0).count().max(1);
    counts
        .iter()
        .map(|&k| {
            if k == 0 {
                0.0
            } else {
                n as f64 / (c * k) as f64
            }
        })
        .collect()
}

/// `Σ w_i ℓ_i` with weights that sum to 1, and the weights for the diagnostics.
fn weighted_sum(logits: &Tensor, labels: &Tensor, w: Tensor) -> Result<(Tensor, Option<Tensor>)> {
    let l = loss::weighted_ce(logits, labels, &w.to_dtype(logits.dtype())?, Reduction::Sum)?;
    Ok((l, Some(w)))
}

/// Each example weighted by the inverse frequency of its class ([`proportional_class_weights`]
/// of the training set), normalised to sum 1 over the batch.
pub struct ClassWeights(Vec<f32>);

impl ClassWeights {
    /// Weights from the training set's class counts.
    pub fn new(counts: &[usize]) -> Self {
        Self(
            proportional_class_weights(counts)
                .iter()
                .map(|&w| w as f32)
                .collect(),
        )
    }
}

impl StepRule for ClassWeights {
    fn in_warmup(&self) -> bool {
        true
    }

    fn loss(&mut self, logits: &Tensor, labels: &Tensor) -> Result<(Tensor, Option<Tensor>)> {
        // Normalised over the batch (as L2RW's weights are): unnormalised, one minority example
        // at 0.995 carries 100× a plain example's gradient and SGD with momentum diverges.
        let y = labels.to_vec1::<u32>()?;
        let w: Vec<f32> = y.iter().map(|&c| self.0[c as usize]).collect();
        let s: f32 = w.iter().sum::<f32>().max(f32::MIN_POSITIVE);
        let w: Vec<f32> = w.iter().map(|x| x / s).collect();
        let w = Tensor::from_vec(w, y.len(), labels.device())?;
        weighted_sum(logits, labels, w)
    }
}

/// Random example weights `|N(0,1)|`, normalised to sum 1, drawn from the training stream
/// before the forward pass (the paper's "Random" row).
#[derive(Default)]
pub struct RandomWeights(Option<Tensor>);

impl StepRule for RandomWeights {
    fn in_warmup(&self) -> bool {
        true
    }

    fn prepare(&mut self, s: RuleStep<'_>) -> Result<Option<InnerForward>> {
        let n = s.labels.dims1()?;
        let w: Vec<f64> = (0..n)
            .map(|_| StandardNormal.sample(s.rng))
            .map(|x: f64| x.abs())
            .collect();
        let sum: f64 = w.iter().sum::<f64>().max(f64::MIN_POSITIVE);
        let w: Vec<f32> = w.iter().map(|x| (x / sum) as f32).collect();
        self.0 = Some(Tensor::from_vec(w, n, s.labels.device())?);
        Ok(None)
    }

    fn loss(&mut self, logits: &Tensor, labels: &Tensor) -> Result<(Tensor, Option<Tensor>)> {
        let w = self
            .0
            .take()
            .context("random weights: loss before prepare")?;
        weighted_sum(logits, labels, w)
    }
}
