//! `ClassifierTrainer` under the runner on a tiny synthetic image task: the loss drops, and a run
//! resumed after a crash (dropout, shuffling, momentum, multistep schedule all in play) gives the
//! same numbers and weights as an uninterrupted one.

use std::path::{Path, PathBuf};

use candle_core::Device;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use zoo::results::ResultsDir;
use zoo::runner::{RunOutcome, Runner};
use zoo::trainer::ClassifierTrainer;
use zoo_data::augment::Augment;
use zoo_data::sampler::{InstanceBalanced, Sequential};
use zoo_data::{ImageDataset, Loader, Normalize, SourceInfo};
use zoo_models::models::{Mlp, MlpConfig};
use zoo_models::optim::{LrSchedule, Sgd};

fn temp_dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("runner_classifier_{name}_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// 1×4×4 images; class 1 when the left half is brighter than the right (noisy pixels).
fn dataset(seed: u64, n: usize) -> ImageDataset {
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let y: u32 = rng.random_range(0..2);
        for _row in 0..4 {
            for col in 0..4 {
                let bright = (col < 2) == (y == 1);
                let base: f64 = if bright { 150.0 } else { 100.0 };
                images.push((base + rng.random_range(-60.0..60.0)).clamp(0.0, 255.0) as u8);
            }
        }
        labels.push(y);
    }
    ImageDataset {
        name: "toy".into(),
        images,
        labels,
        channels: 1,
        height: 4,
        width: 4,
        num_classes: 2,
        class_names: vec!["right".into(), "left".into()],
        source: SourceInfo {
            kind: "dir".into(),
            repo: "none".into(),
            revision: "none".into(),
            commit: None,
            files: vec![],
            paths: vec![],
        },
    }
}

fn trainer<'a>(
    seed: u64,
    train: &'a ImageDataset,
    test: &'a ImageDataset,
    crash_at: Option<u64>,
) -> ClassifierTrainer<'a> {
    let dev = Device::Cpu;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut cfg = MlpConfig::new(&[16, 32, 2]);
    cfg.hidden_dropout = 0.2;
    let model = Mlp::new(cfg, &mut rng, &dev).unwrap();
    let norm = Normalize::new(vec![0.5], vec![0.25]).unwrap();
    let tl = Loader::new(
        train,
        32,
        norm.clone(),
        Augment::None,
        Box::new(InstanceBalanced { n: train.len() }),
        seed,
        &dev,
    )
    .unwrap();
    let el = Loader::new(
        test,
        64,
        norm,
        Augment::None,
        Box::new(Sequential { n: test.len() }),
        0,
        &dev,
    )
    .unwrap();
    let schedule = LrSchedule::MultiStep {
        base: 0.05,
        milestones: vec![3],
        gamma: 0.1,
    };
    ClassifierTrainer::new(
        Box::new(model),
        Box::new(Sgd::new(0.9, true, 1e-4).unwrap()),
        schedule,
        tl,
        el,
    )
    .unwrap()
    .with_loss(move |logits, batch, at| {
        if Some(at.step) == crash_at {
            candle_core::bail!("simulated crash at step {}", at.step);
        }
        zoo_models::loss::cross_entropy(logits, &batch.labels, zoo_models::loss::Reduction::Mean)
    })
}

fn weights(t: &ClassifierTrainer) -> Vec<f32> {
    t.model
        .store()
        .params()
        .iter()
        .flat_map(|(_, w)| w.flatten_all().unwrap().to_vec1::<f32>().unwrap())
        .collect()
}

#[test]
fn classifier_trainer_learns_and_resumes_exactly() {
    let train = dataset(1, 256);
    let test = dataset(2, 128);
    let dir = temp_dir("full");
    let mut full_task = trainer(0, &train, &test, None);
    let full = Runner::with_dir(&ResultsDir::create(&dir).unwrap(), &[0], 5)
        .run_seed(0, &mut full_task)
        .unwrap();
    let first = full.history[0].train.get("loss").unwrap();
    let last = full.history[4].train.get("loss").unwrap();
    assert!(last < 0.6 * first, "loss {first} -> {last}");
    let err = full.history[4].eval.get("test_error").unwrap();
    assert!(err < 0.1, "test error {err}");
    for m in ["test_errors", "test_nll", "test_ece", "test_entropy"] {
        assert!(full.history[4].eval.get(m).is_some(), "missing {m}");
    }
    assert_eq!(full.history[2].lr, Some(0.05));
    assert_eq!(full.history[3].lr.map(|x| (x * 1e6).round()), Some(5000.0));
    let (ece, bins) = full_task.last_reliability().unwrap();
    assert_eq!(bins.len(), 15);
    assert!((ece - full.history[4].eval.get("test_ece").unwrap()).abs() < 1e-12);

    // Crash in epoch 3 (steps 16..24 with 8 steps per epoch), then resume in a fresh trainer.
    let dir = temp_dir("crash");
    let results = ResultsDir::create(&dir).unwrap();
    let mut crashing = trainer(0, &train, &test, Some(21));
    let e = Runner::with_dir(&results, &[0], 5)
        .run_seed(0, &mut crashing)
        .unwrap_err();
    assert!(
        format!("{e:#}").contains("simulated crash at step 21"),
        "{e:#}"
    );
    let mut resumed_task = trainer(0, &train, &test, None);
    let resumed = Runner::with_dir(&results, &[0], 5)
        .resume(true)
        .run_seed(0, &mut resumed_task)
        .unwrap();
    let strip = |o: &RunOutcome| {
        o.seeds[0]
            .history
            .iter()
            .map(|r| {
                (
                    r.epoch,
                    r.global_step,
                    r.lr,
                    r.train.clone(),
                    r.eval.clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        strip(&RunOutcome { seeds: vec![full] }),
        strip(&RunOutcome {
            seeds: vec![resumed]
        })
    );
    assert_eq!(weights(&full_task), weights(&resumed_task));
    // The checkpoint's weights use PyTorch names.
    let ckpt = std::fs::read_dir(dir.join("seed_0/checkpoint"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .unwrap();
    let t = candle_core::safetensors::load(&ckpt, &Device::Cpu).unwrap();
    assert!(
        t.contains_key("model.layers.0.weight")
            && t.keys().any(|k| k.starts_with("optim.momentum_buffer.")),
        "{:?}",
        t.keys()
    );
}
