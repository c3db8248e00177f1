//! Loads a zoo checkpoint (safetensors) into a registry model and evaluates it on a test set.
//!
//! ```sh
//! cargo run --release --example eval_checkpoint -- --model resnet32 --checkpoint FILE \
//!     --dataset cifar10 --data-dir ../shared/data/cifar10-jpeg --images 1000
//! ```
//! FILE holds a model's state dict (`ParamStore::save`, `train_resnet32 --save`) or a training
//! checkpoint whose model tensors are under `model.`.

use anyhow::{Context, Result};
use candle_core::{DType, Device, Module};
use clap::Parser;
use rand::{rngs::StdRng, SeedableRng};
use std::path::PathBuf;
use zoo_data::{make_batch, DataSource, Normalize, Split};
use zoo_models::{checkpoint, registry};

/// Evaluate a checkpoint on the first images of a test set.
#[derive(Parser)]
pub struct Args {
    /// Registry name of the model (`models list`).
    #[arg(long)]
    pub model: String,
    /// The safetensors file.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Data set (mnist, fashion_mnist, cifar10, cifar100).
    #[arg(long, default_value = "cifar10")]
    pub dataset: String,
    /// Read the data set's parquet files from this folder instead of the Hugging Face cache.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Test images to evaluate.
    #[arg(long, default_value_t = 1000)]
    pub images: usize,
}

fn main() -> Result<()> {
    // SAFETY: the first statement of main; no other thread exists yet.
    unsafe { zoo_models::init() };
    let (correct, n) = run(Args::parse())?;
    let pct = 100.0 * correct as f64 / n.max(1) as f64;
    println!("{correct} / {n} correct ({pct:.2} %)");
    Ok(())
}

/// (correct, evaluated) on the first `--images` test images.
pub fn run(a: Args) -> Result<(usize, usize)> {
    let dev = Device::Cpu;
    let src = DataSource::from_option(a.data_dir);
    let test = zoo_data::load(&a.dataset, Split::Test, &src)?;
    let mut rng = StdRng::seed_from_u64(0);
    let net = registry::create_model(&a.model, test.num_classes, &mut rng, &dev)?;
    let mut sd = checkpoint::load_tensors(&a.checkpoint, &dev)?;
    if sd.keys().any(|k| k.starts_with("model.")) {
        sd = sd
            .into_iter()
            .filter_map(|(k, t)| Some((k.strip_prefix("model.")?.into(), t)))
            .collect();
    }
    net.store()
        .load_state_dict(&sd)
        .with_context(|| format!("loading {} into {}", a.checkpoint.display(), a.model))?;
    let norm = Normalize::for_dataset(&a.dataset)?;
    let n = a.images.min(test.len());
    let mut correct = 0;
    for start in (0..n).step_by(100) {
        let rows: Vec<usize> = (start..n.min(start + 100)).collect();
        let b = make_batch(&test, &rows, &norm, None, &dev)?;
        // candle's Module: the evaluation forward with the loaded parameters.
        let pred = net.forward(&b.images)?.argmax(1)?;
        let hits = pred.eq(&b.labels)?.to_dtype(DType::U32)?.sum_all()?;
        correct += hits.to_scalar::<u32>()? as usize;
    }
    Ok((correct, n))
}
