//! Transfer sets (full, one class omitted, only some classes) and the bias shift that repairs a
//! student trained on a transfer set missing classes.
//!
//! A shift `δ` of the output biases of some classes is the same as adding `δ` to those logits,
//! so it is chosen and applied on stored logits, with no second forward pass. It is chosen on
//! the validation split only; [`select_bias`] never sees test data.

use serde::{Deserialize, Serialize};

/// Which training images the distilled student learns from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TransferSet {
    /// Every training image.
    Full,
    /// Every training image except those of one class (the paper: 3).
    Omit { class: u32 },
    /// Only the images of these classes (the paper: 7 and 8).
    Only { classes: Vec<u32> },
}

impl TransferSet {
    /// Indices into `labels` of the images in this transfer set, in their original order.
    pub fn indices(&self, labels: &[u32]) -> Vec<usize> {
        labels
            .iter()
            .enumerate()
            .filter(|(_, y)| match self {
                TransferSet::Full => true,
                TransferSet::Omit { class } => **y != *class,
                TransferSet::Only { classes } => classes.contains(*y),
            })
            .map(|(i, _)| i)
            .collect()
    }

    /// The classes whose output bias is shifted after training: the omitted class, or the
    /// classes the set was restricted to (the paper raises the 3's bias and lowers 7's and 8's).
    pub fn shifted_classes(&self) -> Vec<usize> {
        match self {
            TransferSet::Full => vec![],
            TransferSet::Omit { class } => vec![*class as usize],
            TransferSet::Only { classes } => classes.iter().map(|c| *c as usize).collect(),
        }
    }

    /// Short name used in logs and file names.
    pub fn tag(&self) -> String {
        match self {
            TransferSet::Full => "full".into(),
            TransferSet::Omit { class } => format!("omit{class}"),
            TransferSet::Only { classes } => {
                let s: Vec<String> = classes.iter().map(|c| c.to_string()).collect();
                format!("only{}", s.join(""))
            }
        }
    }
}

/// Errors of row-major logits `(n, num_classes)` against `labels` after adding `delta` to the
/// logits of `classes`: `(total errors, errors per true class)`. Ties go to the lower class.
pub fn errors_with_shift(
    logits: &[f32],
    labels: &[u32],
    num_classes: usize,
    classes: &[usize],
    delta: f32,
) -> (usize, Vec<usize>) {
    assert_eq!(
        logits.len(),
        labels.len() * num_classes,
        "logits/labels size mismatch"
    );
    let mut per_class = vec![0usize; num_classes];
    let mut total = 0;
    for (row, &y) in logits.chunks_exact(num_classes).zip(labels) {
        let mut best = 0;
        let mut best_v = f32::NEG_INFINITY;
        for (c, &v) in row.iter().enumerate() {
            let v = if classes.contains(&c) { v + delta } else { v };
            if v > best_v {
                best_v = v;
                best = c;
            }
        }
        if best != y as usize {
            total += 1;
            per_class[y as usize] += 1;
        }
    }
    (total, per_class)
}

/// The bias shift chosen on the validation split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BiasChoice {
    /// Classes whose bias is shifted.
    pub classes: Vec<usize>,
    /// The shift (added to those classes' output biases).
    pub delta: f32,
    /// Validation errors without the shift.
    pub val_errors_before: usize,
    /// Validation errors with the shift.
    pub val_errors_after: usize,
}

/// Picks the shift from `grid` that minimises validation errors (first one on ties, so put 0
/// first to keep no shift when nothing helps). Takes only validation data by construction.
pub fn select_bias(
    val_logits: &[f32],
    val_labels: &[u32],
    num_classes: usize,
    classes: &[usize],
    grid: &[f32],
) -> BiasChoice {
    let before = errors_with_shift(val_logits, val_labels, num_classes, classes, 0.0).0;
    let mut best = (f32::NAN, usize::MAX);
    for &d in grid {
        let e = errors_with_shift(val_logits, val_labels, num_classes, classes, d).0;
        if e < best.1 {
            best = (d, e);
        }
    }
    if grid.is_empty() {
        best = (0.0, before);
    }
    BiasChoice {
        classes: classes.to_vec(),
        delta: best.0,
        val_errors_before: before,
        val_errors_after: best.1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfer_sets_filter_labels() {
        let labels = [3, 1, 7, 3, 8, 0];
        assert_eq!(TransferSet::Full.indices(&labels), vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(
            TransferSet::Omit { class: 3 }.indices(&labels),
            vec![1, 2, 4, 5]
        );
        assert_eq!(
            TransferSet::Only {
                classes: vec![7, 8]
            }
            .indices(&labels),
            vec![2, 4]
        );
    }

    #[test]
    fn shift_changes_argmax() {
        // Two examples, 3 classes: class 2 is 1.0 below the winner in both.
        let logits = [2.0, 0.0, 1.0, 0.0, 3.0, 2.0];
        let labels = [2, 2];
        assert_eq!(errors_with_shift(&logits, &labels, 3, &[2], 0.0).0, 2);
        assert_eq!(errors_with_shift(&logits, &labels, 3, &[2], 1.5).0, 0);
        let c = select_bias(&logits, &labels, 3, &[2], &[0.0, 0.5, 1.5, 3.0]);
        assert_eq!(
            (c.delta, c.val_errors_before, c.val_errors_after),
            (1.5, 2, 0)
        );
    }
}
