//! Metrics on a five-example set whose values were computed by hand (python3, math module).

use candle_core::{DType, Device, Result, Tensor};
use zoo_models::metrics::{self, Predictions, ECE_BINS};

const Z: [[f64; 3]; 5] = [
    [2.0, 0.0, 0.0],
    [0.0, 3.0, 0.0],
    [1.0, 1.5, 0.0],
    [0.0, 0.0, 0.2],
    [5.0, 0.0, 1.0],
];
// Predictions are [0, 1, 1, 2, 0]: examples 2 and 4 are wrong.
const Y: [u32; 5] = [0, 1, 0, 2, 2];

fn preds() -> Predictions {
    let z = Tensor::new(&Z, &Device::Cpu).unwrap();
    let y = Tensor::new(&Y, &Device::Cpu).unwrap();
    Predictions::from_logits(&z, &y).unwrap()
}

fn close(a: f64, b: f64, tol: f64) {
    assert!((a - b).abs() <= tol, "{a} vs {b}");
}

#[test]
fn errors_and_per_class() {
    let p = preds();
    assert_eq!(p.predicted(), vec![0, 1, 1, 2, 0]);
    assert_eq!(p.error_count(), 2);
    close(p.error_rate(), 0.4, 1e-15);
    close(p.accuracy(), 0.6, 1e-15);
    assert_eq!(
        p.per_class_accuracy(),
        vec![Some(0.5), Some(1.0), Some(0.5)]
    );
    close(p.mean_class_accuracy(), 2.0 / 3.0, 1e-15);
}

#[test]
fn shot_groups_follow_kang_thresholds() -> Result<()> {
    let p = preds();
    let s = p.shot_accuracy(&[500, 50, 5])?;
    assert_eq!((s.many, s.medium, s.few), (Some(0.5), Some(1.0), Some(0.5)));
    // Boundaries: > 100 many, 20..=100 medium, < 20 few.
    let s = p.shot_accuracy(&[101, 100, 20])?;
    assert_eq!((s.many, s.medium, s.few), (Some(0.5), Some(0.75), None));
    assert_eq!(s.num_classes, [1, 2, 0]);
    let s = p.shot_accuracy(&[100, 19, 20])?;
    assert_eq!((s.many, s.medium, s.few), (None, Some(0.5), Some(1.0)));
    assert!(p.shot_accuracy(&[1, 2]).is_err());
    Ok(())
}

#[test]
fn nll_entropy_ece() -> Result<()> {
    let p = preds();
    close(p.nll(), 1.2866320243983385, 1e-12);
    close(p.mean_entropy(), 0.6416087507191748, 1e-12);
    let r = p.reliability(ECE_BINS)?;
    close(r.ece, 0.4893053296884474, 1e-12);
    close(p.ece(), 0.4893053296884474, 1e-12);
    assert_eq!(r.bins.len(), 15);
    let occupied: Vec<(usize, usize, f64, f64)> = r
        .bins
        .iter()
        .enumerate()
        .filter(|(_, b)| b.count > 0)
        .map(|(i, b)| (i, b.count, b.confidence, b.accuracy))
        .collect();
    let expected = [
        (5, 1, 0.37915245309398876, 1.0),
        (8, 1, 0.5465493872661796, 0.0),
        (11, 1, 0.7869860421615984, 1.0),
        (13, 1, 0.9094429985127421, 1.0),
        (14, 1, 0.9755587549443867, 0.0),
    ];
    assert_eq!(occupied.len(), expected.len());
    for (g, e) in occupied.iter().zip(expected) {
        assert_eq!((g.0, g.1), (e.0, e.1));
        close(g.2, e.2, 1e-12);
        close(g.3, e.3, 1e-15);
    }
    close(r.bins[5].lower, 5.0 / 15.0, 1e-15);
    close(r.bins[5].upper, 6.0 / 15.0, 1e-15);
    // Perfectly calibrated toy: confidence 1 and always right.
    let sure = Predictions::from_log_scores(2, &[0.0, -1e9, -1e9, 0.0], vec![0, 1])?;
    close(sure.ece(), 0.0, 1e-12);
    Ok(())
}

#[test]
fn free_functions_batches_and_bad_input() -> Result<()> {
    let z = Tensor::new(&Z, &Device::Cpu)?.to_dtype(DType::F32)?;
    let y = Tensor::new(&Y, &Device::Cpu)?;
    assert_eq!(metrics::error_count(&z, &y)?, 2);
    close(metrics::error_rate(&z, &y)?, 0.4, 1e-15);
    close(metrics::nll(&z, &y)?, 1.2866320243983385, 1e-6);
    close(metrics::mean_entropy(&z)?, 0.6416087507191748, 1e-6);
    close(metrics::ece(&z, &y)?.ece, 0.4893053296884474, 1e-6);
    // Pushing in two batches gives the same result as one.
    let mut p = Predictions::new(3);
    p.push(&z.narrow(0, 0, 2)?, &y.narrow(0, 0, 2)?)?;
    p.push(&z.narrow(0, 2, 3)?, &y.narrow(0, 2, 3)?)?;
    close(p.nll(), 1.2866320243983385, 1e-6);
    assert_eq!(p.len(), 5);
    // Saturated f32 logits: finite NLL (log-sum-exp in f64).
    let sat = Tensor::new(&[[100f32, -100.0]], &Device::Cpu)?;
    let y1 = Tensor::new(&[1u32], &Device::Cpu)?;
    close(metrics::nll(&sat, &y1)?, 200.0, 1e-9);
    // Bad input.
    assert!(p.push(&z, &y.narrow(0, 0, 4)?).is_err());
    let bad = Tensor::new(&[0u32, 1, 2, 3, 0], &Device::Cpu)?;
    assert!(metrics::error_count(&z, &bad).is_err());
    let nan = Tensor::new(&[[f32::NAN, 0.0]], &Device::Cpu)?;
    assert!(metrics::nll(&nan, &y1).is_err());
    Ok(())
}
