//! A round's training diagnostics: loss and error, and how the example weights fell on flagged
//! (corrupted / minority) and other rows.

use anyhow::Result;
use candle_core::{DType, Tensor};

use crate::runner::Metrics;

/// Sums over the steps of one round.
#[derive(Default)]
pub struct RoundStats {
    loss_sum: f64,
    errors: usize,
    seen: usize,
    w_flag: f64,
    n_flag: usize,
    w_rest: f64,
    n_rest: usize,
    /// Effective sample size (Σw)²/Σw² as a fraction of the batch, and the fraction of examples
    /// with a positive weight, summed over weighted steps.
    ess_sum: f64,
    pos_sum: f64,
    weighted_steps: usize,
}

impl RoundStats {
    /// One step's loss and training errors on `n` rows.
    pub fn add_step(&mut self, loss: f64, errors: usize, n: usize) {
        self.loss_sum += loss;
        self.errors += errors;
        self.seen += n;
    }

    /// One step's example weights `w` (summing to 1) of `rows`: mean weight of flagged vs other
    /// rows relative to uniform (1/n), effective sample size, positive fraction.
    pub fn add_weights(&mut self, w: &Tensor, rows: &[usize], flagged: &[bool]) -> Result<()> {
        let n = rows.len();
        let wv: Vec<f32> = w.to_dtype(DType::F32)?.to_vec1()?;
        let (s1, s2) = wv.iter().fold((0.0, 0.0), |(a, b), &x| {
            (a + x as f64, b + (x as f64) * (x as f64))
        });
        if s2 > 0.0 {
            self.ess_sum += s1 * s1 / s2 / n as f64;
            self.pos_sum += wv.iter().filter(|&&x| x > 0.0).count() as f64 / n as f64;
            self.weighted_steps += 1;
        }
        for (&r, &wi) in rows.iter().zip(&wv) {
            let rel = wi as f64 * n as f64;
            if flagged[r] {
                self.w_flag += rel;
                self.n_flag += 1;
            } else {
                self.w_rest += rel;
                self.n_rest += 1;
            }
        }
        Ok(())
    }

    /// The round's metrics over `steps` steps that took `secs`, then the rule's.
    pub fn metrics(&self, steps: usize, secs: f64, rule: Metrics) -> Metrics {
        let mean = |s: f64, n: usize| if n > 0 { s / n as f64 } else { f64::NAN };
        let mut m = Metrics::new()
            .with("loss", self.loss_sum / steps as f64)
            .with("error", self.errors as f64 / self.seen.max(1) as f64)
            .with("step_ms", 1e3 * secs / steps as f64);
        if self.n_flag + self.n_rest > 0 {
            m.insert("weight_flagged", mean(self.w_flag, self.n_flag));
            m.insert("weight_other", mean(self.w_rest, self.n_rest));
            m.insert("flagged_seen", self.n_flag as f64);
        }
        if self.weighted_steps > 0 {
            m.insert("weight_ess", self.ess_sum / self.weighted_steps as f64);
            m.insert("weight_positive", self.pos_sum / self.weighted_steps as f64);
        }
        for (k, v) in rule.iter() {
            m.insert(k, v);
        }
        // A flagged row never seen this round leaves a NaN, which the runner would reject.
        if m.get("weight_flagged").is_some_and(f64::is_nan) {
            m.insert("weight_flagged", 0.0);
        }
        m
    }
}
