//! The reweighting core's loop: a task checkpointed after one round and restored into a fresh
//! one continues exactly as the uninterrupted task (model, SGD momentum, data position), under
//! the one key layout (`model.`, `optim.`, `rule.`).

use candle_core::Device;
use rand::rngs::StdRng;
use rand::SeedableRng;
use zoo::reweight::rules::{AllZero, L2rw};
use zoo::reweight::{OptConfig, ReweightTask, TaskData};
use zoo::runner::{EpochTask, StepMonitor};
use zoo_models::models::{Mlp, MlpConfig};

fn images(n: usize, rng: &mut StdRng) -> zoo_data::ImageDataset {
    let labels = (0..n).map(|i| ((i * 7) % 3) as u32).collect();
    crate::common::random_images(labels, 3, (3, 4), rng)
}

/// The variables of `task`'s model, flattened.
fn params(task: &ReweightTask) -> Vec<Vec<f32>> {
    let vars = task.model().store().vars();
    let flat = |v: &candle_core::Var| v.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
    vars.values().map(flat).collect()
}

#[test]
fn a_restored_task_continues_exactly() {
    let dev = Device::Cpu;
    let mut rng = StdRng::seed_from_u64(1);
    let (train, meta, test) = (
        images(30, &mut rng),
        images(6, &mut rng),
        images(6, &mut rng),
    );
    let flagged: Vec<bool> = (0..30).map(|i| i % 4 == 0).collect();
    let opt = OptConfig {
        steps: 6,
        rounds: 2,
        eval_every_rounds: 1,
        batch_size: 8,
        meta_batch: Some(4),
        lr: 0.1,
        milestones: vec![],
        gamma: 0.1,
        momentum: 0.9,
        weight_decay: 5e-4,
        warmup_steps: 0,
    };
    let task = |init: u64| {
        let model = Mlp::new(
            MlpConfig::new(&[48, 8, 3]),
            &mut StdRng::seed_from_u64(init),
            &dev,
        )
        .unwrap();
        let data = TaskData {
            train: &train,
            flagged: &flagged,
            meta: &meta,
            test: &test,
            norm: zoo_data::Normalize::new(vec![0.5; 3], vec![0.25; 3]).unwrap(),
            augment: zoo_data::Augment::None,
        };
        let rule = Box::new(L2rw::new(AllZero::ZeroStep));
        ReweightTask::new(Box::new(model), rule, &opt, data, 7).unwrap()
    };
    let round = |t: &mut ReweightTask, r: usize| {
        let mut rng = StdRng::seed_from_u64(100 + r as u64);
        let mut monitor = StepMonitor::detached(0, r);
        t.train_epoch(r, &mut rng, &mut monitor).unwrap()
    };
    let mut whole = task(5);
    round(&mut whole, 0);
    // A snapshot, as a checkpoint file is (the live state shares storage with later steps).
    let mut state = whole.state().unwrap();
    for t in state.tensors.values_mut() {
        *t = t.copy().unwrap();
    }
    for k in state.tensors.keys() {
        assert!(
            k.starts_with("model.") || k.starts_with("optim."),
            "unexpected checkpoint key {k}"
        );
    }
    assert!(state.tensors.keys().any(|k| k.starts_with("optim.")));
    round(&mut whole, 1);
    let mut resumed = task(99);
    resumed.restore(state).unwrap();
    round(&mut resumed, 1);
    assert_eq!(params(&whole), params(&resumed));
}
