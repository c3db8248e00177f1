//! The tuning phase: which hyper-parameter values each method tries on the validation split,
//! and which one it keeps.
//!
//! Methods are tuned in dependency order: single regularisers first, then the thresholded
//! penalty (whose β can come from `cp`), then the combinations with dropout (whose values can
//! come from their parents), so that with [`Grids::inherit_from_parents`] a combination costs one
//! validation run instead of a product grid.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use super::config::{Grids, TaskConfig};
use super::method::{DropoutRates, Hyper, Method, Regulariser};

/// Validation metrics of one grid point.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ValScore {
    /// Error on the validation split (fraction).
    pub error: f64,
    /// Mean negative log-likelihood on the validation split (nats).
    pub nll: f64,
    /// Expected calibration error on the validation split (fraction, 15 bins); absent in
    /// tuning records written before it was measured.
    #[serde(default)]
    pub ece: f64,
}

/// One tried value with its validation score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GridPoint {
    /// The values tried.
    pub hyper: Hyper,
    /// Their validation score.
    pub val: ValScore,
}

/// The tuning record of one method (written to `tuning.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tuned {
    /// The method.
    pub method: Method,
    /// Every value tried, in order.
    pub grid: Vec<GridPoint>,
    /// The value kept for the final runs.
    pub chosen: Hyper,
    /// Where each chosen value came from ("validation", "inherited from cp", "fixed").
    pub provenance: String,
}

/// Methods in the order they must be tuned (parents before children), keeping the configured
/// order otherwise.
pub fn tuning_order(methods: &[Method]) -> Vec<Method> {
    let rank = |m: &Method| -> u8 {
        if m.is_combination() {
            2
        } else if m.reg == Regulariser::CpThresholded {
            1
        } else {
            0
        }
    };
    let mut v = methods.to_vec();
    v.sort_by_key(rank); // stable: configured order within a rank
    v
}

/// The hyper-parameter values `method` tries, given what its parents chose, and a description
/// of where each value comes from.
pub fn candidates(
    method: Method,
    task: &TaskConfig,
    chosen: &BTreeMap<Method, Hyper>,
) -> Result<(Vec<Hyper>, String)> {
    let g: &Grids = &task.grids;
    let inherit = |parent: &str| -> Option<Hyper> {
        if !g.inherit_from_parents {
            return None;
        }
        let p: Method = parent.parse().ok()?;
        chosen.get(&p).copied()
    };
    let mut notes = Vec::new();
    // Dropout rates: inherited from `dropout`, else searched, else the default.
    let dropouts: Vec<Option<DropoutRates>> = if !method.dropout {
        vec![None]
    } else if method.is_combination() {
        match inherit("dropout").and_then(|h| h.dropout) {
            Some(d) => {
                notes.push("dropout rates from `dropout`".to_string());
                vec![Some(d)]
            }
            None if !g.dropout.is_empty() => g.dropout.iter().copied().map(Some).collect(),
            None => vec![Some(task.default_dropout)],
        }
    } else if g.dropout.is_empty() {
        notes.push("dropout rates fixed (empty grid)".to_string());
        vec![Some(task.default_dropout)]
    } else {
        g.dropout.iter().copied().map(Some).collect()
    };
    // The dropout methods' own learning rate: inherited like the rates, else searched.
    let lrs: Vec<Option<f64>> = if !method.dropout || g.dropout_lr.is_empty() {
        vec![None]
    } else if method.is_combination() {
        match inherit("dropout") {
            Some(h) => vec![h.lr],
            None => g.dropout_lr.iter().copied().map(Some).collect(),
        }
    } else {
        g.dropout_lr.iter().copied().map(Some).collect()
    };
    let single = Method {
        dropout: false,
        reg: method.reg,
    };
    let from_single = if method.is_combination() {
        inherit(&single.to_string())
    } else {
        None
    };
    if from_single.is_some() {
        notes.push(format!("{} from `{single}`", param_name(method.reg)));
    }
    let eps: Vec<Option<f64>> = if !method.reg.uses_eps() {
        vec![None]
    } else if let Some(h) = from_single {
        vec![h.eps]
    } else {
        g.eps.iter().copied().map(Some).collect()
    };
    let beta: Vec<Option<f64>> = match method.reg {
        Regulariser::Cp => match from_single {
            Some(h) => vec![h.beta],
            None => g.beta.iter().copied().map(Some).collect(),
        },
        Regulariser::CpAnnealed => match from_single {
            Some(h) => vec![h.beta],
            None => g.beta_annealed.iter().copied().map(Some).collect(),
        },
        Regulariser::CpThresholded => match from_single.or_else(|| inherit("cp")) {
            Some(h) => {
                if from_single.is_none() {
                    notes.push("β from `cp`".to_string());
                }
                vec![h.beta]
            }
            None => g.beta.iter().copied().map(Some).collect(),
        },
        _ => vec![None],
    };
    let threshold: Vec<Option<f64>> = if !method.reg.uses_threshold() {
        vec![None]
    } else if let Some(h) = from_single {
        vec![h.threshold]
    } else {
        g.threshold.iter().copied().map(Some).collect()
    };
    let mut out = Vec::new();
    for &d in &dropouts {
        for &lr in &lrs {
            for &e in &eps {
                for &b in &beta {
                    for &t in &threshold {
                        out.push(Hyper {
                            dropout: d,
                            eps: e,
                            beta: b,
                            threshold: t,
                            lr,
                        });
                    }
                }
            }
        }
    }
    if out.is_empty() {
        bail!("method {method}: empty hyper-parameter grid");
    }
    if out.len() > 1 {
        notes.push(format!(
            "{} values searched on the validation split",
            out.len()
        ));
    }
    let has_values = method.dropout || method.reg != Regulariser::None;
    let provenance = if notes.is_empty() && has_values {
        "the grid's only value".to_string()
    } else if notes.is_empty() {
        "no hyper-parameter".to_string()
    } else {
        notes.join("; ")
    };
    Ok((out, provenance))
}

fn param_name(r: Regulariser) -> &'static str {
    match r {
        Regulariser::LsUniform | Regulariser::LsUnigram => "ε",
        Regulariser::Cp | Regulariser::CpAnnealed => "β",
        Regulariser::CpThresholded => "β, Γ",
        Regulariser::None => "nothing",
    }
}

/// The grid point with the lowest validation error; ties go to the lower validation NLL, then
/// to the earlier point.
pub fn select(grid: &[GridPoint]) -> Option<&GridPoint> {
    grid.iter().reduce(|best, p| {
        let better = p.val.error < best.val.error
            || (p.val.error == best.val.error && p.val.nll < best.val.nll);
        if better {
            p
        } else {
            best
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::confidence_penalty::config::CpConfig;

    fn m(s: &str) -> Method {
        s.parse().unwrap()
    }

    #[test]
    fn order_puts_parents_first() {
        let order = tuning_order(&[
            m("dropout+cp"),
            m("cp_thresholded"),
            m("none"),
            m("cp"),
            m("dropout"),
        ]);
        let names: Vec<String> = order.iter().map(|m| m.to_string()).collect();
        assert_eq!(
            names,
            ["none", "cp", "dropout", "cp_thresholded", "dropout+cp"]
        );
    }

    #[test]
    fn grids_and_inheritance() {
        let mut task = CpConfig::paper().tasks[0].clone();
        task.grids.dropout_lr = vec![0.001, 0.05];
        let mut chosen = BTreeMap::new();
        let (c, _) = candidates(m("none"), &task, &chosen).unwrap();
        assert_eq!(c, vec![Hyper::default()]);
        let (c, _) = candidates(m("cp"), &task, &chosen).unwrap();
        assert_eq!(c.len(), task.grids.beta.len());
        // Dropout searches its rates × its own learning rates; the others keep the task's rate.
        let (c, _) = candidates(m("dropout"), &task, &chosen).unwrap();
        assert_eq!(c.len(), task.grids.dropout.len() * 2);
        assert!(c.iter().all(|h| h.lr.is_some()));
        assert!(candidates(m("cp"), &task, &chosen)
            .unwrap()
            .0
            .iter()
            .all(|h| h.lr.is_none()));
        // Without parents, a combination searches the product grid.
        let (c, _) = candidates(m("dropout+cp"), &task, &chosen).unwrap();
        assert_eq!(
            c.len(),
            task.grids.beta.len() * task.grids.dropout.len() * 2
        );
        let d = DropoutRates {
            input: 0.2,
            hidden: 0.5,
        };
        chosen.insert(
            m("dropout"),
            Hyper {
                dropout: Some(d),
                lr: Some(0.05),
                ..Default::default()
            },
        );
        chosen.insert(
            m("cp"),
            Hyper {
                beta: Some(2.0),
                ..Default::default()
            },
        );
        let (c, p) = candidates(m("dropout+cp"), &task, &chosen).unwrap();
        assert_eq!(
            c,
            vec![Hyper {
                dropout: Some(d),
                beta: Some(2.0),
                lr: Some(0.05),
                ..Default::default()
            }]
        );
        assert!(
            p.contains("from `dropout`") && p.contains("from `cp`"),
            "{p}"
        );
        let (c, _) = candidates(m("cp_thresholded"), &task, &chosen).unwrap();
        assert_eq!(c.len(), task.grids.threshold.len());
        assert!(c
            .iter()
            .all(|h| h.beta == Some(2.0) && h.threshold.is_some()));
    }

    #[test]
    fn selection_by_error_then_nll() {
        let p = |e, n, b| GridPoint {
            hyper: Hyper {
                beta: Some(b),
                ..Default::default()
            },
            val: ValScore {
                error: e,
                nll: n,
                ece: 0.0,
            },
        };
        let g = vec![
            p(0.02, 0.1, 1.0),
            p(0.015, 0.2, 2.0),
            p(0.015, 0.1, 3.0),
            p(0.015, 0.1, 4.0),
        ];
        assert_eq!(select(&g).unwrap().hyper.beta, Some(3.0));
        assert!(select(&[]).is_none());
    }
}
