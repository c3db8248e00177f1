//! Trains ResNet-32 on a small CIFAR-10 subset (256 images and 8 steps by default: a smoke run;
//! raise `--images` and `--steps` for a real one) and reports accuracy on the first test images.
//!
//! ```sh
//! cargo run --release --example train_resnet32 -- --data-dir ../shared/data/cifar10-jpeg
//! ```
//! Without `--data-dir` the data come from the Hugging Face cache (`HF_HOME`).

use anyhow::Result;
use candle_core::{DType, Device, Module};
use clap::Parser;
use rand::{rngs::StdRng, seq::SliceRandom, SeedableRng};
use std::path::PathBuf;
use zoo_data::{make_batch, DataSource, Normalize, Split};
use zoo_models::optim::{Optimizer, Sgd};
use zoo_models::{backprop, loss, registry, Classifier, Ctx};

/// Train ResNet-32 on the first `--images` CIFAR-10 training images.
#[derive(Parser)]
struct Args {
    /// Read CIFAR-10's parquet files from this folder instead of the Hugging Face cache.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Training images.
    #[arg(long, default_value_t = 256)]
    images: usize,
    /// SGD steps (batch 64, lr 0.1, momentum 0.9, weight decay 5e-4).
    #[arg(long, default_value_t = 8)]
    steps: usize,
    /// Save the trained model here (safetensors, for the eval_checkpoint example).
    #[arg(long)]
    save: Option<PathBuf>,
}

fn main() -> Result<()> {
    // SAFETY: the first statement of main; no other thread exists yet.
    unsafe { zoo_models::init() };
    let a = Args::parse();
    let (dev, mut rng) = (Device::Cpu, StdRng::seed_from_u64(0));
    let src = DataSource::from_option(a.data_dir);
    let train = zoo_data::load("cifar10", Split::Train, &src)?;
    let train = train.subset(&(0..a.images.clamp(1, train.len())).collect::<Vec<_>>());
    let norm = Normalize::for_dataset("cifar10")?;
    let net = registry::resnet32(10, &mut rng, &dev)?;
    let mut opt = Sgd::new(0.9, false, 5e-4)?;
    let mut order: Vec<usize> = (0..train.len()).collect();
    for step in 0..a.steps {
        order.shuffle(&mut rng);
        let b = make_batch(&train, &order[..64.min(order.len())], &norm, None, &dev)?;
        let p = net.store().params();
        let logits = Classifier::forward(&net, &p, &b.images, &mut Ctx::train(&mut rng))?;
        let l = loss::cross_entropy(&logits, &b.labels, loss::Reduction::Mean)?;
        opt.step(net.store(), &backprop::backward(&l)?, 0.1)?;
        println!("step {step}: loss {:.4}", l.to_scalar::<f32>()?);
    }
    let test = zoo_data::load("cifar10", Split::Test, &src)?;
    let rows: Vec<usize> = (0..500.min(test.len())).collect();
    let b = make_batch(&test, &rows, &norm, None, &dev)?;
    let pred = Module::forward(&net, &b.images)?.argmax(1)?;
    let hits = pred
        .eq(&b.labels)?
        .to_dtype(DType::F32)?
        .sum_all()?
        .to_scalar::<f32>()?;
    println!(
        "test accuracy on {} images: {:.1} %",
        rows.len(),
        100.0 * hits / rows.len() as f32
    );
    if let Some(path) = a.save {
        net.store().save(&path)?;
        println!("saved {}", path.display());
    }
    Ok(())
}
