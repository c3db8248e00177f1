//! The cargo examples, compiled into this test (so `cargo test --test library` builds them even
//! where `cargo test` would not) and, where cheap, run: the model list, one L2RW step, and a
//! checkpoint evaluation. Their `main`s (which call `zoo_models::init`, unsound in a
//! multi-threaded test) are not run; `.cargo/config.toml` gives the tests second-order gradients.

#[allow(dead_code)]
#[path = "../../examples/eval_checkpoint.rs"]
mod eval_checkpoint;
#[allow(dead_code)]
#[path = "../../examples/l2rw_step.rs"]
mod l2rw_step;
#[allow(dead_code)]
#[path = "../../examples/list_models.rs"]
mod list_models;
#[allow(dead_code)]
#[path = "../../examples/train_resnet32.rs"]
mod train_resnet32;

use candle_core::{DType, Device, Module};
use rand::{rngs::StdRng, SeedableRng};
use std::path::PathBuf;
use zoo_data::{make_batch, DataSource, Normalize, Split};
use zoo_models::registry;

#[test]
fn list_models_prints_every_model_with_hand_checked_counts() {
    let out = list_models::run(&Device::Cpu).unwrap();
    for name in registry::names() {
        assert!(
            out.lines().any(|l| l.starts_with(name)),
            "{name} in:\n{out}"
        );
    }
    // ResNet-20 (option A): 269,722 parameters. MLP: 2·(784·1200 + 1200·1200 + 1200·10).
    let line = |name: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap()
    };
    assert!(line("resnet20").contains(" 269722 params"), "{out}");
    assert!(line("mlp").contains(" 4785600 FLOPs"), "{out}");
}

#[test]
fn l2rw_step_gives_normalised_non_negative_weights() {
    let w = l2rw_step::run().unwrap();
    assert_eq!(w.len(), 32);
    assert!(w.iter().all(|&v| v >= 0.0), "{w:?}");
    let sum: f32 = w.iter().sum();
    assert!((sum - 1.0).abs() < 1e-5, "weights sum to {sum}");
}

fn mnist() -> PathBuf {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/hf/hub"))
        .join("datasets--ylecun--mnist");
    let rev = std::fs::read_to_string(dir.join("refs/main"))
        .unwrap_or_else(|e| panic!("MNIST in ../shared/hf ({}): {e}", dir.display()));
    dir.join("snapshots").join(rev.trim())
}

/// A LeNet saved as a training checkpoint (`model.` prefix, plus optimiser state) evaluates to
/// what that LeNet scores itself; a checkpoint of another model is refused.
#[test]
fn eval_checkpoint_scores_the_saved_model() {
    let dev = Device::Cpu;
    let dir = std::env::temp_dir().join(format!("zoo-eval-checkpoint-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("lenet.safetensors");
    let net = registry::lenet(10, &mut StdRng::seed_from_u64(1), &dev).unwrap();
    let mut sd: std::collections::BTreeMap<String, _> = zoo_models::Classifier::store(&net)
        .state_dict()
        .unwrap()
        .into_iter()
        .map(|(k, t)| (format!("model.{k}"), t))
        .collect();
    sd.insert(
        "optim.step".into(),
        candle_core::Tensor::new(3f32, &dev).unwrap(),
    );
    zoo_models::checkpoint::save_tensors(&file, &sd).unwrap();
    let args = |model: &str| eval_checkpoint::Args {
        model: model.into(),
        checkpoint: file.clone(),
        dataset: "mnist".into(),
        data_dir: Some(mnist()),
        images: 150,
    };
    let (correct, n) = eval_checkpoint::run(args("lenet")).unwrap();
    let test = zoo_data::load("mnist", Split::Test, &DataSource::Dir(mnist())).unwrap();
    let rows: Vec<usize> = (0..150).collect();
    let norm = Normalize::for_dataset("mnist").unwrap();
    let b = make_batch(&test, &rows, &norm, None, &dev).unwrap();
    let pred = net.forward(&b.images).unwrap().argmax(1).unwrap();
    let hits = pred.eq(&b.labels).unwrap().to_dtype(DType::U32).unwrap();
    let want = hits.sum_all().unwrap().to_scalar::<u32>().unwrap() as usize;
    assert_eq!((correct, n), (want, 150));
    let e = eval_checkpoint::run(args("resnet8")).unwrap_err();
    assert!(format!("{e:#}").contains("does not match"), "{e:#}");
    let _ = std::fs::remove_dir_all(&dir);
}
