//! The confidence penalty's error–calibration trade-off over β, read from the tuning phase's
//! validation scores: a penalty strong enough to win on error can halve the predicted
//! probabilities, so the β that is best on validation error and the β that is best on validation
//! NLL are named side by side, and plotted.

use std::path::Path;

use anyhow::Result;

use super::method::Regulariser;
use super::tuning::{GridPoint, Tuned};
use crate::plot::{self, Labels, Series};

/// The plain confidence penalty's grid points, by increasing β (`None` with fewer than two).
pub fn beta_grid(tuned: &[Tuned]) -> Option<Vec<GridPoint>> {
    let t = tuned
        .iter()
        .find(|t| t.method.reg == Regulariser::Cp && !t.method.dropout)?;
    let mut grid: Vec<GridPoint> = t
        .grid
        .iter()
        .filter(|p| p.hyper.beta.is_some())
        .cloned()
        .collect();
    if grid.len() < 2 {
        return None;
    }
    let beta = |p: &GridPoint| p.hyper.beta.unwrap_or(f64::NAN);
    grid.sort_by(|a, b| beta(a).total_cmp(&beta(b)));
    Some(grid)
}

/// The point minimising `key` (the first one on ties).
fn best_by(grid: &[GridPoint], key: impl Fn(&GridPoint) -> f64) -> &GridPoint {
    grid.iter()
        .reduce(|best, p| if key(p) < key(best) { p } else { best })
        .expect("beta_grid returns at least two points")
}

/// One sentence: the β best on validation error and the β best on validation NLL, with the
/// other metrics at each.
pub fn note(task: &str, grid: &[GridPoint]) -> String {
    let describe = |p: &GridPoint| {
        format!(
            "β = {} (val error {:.2} %, NLL {:.4}, ECE {:.2} %)",
            p.hyper.beta.unwrap_or(f64::NAN),
            100.0 * p.val.error,
            p.val.nll,
            100.0 * p.val.ece
        )
    };
    let by_error = best_by(grid, |p| p.val.error);
    let by_nll = best_by(grid, |p| p.val.nll);
    let verdict = if by_error.hyper.beta == by_nll.hyper.beta {
        "the same β".to_string()
    } else {
        "different β: the penalty's best error costs calibration".to_string()
    };
    format!(
        "{task}: confidence penalty on validation (tuning seed, {} β values): best by error {}; \
         best by NLL {} — {verdict}.",
        grid.len(),
        describe(by_error),
        describe(by_nll)
    )
}

/// Validation error and ECE (both %) against log₁₀ β.
pub fn plot(path: &Path, task: &str, grid: &[GridPoint]) -> Result<()> {
    let x = |p: &GridPoint| p.hyper.beta.unwrap_or(f64::NAN).log10();
    let series = [
        Series::new(
            "validation error (%)",
            grid.iter().map(|p| (x(p), 100.0 * p.val.error)).collect(),
        ),
        Series::new(
            "validation ECE (%, 15 bins)",
            grid.iter().map(|p| (x(p), 100.0 * p.val.ece)).collect(),
        ),
    ];
    plot::line_chart(
        path,
        &Labels::new(
            format!("{task}: confidence penalty, error against calibration over β"),
            "log10 β",
            "%",
        ),
        &series,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::confidence_penalty::method::{Hyper, Method};
    use crate::confidence_penalty::tuning::ValScore;

    fn point(beta: f64, error: f64, nll: f64) -> GridPoint {
        GridPoint {
            hyper: Hyper {
                beta: Some(beta),
                ..Default::default()
            },
            val: ValScore {
                error,
                nll,
                ece: 0.1 * beta,
            },
        }
    }

    #[test]
    fn names_the_beta_best_on_error_and_on_nll() {
        let tuned = vec![Tuned {
            method: "cp".parse::<Method>().unwrap(),
            grid: vec![
                point(4.0, 0.013, 0.9),
                point(0.1, 0.016, 0.05),
                point(1.0, 0.012, 0.6),
            ],
            chosen: Hyper::default(),
            provenance: String::new(),
        }];
        let grid = beta_grid(&tuned).unwrap();
        let betas: Vec<f64> = grid.iter().map(|p| p.hyper.beta.unwrap()).collect();
        assert_eq!(betas, vec![0.1, 1.0, 4.0]);
        let n = note("mnist", &grid);
        assert!(n.contains("best by error β = 1 (val error 1.20 %"), "{n}");
        assert!(n.contains("best by NLL β = 0.1 (val error 1.60 %"), "{n}");
        assert!(n.contains("different β"), "{n}");
        // Other methods' grids are not the penalty's.
        let ls = vec![Tuned {
            method: "ls_uniform".parse::<Method>().unwrap(),
            ..tuned[0].clone()
        }];
        assert!(beta_grid(&ls).is_none());
    }
}
