//! One Learning-to-Reweight step (Ren et al. 2018) on a model of your own: a small classifier
//! written here with the zoo's layers, a noisy batch (8 of 32 labels flipped) and a clean meta
//! batch. Implementing `Classifier` (features plus a linear head) is all the meta-step needs.
//!
//! ```sh
//! cargo run --release --example l2rw_step
//! ```

use anyhow::Result;
use candle_core::{Device, Tensor};
use rand::{rngs::StdRng, Rng, SeedableRng};
use zoo_models::layers::{self, Builder};
use zoo_models::optim::{Optimizer, Sgd};
use zoo_models::{backprop, loss, meta, Classifier, Ctx, ParamSet, ParamStore};

/// Your model: 2 → 16 → 2 with ReLU.
pub struct Blobs {
    store: ParamStore,
}

impl Classifier for Blobs {
    fn store(&self) -> &ParamStore {
        &self.store
    }
    fn features(&self, p: &ParamSet, x: &Tensor, _: &mut Ctx) -> candle_core::Result<Tensor> {
        layers::linear_relu(p, "hidden", x)
    }
    fn head(&self) -> (&str, Option<&str>) {
        ("head.weight", Some("head.bias"))
    }
    fn num_classes(&self) -> usize {
        2
    }
    fn feature_dim(&self) -> usize {
        16
    }
}

/// `n` points of two blobs around x = ±1 (alternating classes); the first `flip` labels flipped.
fn blobs(n: usize, flip: usize, rng: &mut StdRng, dev: &Device) -> Result<(Tensor, Tensor)> {
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for i in 0..n {
        let c = (i % 2) as u32;
        x.push(2.0 * c as f32 - 1.0 + rng.random_range(-0.8..0.8));
        x.push(rng.random_range(-1.0..1.0));
        y.push(if i < flip { 1 - c } else { c });
    }
    let x = Tensor::from_vec(x, (n, 2), dev)?;
    Ok((x, Tensor::from_vec(y, n, dev)?))
}

fn main() -> Result<()> {
    // SAFETY: the first statement of main; no other thread exists yet.
    unsafe { zoo_models::init() };
    let w = run()?;
    let (flipped, clean): (f32, f32) = (w[..8].iter().sum(), w[8..].iter().sum());
    println!("L2RW weight on the 8 flipped labels {flipped:.3}, on the 24 clean {clean:.3}");
    Ok(())
}

/// The noisy batch's example weights (the step used them).
pub fn run() -> Result<Vec<f32>> {
    meta::require_second_order()?;
    let (dev, mut rng) = (Device::Cpu, StdRng::seed_from_u64(0));
    let mut b = Builder::new(&dev, &mut rng);
    b.linear_default("hidden", 2, 16)?;
    b.linear_default("head", 16, 2)?;
    let net = Blobs { store: b.finish() };
    let (x, y) = blobs(32, 8, &mut rng, &dev)?;
    let (xm, ym) = blobs(16, 0, &mut rng, &dev)?;
    // Weights from dL_meta/dε after one virtual SGD step (lr 0.1) on the ε-weighted batch loss.
    let theta = net.store().params();
    let g = meta::l2rw_grad(&net, &theta, (&x, &y), (&xm, &ym), 0.1, None)?;
    let w = meta::l2rw_weights(&g.grads[0])?;
    // The real step on the weighted loss.
    let logits = net.forward(&theta, &x, &mut Ctx::train_no_rng(true))?;
    let real = loss::weighted_ce(&logits, &y, &w, loss::Reduction::Sum)?;
    Sgd::new(0.0, false, 0.0)?.step(net.store(), &backprop::backward(&real)?, 0.1)?;
    Ok(w.to_vec1::<f32>()?)
}
