//! The regularisers compared by Pereyra et al. (2017), as a parsed method name plus the values of
//! its hyper-parameters, and the training objective each one minimises.
//!
//! A method is a regulariser on the output distribution, optionally combined with dropout:
//! `none`, `dropout`, `ls_uniform`, `ls_unigram`, `cp`, `cp_annealed`, `cp_thresholded`, and
//! `dropout+<regulariser>` (e.g. `dropout+cp`). The losses themselves are
//! [`zoo_models::loss`]'s; this module only decides which one to call with which weight.

use std::fmt;
use std::str::FromStr;

use anyhow::{bail, ensure, Result};
use candle_core::Tensor;
use serde::{Deserialize, Serialize};
use zoo_models::loss::{self, BetaSchedule, Reduction, SmoothingPrior};

/// The output-distribution regulariser of a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Regulariser {
    /// Plain cross-entropy.
    None,
    /// Label smoothing with the uniform prior `u_c = 1/C` (Szegedy et al. 2016):
    /// CE against `(1 − ε)·onehot(y) + ε/C`, i.e. CE + ε·KL(u ‖ p) up to a constant.
    LsUniform,
    /// Label smoothing with the unigram prior `u_c` = training class frequency (Pereyra et al.
    /// 2017, §3.2).
    LsUnigram,
    /// Confidence penalty `CE − β·H(p)` (Pereyra et al. 2017, eq. 2): KL(p ‖ u) up to a constant.
    Cp,
    /// Confidence penalty whose weight ramps linearly from 0 to β (§3.1 "annealing"): weak early,
    /// so training converges quickly, strong near convergence, where overconfidence sets in.
    CpAnnealed,
    /// Hinge-thresholded penalty `CE + β·max(0, Γ − H(p))` (§3.1 "thresholding"): only outputs
    /// whose entropy fell below Γ are penalised. (The paper prints the hinge with a minus sign;
    /// with it the loss would *reward* low entropy, so we use the sign that penalises it.)
    CpThresholded,
}

impl Regulariser {
    const ALL: [(Regulariser, &'static str); 7] = [
        (Regulariser::None, "none"),
        (Regulariser::LsUniform, "ls_uniform"),
        (Regulariser::LsUnigram, "ls_unigram"),
        (Regulariser::Cp, "cp"),
        (Regulariser::CpAnnealed, "cp_annealed"),
        (Regulariser::CpThresholded, "cp_thresholded"),
        (Regulariser::None, "ce"),
    ];

    /// Name on the command line and in results.
    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(r, _)| *r == self)
            .map(|(_, s)| *s)
            .unwrap_or("none")
    }

    /// Uses the smoothing weight ε.
    pub fn uses_eps(self) -> bool {
        matches!(self, Regulariser::LsUniform | Regulariser::LsUnigram)
    }

    /// Uses the penalty weight β.
    pub fn uses_beta(self) -> bool {
        matches!(
            self,
            Regulariser::Cp | Regulariser::CpAnnealed | Regulariser::CpThresholded
        )
    }

    /// Uses the entropy threshold Γ.
    pub fn uses_threshold(self) -> bool {
        self == Regulariser::CpThresholded
    }
}

/// A method: a regulariser, with or without dropout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Method {
    /// Dropout in the network during training.
    pub dropout: bool,
    /// The loss's regulariser.
    pub reg: Regulariser,
}

impl Method {
    /// The baseline: cross-entropy, no dropout.
    pub const NONE: Method = Method {
        dropout: false,
        reg: Regulariser::None,
    };

    /// The methods this one's hyper-parameters can be inherited from: `dropout+cp` takes its
    /// dropout rates from `dropout` and its β from `cp`; `cp_thresholded` takes β from `cp`.
    pub fn parents(self) -> Vec<Method> {
        let mut p = Vec::new();
        if self.dropout && self.reg != Regulariser::None {
            p.push(Method {
                dropout: true,
                reg: Regulariser::None,
            });
            p.push(Method {
                dropout: false,
                reg: self.reg,
            });
        }
        if !self.dropout && self.reg == Regulariser::CpThresholded {
            p.push(Method {
                dropout: false,
                reg: Regulariser::Cp,
            });
        }
        p
    }

    /// Is this a combination with dropout (`dropout+…`)?
    pub fn is_combination(self) -> bool {
        self.dropout && self.reg != Regulariser::None
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.dropout, self.reg) {
            (false, r) => f.write_str(r.as_str()),
            (true, Regulariser::None) => f.write_str("dropout"),
            (true, r) => write!(f, "dropout+{}", r.as_str()),
        }
    }
}

impl FromStr for Method {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        let known = "none, dropout, ls_uniform, ls_unigram, cp, cp_annealed, cp_thresholded, or \
                     dropout+<one of these regularisers>";
        let mut dropout = false;
        let mut reg: Option<Regulariser> = None;
        for part in s.split('+').map(str::trim) {
            if part == "dropout" {
                ensure!(!dropout, "method {s:?}: dropout given twice");
                dropout = true;
                continue;
            }
            let Some((r, _)) = Regulariser::ALL.iter().find(|(_, n)| *n == part) else {
                bail!("unknown method {part:?} in {s:?}: expected {known}");
            };
            if reg.is_some() {
                bail!("method {s:?} combines two output regularisers; give at most one (plus dropout)");
            }
            reg = Some(*r);
        }
        let reg = reg.unwrap_or(Regulariser::None);
        if dropout && s.split('+').any(|p| matches!(p.trim(), "none" | "ce")) {
            bail!("method {s:?}: write `dropout`, not `dropout+none`");
        }
        Ok(Method { dropout, reg })
    }
}

impl TryFrom<String> for Method {
    type Error = anyhow::Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<Method> for String {
    fn from(m: Method) -> String {
        m.to_string()
    }
}

/// Parse a comma-separated method list (clap value parser for `--methods`).
pub fn parse_methods(s: &str) -> std::result::Result<Vec<Method>, String> {
    let mut out: Vec<Method> = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let m: Method = part.parse().map_err(|e: anyhow::Error| e.to_string())?;
        if out.contains(&m) {
            return Err(format!("method {m} is given twice"));
        }
        out.push(m);
    }
    if out.is_empty() {
        return Err("--methods: give at least one method".into());
    }
    Ok(out)
}

/// Dropout probabilities of the MLP (Srivastava et al. 2014 drop inputs and hidden units at
/// different rates).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DropoutRates {
    /// Probability of dropping an input pixel.
    pub input: f64,
    /// Probability of dropping a hidden unit.
    pub hidden: f64,
}

impl fmt::Display for DropoutRates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "p_in={} p_h={}", self.input, self.hidden)
    }
}

/// Values of a method's hyper-parameters; `None` where the method does not use one.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Hyper {
    /// Dropout rates (dropout methods).
    pub dropout: Option<DropoutRates>,
    /// Label-smoothing weight ε.
    pub eps: Option<f64>,
    /// Confidence-penalty weight β (the final β of the annealed schedule).
    pub beta: Option<f64>,
    /// Entropy threshold Γ in nats (thresholded penalty).
    pub threshold: Option<f64>,
    /// The method's own learning rate (the paper's dropout runs); `None`: the task's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
}

impl fmt::Display for Hyper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(d) = self.dropout {
            parts.push(d.to_string());
        }
        if let Some(e) = self.eps {
            parts.push(format!("ε={e}"));
        }
        if let Some(b) = self.beta {
            parts.push(format!("β={b}"));
        }
        if let Some(g) = self.threshold {
            parts.push(format!("Γ={g}"));
        }
        if let Some(lr) = self.lr {
            parts.push(format!("lr={lr}"));
        }
        if parts.is_empty() {
            f.write_str("—")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// The loss one training run minimises, resolved from a method and its hyper-parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum Objective {
    /// Cross-entropy.
    CrossEntropy,
    /// Label-smoothed cross-entropy.
    LabelSmoothing {
        /// Smoothing weight ε.
        eps: f64,
        /// The prior mixed into the targets.
        prior: SmoothingPrior,
    },
    /// Confidence penalty with a β schedule and an optional hinge threshold Γ.
    ConfidencePenalty {
        /// β per optimisation step.
        schedule: BetaSchedule,
        /// `Some(Γ)`: penalise only entropies below Γ.
        threshold: Option<f64>,
    },
}

impl Objective {
    /// The objective of `method` with `hyper`.
    ///
    /// * `class_counts`: training-set class counts (the unigram prior).
    /// * `total_steps`, `anneal_fraction`: the annealed penalty's β rises linearly from 0 at step
    ///   0 to β at step `round(anneal_fraction · total_steps)` and stays there.
    pub fn new(
        method: Method,
        hyper: &Hyper,
        class_counts: &[usize],
        total_steps: usize,
        anneal_fraction: f64,
    ) -> Result<Self> {
        let need = |v: Option<f64>, what: &str| -> Result<f64> {
            v.ok_or_else(|| anyhow::anyhow!("method {method} needs a value of {what}"))
        };
        Ok(match method.reg {
            Regulariser::None => Objective::CrossEntropy,
            Regulariser::LsUniform => Objective::LabelSmoothing {
                eps: need(hyper.eps, "ε")?,
                prior: SmoothingPrior::Uniform,
            },
            Regulariser::LsUnigram => Objective::LabelSmoothing {
                eps: need(hyper.eps, "ε")?,
                prior: SmoothingPrior::unigram_from_counts(class_counts)?,
            },
            Regulariser::Cp => Objective::ConfidencePenalty {
                schedule: BetaSchedule::Constant(need(hyper.beta, "β")?),
                threshold: None,
            },
            Regulariser::CpAnnealed => Objective::ConfidencePenalty {
                schedule: annealed_schedule(need(hyper.beta, "β")?, total_steps, anneal_fraction),
                threshold: None,
            },
            Regulariser::CpThresholded => Objective::ConfidencePenalty {
                schedule: BetaSchedule::Constant(need(hyper.beta, "β")?),
                threshold: Some(need(hyper.threshold, "Γ")?),
            },
        })
    }

    /// Mean loss of a batch at optimisation step `step` (0-based, counted over the whole run).
    pub fn loss(
        &self,
        logits: &Tensor,
        labels: &Tensor,
        step: usize,
    ) -> candle_core::Result<Tensor> {
        match self {
            Objective::CrossEntropy => loss::cross_entropy(logits, labels, Reduction::Mean),
            Objective::LabelSmoothing { eps, prior } => {
                loss::label_smoothing_ce(logits, labels, *eps, prior, Reduction::Mean)
            }
            Objective::ConfidencePenalty {
                schedule,
                threshold,
            } => loss::confidence_penalty(
                logits,
                labels,
                schedule.beta_at(step),
                *threshold,
                Reduction::Mean,
            ),
        }
    }

    /// β at `step` (0 for objectives without a penalty), for logs.
    pub fn beta_at(&self, step: usize) -> f64 {
        match self {
            Objective::ConfidencePenalty { schedule, .. } => schedule.beta_at(step),
            _ => 0.0,
        }
    }
}

/// The annealed penalty's schedule: β rises linearly from 0 at step 0 to `beta` at step
/// `round(fraction · total_steps)` and stays at `beta` afterwards (`fraction = 0`: constant β).
pub fn annealed_schedule(beta: f64, total_steps: usize, fraction: f64) -> BetaSchedule {
    BetaSchedule::Linear {
        start: 0.0,
        end: beta,
        steps: (fraction * total_steps as f64).round() as usize,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_methods() {
        for s in [
            "none",
            "dropout",
            "ls_uniform",
            "ls_unigram",
            "cp",
            "cp_annealed",
            "cp_thresholded",
            "dropout+ls_uniform",
            "dropout+cp",
        ] {
            let m: Method = s.parse().unwrap();
            assert_eq!(m.to_string(), s);
        }
        let m: Method = "cp+dropout".parse().unwrap();
        assert_eq!(m.to_string(), "dropout+cp");
        assert_eq!("ce".parse::<Method>().unwrap(), Method::NONE);
        for bad in [
            "",
            "cp+ls_uniform",
            "dropout+dropout",
            "label_smoothing",
            "dropout+none",
            "CP",
        ] {
            assert!(bad.parse::<Method>().is_err(), "{bad:?} accepted");
        }
        assert!(parse_methods("cp,cp").is_err());
        assert!(parse_methods(" , ").is_err());
        assert_eq!(parse_methods("none, cp").unwrap().len(), 2);
    }

    #[test]
    fn parents_of_combinations() {
        let m: Method = "dropout+cp".parse().unwrap();
        let p: Vec<String> = m.parents().iter().map(|m| m.to_string()).collect();
        assert_eq!(p, ["dropout", "cp"]);
        let t: Method = "cp_thresholded".parse().unwrap();
        assert_eq!(t.parents(), vec!["cp".parse().unwrap()]);
        assert!(Method::NONE.parents().is_empty());
    }

    #[test]
    fn serde_round_trip() {
        let m: Method = "dropout+ls_unigram".parse().unwrap();
        let j = serde_json::to_string(&m).unwrap();
        assert_eq!(j, "\"dropout+ls_unigram\"");
        assert_eq!(serde_json::from_str::<Method>(&j).unwrap(), m);
        assert!(serde_json::from_str::<Method>("\"bogus\"").is_err());
    }
}
