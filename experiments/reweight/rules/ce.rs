//! Rules whose loss is a fixed function of the logits: mean CE (uniform or class-balanced
//! sampling), focal loss and class-balanced CE.

use anyhow::Result;
use candle_core::Tensor;
use zoo_models::loss::{self, Reduction};

use crate::reweight::rule::{Sampling, StepRule};

/// Mean cross-entropy, uniform sampling ("baseline", "CE").
pub struct Plain;

impl StepRule for Plain {
    fn loss(&mut self, logits: &Tensor, labels: &Tensor) -> Result<(Tensor, Option<Tensor>)> {
        Ok((loss::cross_entropy(logits, labels, Reduction::Mean)?, None))
    }
}

/// Mean cross-entropy on class-balanced resampling: a class uniformly, then one of its rows.
pub struct Resample;

impl StepRule for Resample {
    fn sampling(&self) -> Sampling {
        Sampling::ClassBalanced
    }

    fn loss(&mut self, logits: &Tensor, labels: &Tensor) -> Result<(Tensor, Option<Tensor>)> {
        Plain.loss(logits, labels)
    }
}

/// Focal loss (Lin et al. 2017) with this γ, mean over the batch.
pub struct Focal(pub f64);

impl StepRule for Focal {
    fn loss(&mut self, logits: &Tensor, labels: &Tensor) -> Result<(Tensor, Option<Tensor>)> {
        Ok((loss::focal(logits, labels, self.0, Reduction::Mean)?, None))
    }
}

/// Class-balanced CE (Cui et al. 2019) with these per-class weights, mean over the batch.
pub struct ClassBalancedCe(pub Vec<f64>);

impl StepRule for ClassBalancedCe {
    fn loss(&mut self, logits: &Tensor, labels: &Tensor) -> Result<(Tensor, Option<Tensor>)> {
        let l = loss::class_balanced_ce(logits, labels, &self.0, Reduction::Mean)?;
        Ok((l, None))
    }
}
