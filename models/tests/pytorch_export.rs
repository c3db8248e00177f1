//! Writes checkpoints and reference outputs that `pytorch_compat.py` (next to this file) loads
//! into PyTorch re-implementations of each architecture with `load_state_dict(strict=True)` and
//! compares logits. Ignored by default (needs PyTorch):
//!
//! ```text
//! ZOO_EXPORT_DIR=/tmp/zoo-export cargo test -p zoo-models --test pytorch_export -- --ignored
//! python models/tests/pytorch_compat.py /tmp/zoo-export
//! ```

use candle_core::{DType, Device, Result, Tensor};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::BTreeMap;
use zoo_models::checkpoint::save_tensors;
use zoo_models::init::Init;
use zoo_models::models::*;
use zoo_models::{Classifier, Ctx};

fn export(dir: &std::path::Path, name: &str, m: &dyn Classifier, x_shape: &[usize]) -> Result<()> {
    let mut r = StdRng::seed_from_u64(3);
    let x = Init::Normal { std: 1.0 }.tensor(x_shape, DType::F32, &Device::Cpu, &mut r)?;
    // Two real steps' worth of running statistics, so eval mode is not the trivial 0/1 buffers.
    for _ in 0..2 {
        m.forward(&m.store().params(), &x, &mut Ctx::train(&mut r))?;
    }
    m.store().save(dir.join(format!("{name}.safetensors")))?;
    let p = m.store().params();
    let mut io = BTreeMap::new();
    io.insert("x".to_string(), x.clone());
    io.insert("eval".to_string(), m.forward(&p, &x, &mut Ctx::eval())?);
    io.insert(
        "train".to_string(),
        m.forward(&p, &x, &mut Ctx::train_no_rng(false))?,
    );
    save_tensors(dir.join(format!("{name}.io.safetensors")), &io)
}

#[test]
#[ignore = "writes files for pytorch_compat.py"]
fn export_for_pytorch() -> Result<()> {
    let dir = std::path::PathBuf::from(
        std::env::var("ZOO_EXPORT_DIR").unwrap_or_else(|_| "/tmp/zoo-export".into()),
    );
    let d = &Device::Cpu;
    let rng = || StdRng::seed_from_u64(0);
    export(
        &dir,
        "mlp",
        &Mlp::new(MlpConfig::new(&[20, 30, 30, 5]), &mut rng(), d)?,
        &[4, 20],
    )?;
    export(
        &dir,
        "lenet",
        &LeNet::new(LeNetConfig::mnist(10), &mut rng(), d)?,
        &[4, 1, 28, 28],
    )?;
    let m = ResNetCifar::new(ResNetCifarConfig::new(20, 10), &mut rng(), d)?;
    export(&dir, "resnet20", &m, &[4, 3, 32, 32])?;
    let m = WideResNet::new(WideResNetConfig::new(16, 2, 10), &mut rng(), d)?;
    export(&dir, "wrn16_2", &m, &[4, 3, 32, 32])?;
    let m = PreActResNet18::new(PreActResNetConfig::new(10), &mut rng(), d)?;
    export(&dir, "preact18", &m, &[2, 3, 32, 32])?;
    let mut c = DenseNetConfig::densenet40(10);
    c.depth = 13;
    export(
        &dir,
        "densenet13",
        &DenseNet40::new(c, &mut rng(), d)?,
        &[4, 3, 32, 32],
    )?;
    export(
        &dir,
        "resnet10",
        &ResNet10::new(ResNetConfig::resnet10(7), &mut rng(), d)?,
        &[2, 3, 64, 64],
    )?;
    let mut c = ResNetConfig::resnext50_32x4d(7);
    c.layers = [1, 2, 1, 1];
    export(
        &dir,
        "resnext_small",
        &ResNeXt50::new(c, &mut rng(), d)?,
        &[2, 3, 64, 64],
    )?;
    let v = VNet::new(100, &mut rng(), d)?;
    v.store().save(dir.join("vnet.safetensors"))?;
    let l = Tensor::new(&[[0.1f32], [1.0], [3.0]], d)?;
    let mut io = BTreeMap::new();
    io.insert("x".to_string(), l.clone());
    io.insert("eval".to_string(), v.forward(&v.store().params(), &l)?);
    save_tensors(dir.join("vnet.io.safetensors"), &io)
}
