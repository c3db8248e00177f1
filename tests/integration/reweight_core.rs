//! The reweighting core's loop: a task checkpointed after one round and restored into a fresh
//! one continues exactly as the uninterrupted task (model, SGD momentum, data position), under
//! the one key layout (`model.`, `optim.`, `rule.`).

use candle_core::Device;
use rand::rngs::StdRng;
use rand::SeedableRng;
use zoo::reweight::rules::{AllZero, L2rw};
use zoo::reweight::{OptConfig, ReweightTask, StepRule, TaskData};
use zoo::runner::{EpochTask, StepMonitor};
use zoo_data::ImageDataset;
use zoo_models::models::{Mlp, MlpConfig};

fn images(n: usize, rng: &mut StdRng) -> zoo_data::ImageDataset {
    let labels = (0..n).map(|i| ((i * 7) % 3) as u32).collect();
    crate::common::random_images(labels, 3, (3, 4), rng)
}

/// The variables of `task`'s model, flattened.
pub(crate) fn params(task: &ReweightTask) -> Vec<Vec<f32>> {
    let vars = task.model().store().vars();
    let flat = |v: &candle_core::Var| v.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
    vars.values().map(flat).collect()
}

/// The toy tasks' optimiser: `steps` in two rounds of batch `batch_size` (meta batch 4), SGD at
/// 0.1 with momentum 0.9 and weight decay 5e-4, no milestones, `warmup_steps` plain steps.
pub(crate) fn toy_opt(steps: usize, batch_size: usize, warmup_steps: usize) -> OptConfig {
    OptConfig {
        steps,
        rounds: 2,
        eval_every_rounds: 1,
        batch_size,
        meta_batch: Some(4),
        lr: 0.1,
        milestones: vec![],
        gamma: 0.1,
        momentum: 0.9,
        weight_decay: 5e-4,
        warmup_steps,
    }
}

/// A task on toy images (`train`, its flags, `meta`, `test`; normalised by 0.5/0.25, no
/// augmentation, task seed 7) training an MLP of widths `dims` initialised from seed `init`.
pub(crate) fn toy_task<'a>(
    (train, flagged, meta, test): (
        &'a ImageDataset,
        &'a [bool],
        &'a ImageDataset,
        &'a ImageDataset,
    ),
    dims: &[usize],
    init: u64,
    rule: Box<dyn StepRule>,
    opt: &OptConfig,
) -> ReweightTask<'a> {
    let model = Mlp::new(
        MlpConfig::new(dims),
        &mut StdRng::seed_from_u64(init),
        &Device::Cpu,
    )
    .unwrap();
    let data = TaskData {
        train,
        flagged,
        meta,
        test,
        norm: zoo_data::Normalize::new(vec![0.5; 3], vec![0.25; 3]).unwrap(),
        augment: zoo_data::Augment::None,
    };
    ReweightTask::new(Box::new(model), rule, opt, data, 7).unwrap()
}

#[test]
fn a_restored_task_continues_exactly() {
    let mut rng = StdRng::seed_from_u64(1);
    let (train, meta, test) = (
        images(30, &mut rng),
        images(6, &mut rng),
        images(6, &mut rng),
    );
    let flagged: Vec<bool> = (0..30).map(|i| i % 4 == 0).collect();
    let opt = toy_opt(6, 8, 0);
    let task = |init: u64| {
        let rule = Box::new(L2rw::new(AllZero::ZeroStep));
        let data = (&train, flagged.as_slice(), &meta, &test);
        toy_task(data, &[48, 8, 3], init, rule, &opt)
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
