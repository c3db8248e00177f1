//! Functional parameters, BatchNorm statistics, gradients reaching every variable, dropout
//! determinism, checkpoints, freezing and max-norm.

use candle_core::{DType, Device, Result, Tensor, Var};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::BTreeMap;
use zoo_models::init::Init;
use zoo_models::layers::{self, Builder};
use zoo_models::models::*;
use zoo_models::{Classifier, Ctx, ParamSet};

fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

fn randn(shape: &[usize], seed: u64) -> Result<Tensor> {
    Init::Normal { std: 1.0 }.tensor(shape, DType::F32, &Device::Cpu, &mut rng(seed))
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f64> {
    (a.to_dtype(DType::F64)? - b.to_dtype(DType::F64)?)?
        .abs()?
        .flatten_all()?
        .max(0)?
        .to_scalar::<f64>()
}

fn small_resnet() -> Result<ResNetCifar> {
    ResNetCifar::new(ResNetCifarConfig::new(8, 10), &mut rng(0), &Device::Cpu)
}

#[test]
fn modified_param_set_changes_output_and_leaves_vars() -> Result<()> {
    let m = small_resnet()?;
    let x = randn(&[4, 3, 16, 16], 1)?;
    let p = m.store().params();
    let before = m
        .store()
        .var("layer1.0.conv1.weight")?
        .as_detached_tensor()
        .copy()?;
    let y0 = m.forward(&p, &x, &mut Ctx::train_no_rng(false))?;
    // Virtual parameters θ' = θ − 0.1·1 on every tensor.
    let q = p.map(|_, t| t.affine(1.0, -0.1))?;
    let y1 = m.forward(&q, &x, &mut Ctx::train_no_rng(false))?;
    assert!(
        max_abs_diff(&y0, &y1)? > 1e-3,
        "virtual parameters had no effect"
    );
    let after = m.store().var("layer1.0.conv1.weight")?.as_detached_tensor();
    assert_eq!(max_abs_diff(&before, &after)?, 0.0);
    // The store's own set reproduces the first output.
    let y2 = m.forward(&m.store().params(), &x, &mut Ctx::train_no_rng(false))?;
    assert_eq!(max_abs_diff(&y0, &y2)?, 0.0);
    // A missing name is a clear error.
    let mut r = p.clone().into_map();
    r.remove("linear.bias");
    let err = m
        .forward(&ParamSet::new(r), &x, &mut Ctx::eval())
        .unwrap_err();
    assert!(err.to_string().contains("linear.bias"), "{err}");
    Ok(())
}

#[test]
fn f64_param_set_runs_with_f32_store() -> Result<()> {
    let m = small_resnet()?;
    let x = randn(&[2, 3, 8, 8], 2)?;
    let p64 = m.store().params().to_dtype(DType::F64)?;
    let y32 = m.forward(&m.store().params(), &x, &mut Ctx::eval())?;
    let y64 = m.forward(&p64, &x.to_dtype(DType::F64)?, &mut Ctx::eval())?;
    assert_eq!(y64.dtype(), DType::F64);
    assert!(max_abs_diff(&y32, &y64)? < 1e-4);
    Ok(())
}

#[test]
fn batch_norm_running_stats_follow_pytorch() -> Result<()> {
    let mut r = rng(0);
    let mut b = Builder::new(&Device::Cpu, &mut r);
    b.bn("bn", 2)?;
    let store = b.finish();
    let p = store.params();
    // Channel 0: values 1,2,3,4 (mean 2.5, unbiased var 5/3); channel 1: 0,0,2,2 (mean 1, var 4/3).
    let x = Tensor::new(
        &[[[[1f32, 2.]], [[0., 0.]]], [[[3., 4.]], [[2., 2.]]]],
        &Device::Cpu,
    )?;
    assert_eq!(x.dims(), &[2, 2, 1, 2]);
    // No update without update_stats.
    layers::batch_norm(&store, &p, "bn", &x, &Ctx::train_no_rng(false))?;
    assert_eq!(
        store.buffer("bn.running_mean")?.to_vec1::<f32>()?,
        [0.0, 0.0]
    );
    assert_eq!(store.counter("bn.num_batches_tracked")?, 0);
    let y = layers::batch_norm(&store, &p, "bn", &x, &Ctx::train_no_rng(true))?;
    let rm = store.buffer("bn.running_mean")?.to_vec1::<f32>()?;
    let rv = store.buffer("bn.running_var")?.to_vec1::<f32>()?;
    let close = |a: f32, b: f64| (a as f64 - b).abs() < 1e-6;
    assert!(close(rm[0], 0.25) && close(rm[1], 0.1), "{rm:?}");
    assert!(close(rv[0], 0.9 + 0.1 * 5.0 / 3.0), "{rv:?}");
    assert!(close(rv[1], 0.9 + 0.1 * 4.0 / 3.0), "{rv:?}");
    assert_eq!(store.counter("bn.num_batches_tracked")?, 1);
    // Training output uses the biased batch variance: channel 0 value 1 → (1−2.5)/√(1.25+ε).
    let y0 = y.flatten_all()?.to_vec1::<f32>()?[0] as f64;
    assert!((y0 - (-1.5 / (1.25f64 + 1e-5).sqrt())).abs() < 1e-5);
    // Eval uses the running statistics.
    let ye = layers::batch_norm(&store, &p, "bn", &x, &Ctx::eval())?;
    let ye0 = ye.flatten_all()?.to_vec1::<f32>()?[0] as f64;
    let expect = (1.0 - 0.25) / ((0.9 + 0.1 * 5.0 / 3.0) + 1e-5f64).sqrt();
    assert!((ye0 - expect).abs() < 1e-5, "{ye0} vs {expect}");
    Ok(())
}

#[test]
fn model_bn_stats_change_only_on_real_steps() -> Result<()> {
    let m = small_resnet()?;
    let x = randn(&[4, 3, 8, 8], 3)?;
    let before = m.store().buffers();
    let p = m.store().params();
    m.forward(&p, &x, &mut Ctx::eval())?;
    m.forward(&p, &x, &mut Ctx::train_no_rng(false))?;
    for (n, t) in m.store().buffers() {
        assert_eq!(
            max_abs_diff(&t, &before[&n])?,
            0.0,
            "{n} changed without update_stats"
        );
    }
    m.forward(&p, &x, &mut Ctx::train_no_rng(true))?;
    for (n, t) in m.store().buffers() {
        assert!(
            max_abs_diff(&t, &before[&n])? > 0.0,
            "{n} did not change on a real step"
        );
    }
    assert_eq!(m.store().counter("layer3.0.bn2.num_batches_tracked")?, 1);
    Ok(())
}

/// Every variable gets a non-zero gradient from a train-mode forward (catches detached ops).
fn all_params_get_gradients(m: &dyn Classifier, x: &Tensor) -> Result<()> {
    let p = m.store().params();
    let mut r = rng(5);
    let y = m.forward(&p, x, &mut Ctx::train(&mut r))?;
    // A loss that depends on every logit with different weights.
    let w = randn(y.dims(), 9)?;
    let grads = (y * w)?.sum_all()?.backward()?;
    for (n, v) in m.store().vars() {
        let g = grads
            .get(v.as_tensor())
            .unwrap_or_else(|| panic!("no gradient for {n}"));
        let s = g
            .abs()?
            .sum_all()?
            .to_dtype(DType::F64)?
            .to_scalar::<f64>()?;
        assert!(
            s > 0.0 && s.is_finite(),
            "zero/non-finite gradient for {n}: {s}"
        );
    }
    Ok(())
}

#[test]
fn every_parameter_receives_a_gradient() -> Result<()> {
    let d = &Device::Cpu;
    let mut cfg = MlpConfig::new(&[12, 16, 16, 3]);
    cfg.input_dropout = 0.2;
    cfg.hidden_dropout = 0.5;
    all_params_get_gradients(&Mlp::new(cfg, &mut rng(0), d)?, &randn(&[8, 12], 1)?)?;
    all_params_get_gradients(
        &LeNet::new(LeNetConfig::mnist(10), &mut rng(0), d)?,
        &randn(&[4, 1, 28, 28], 1)?,
    )?;
    all_params_get_gradients(&small_resnet()?, &randn(&[4, 3, 16, 16], 1)?)?;
    let mut w = WideResNetConfig::new(10, 1, 10);
    w.dropout = 0.3;
    all_params_get_gradients(
        &WideResNet::new(w, &mut rng(0), d)?,
        &randn(&[4, 3, 16, 16], 1)?,
    )?;
    let pre = PreActResNet18::new(PreActResNetConfig::new(10), &mut rng(0), d)?;
    all_params_get_gradients(&pre, &randn(&[2, 3, 16, 16], 1)?)?;
    let mut dn = DenseNetConfig::densenet40(10);
    dn.depth = 10;
    dn.dropout = 0.2;
    all_params_get_gradients(
        &DenseNet40::new(dn, &mut rng(0), d)?,
        &randn(&[4, 3, 16, 16], 1)?,
    )?;
    let r10 = ResNet10::new(ResNetConfig::resnet10(5), &mut rng(0), d)?;
    all_params_get_gradients(&r10, &randn(&[2, 3, 32, 32], 1)?)?;
    let mut rx = ResNetConfig::resnext50_32x4d(5);
    rx.layers = [1, 1, 1, 1];
    let rx = ResNeXt50::new(rx, &mut rng(0), d)?;
    all_params_get_gradients(&rx, &randn(&[2, 3, 32, 32], 1)?)?;
    // VNet: gradient of the weights w.r.t. its parameters.
    let v = VNet::new(100, &mut rng(0), d)?;
    let losses = Tensor::new(&[[0.5f32], [2.0], [0.1]], d)?;
    let grads = v
        .forward(&v.store().params(), &losses)?
        .sum_all()?
        .backward()?;
    for (n, var) in v.store().vars() {
        assert!(
            grads.get(var.as_tensor()).is_some(),
            "no gradient for VNet {n}"
        );
    }
    Ok(())
}

#[test]
fn dropout_is_seeded_and_has_the_right_rate() -> Result<()> {
    let x = Tensor::ones((200, 1000), DType::F32, &Device::Cpu)?;
    let (mut a, mut b, mut c) = (rng(3), rng(3), rng(4));
    let ya = layers::dropout(&x, 0.3, &mut Ctx::train(&mut a))?;
    let yb = layers::dropout(&x, 0.3, &mut Ctx::train(&mut b))?;
    let yc = layers::dropout(&x, 0.3, &mut Ctx::train(&mut c))?;
    assert_eq!(max_abs_diff(&ya, &yb)?, 0.0);
    assert!(max_abs_diff(&ya, &yc)? > 0.0);
    let v = ya.flatten_all()?.to_vec1::<f32>()?;
    let kept = v.iter().filter(|&&e| e != 0.0).count() as f64 / v.len() as f64;
    // 200k Bernoulli(0.7) draws: sd 0.001, so ±0.005 is a 5-sigma band.
    assert!((kept - 0.7).abs() < 0.005, "kept fraction {kept}");
    assert!(v
        .iter()
        .all(|&e| e == 0.0 || (e as f64 - 1.0 / 0.7).abs() < 1e-6));
    // Eval mode is the identity; training without an rng is an error.
    assert_eq!(
        max_abs_diff(&layers::dropout(&x, 0.3, &mut Ctx::eval())?, &x)?,
        0.0
    );
    assert!(layers::dropout(&x, 0.3, &mut Ctx::train_no_rng(true)).is_err());
    assert!(layers::dropout(&x, 1.0, &mut Ctx::eval()).is_err());
    // Whole-model determinism.
    let mut cfg = MlpConfig::new(&[20, 30, 4]);
    cfg.input_dropout = 0.2;
    cfg.hidden_dropout = 0.5;
    let m = Mlp::new(cfg, &mut rng(0), &Device::Cpu)?;
    let xi = randn(&[5, 20], 1)?;
    let (mut r1, mut r2) = (rng(9), rng(9));
    let y1 = m.forward(&m.store().params(), &xi, &mut Ctx::train(&mut r1))?;
    let y2 = m.forward(&m.store().params(), &xi, &mut Ctx::train(&mut r2))?;
    assert_eq!(max_abs_diff(&y1, &y2)?, 0.0);
    Ok(())
}

#[test]
fn save_load_roundtrip_is_exact() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("zoo-models-ckpt-{}", std::process::id()));
    let path = dir.join("sub/model.safetensors");
    let a = small_resnet()?;
    let x = randn(&[4, 3, 8, 8], 1)?;
    a.forward(&a.store().params(), &x, &mut Ctx::train_no_rng(true))?;
    a.forward(&a.store().params(), &x, &mut Ctx::train_no_rng(true))?;
    a.store().save(&path)?;
    let b = ResNetCifar::new(ResNetCifarConfig::new(8, 10), &mut rng(99), &Device::Cpu)?;
    b.store().load(&path)?;
    let (sa, sb) = (a.store().state_dict()?, b.store().state_dict()?);
    assert_eq!(sa.keys().collect::<Vec<_>>(), sb.keys().collect::<Vec<_>>());
    assert!(sa.contains_key("layer1.0.bn1.num_batches_tracked"));
    assert!(sa.contains_key("layer1.0.bn1.running_var"));
    for (n, t) in &sa {
        assert_eq!(max_abs_diff(t, &sb[n])?, 0.0, "{n}");
    }
    assert_eq!(b.store().counter("bn1.num_batches_tracked")?, 2);
    let ya = a.forward(&a.store().params(), &x, &mut Ctx::eval())?;
    let yb = b.forward(&b.store().params(), &x, &mut Ctx::eval())?;
    assert_eq!(max_abs_diff(&ya, &yb)?, 0.0);
    // A different architecture is refused with the offending names, and nothing is modified.
    let c = ResNetCifar::new(ResNetCifarConfig::new(8, 100), &mut rng(1), &Device::Cpu)?;
    let w_before = c.store().var("conv1.weight")?.as_detached_tensor().copy()?;
    let err = c.store().load(&path).unwrap_err().to_string();
    assert!(err.contains("linear.weight"), "{err}");
    assert_eq!(
        max_abs_diff(&w_before, c.store().var("conv1.weight")?.as_tensor())?,
        0.0
    );
    let d = Mlp::new(MlpConfig::new(&[4, 3]), &mut rng(1), &Device::Cpu)?;
    let err = d.store().load(&path).unwrap_err().to_string();
    assert!(
        err.contains("missing") && err.contains("unexpected"),
        "{err}"
    );
    // No temporary file is left behind.
    let left: Vec<_> = std::fs::read_dir(dir.join("sub"))
        .map_err(candle_core::Error::wrap)?
        .collect();
    assert_eq!(left.len(), 1);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[test]
fn generic_tensor_files_roundtrip() -> Result<()> {
    let path =
        std::env::temp_dir().join(format!("zoo-models-t-{}.safetensors", std::process::id()));
    let mut m = BTreeMap::new();
    m.insert("a".to_string(), randn(&[3, 4], 1)?);
    m.insert("step".to_string(), Tensor::new(7i64, &Device::Cpu)?);
    zoo_models::checkpoint::save_tensors(&path, &m)?;
    let r = zoo_models::checkpoint::load_tensors(&path, &Device::Cpu)?;
    assert_eq!(max_abs_diff(&m["a"], &r["a"])?, 0.0);
    assert_eq!(r["step"].dims(), &[] as &[usize]);
    assert_eq!(r["step"].to_scalar::<i64>()?, 7);
    let _ = std::fs::remove_file(&path);
    assert!(zoo_models::checkpoint::load_tensors(&path, &Device::Cpu).is_err());
    Ok(())
}

#[test]
fn freezing_and_head_reset() -> Result<()> {
    let m = small_resnet()?;
    m.store()
        .freeze_all_except(&["linear.weight", "linear.bias"])?;
    assert_eq!(m.store().trainable_vars().len(), 2);
    let x = randn(&[4, 3, 8, 8], 1)?;
    let y = m.forward(&m.store().params(), &x, &mut Ctx::train_no_rng(false))?;
    let grads = y.sqr()?.sum_all()?.backward()?;
    assert!(grads
        .get(m.store().var("linear.weight")?.as_tensor())
        .is_some());
    assert!(grads
        .get(m.store().var("conv1.weight")?.as_tensor())
        .is_none());
    m.store().unfreeze_all();
    assert!(m.store().is_trainable("conv1.weight"));
    assert!(m.store().set_trainable("nope", false).is_err());
    // reset_head: same seed → same head; the backbone is untouched.
    let conv = m.store().var("conv1.weight")?.as_detached_tensor().copy()?;
    m.reset_head(&mut rng(11))?;
    let h1 = m
        .store()
        .var("linear.weight")?
        .as_detached_tensor()
        .copy()?;
    m.reset_head(&mut rng(11))?;
    let h2 = m.store().var("linear.weight")?.as_detached_tensor();
    assert_eq!(max_abs_diff(&h1, &h2)?, 0.0);
    let bound = 1.0 / 64f64.sqrt();
    assert!(h1.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()? as f64 <= bound);
    assert_eq!(
        max_abs_diff(&conv, m.store().var("conv1.weight")?.as_tensor())?,
        0.0
    );
    Ok(())
}

#[test]
fn max_norm_projects_rows_onto_the_ball() -> Result<()> {
    let mut cfg = MlpConfig::new(&[3, 2, 2]);
    cfg.max_norm = Some(2.0);
    let m = Mlp::new(cfg, &mut rng(0), &Device::Cpu)?;
    let w0 = m.store().var("layers.0.weight")?;
    // Row 0 has norm 5 (3-4-0), row 1 norm 1.
    w0.set(&Tensor::new(&[[3f32, 4., 0.], [0., 1., 0.]], &Device::Cpu)?)?;
    let out_w = m.store().var("layers.1.weight")?;
    out_w.set(&Tensor::new(&[[30f32, 40.], [0., 1.]], &Device::Cpu)?)?;
    m.apply_constraints()?;
    let w = w0.as_tensor().to_vec2::<f32>()?;
    let expect = [[1.2f32, 1.6, 0.0], [0.0, 1.0, 0.0]];
    for (r, e) in w.iter().zip(expect.iter()) {
        for (a, b) in r.iter().zip(e.iter()) {
            assert!((a - b).abs() < 1e-5, "{w:?}");
        }
    }
    // The output layer is not constrained.
    assert_eq!(out_w.as_tensor().to_vec2::<f32>()?[0], [30.0, 40.0]);
    Ok(())
}

#[test]
fn init_schemes_have_the_right_spread() -> Result<()> {
    let d = &Device::Cpu;
    let std_of = |t: &Tensor| -> Result<f64> {
        let v = t.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
        let m = v.iter().sum::<f64>() / v.len() as f64;
        Ok((v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len() as f64).sqrt())
    };
    // (c_out, c_in, k, k) = (64, 32, 3, 3): fan_in 288, fan_out 576.
    let shape = [64, 32, 3, 3];
    let t = Init::KaimingNormalFanOut.tensor(&shape[..], DType::F32, d, &mut rng(0))?;
    assert!((std_of(&t)? / (2.0f64 / 576.0).sqrt() - 1.0).abs() < 0.03);
    let t = Init::KaimingNormalFanIn.tensor(&shape[..], DType::F32, d, &mut rng(0))?;
    assert!((std_of(&t)? / (2.0f64 / 288.0).sqrt() - 1.0).abs() < 0.03);
    let t = Init::PytorchDefault.tensor(&shape[..], DType::F32, d, &mut rng(0))?;
    let b = 1.0 / 288f64.sqrt();
    assert!((std_of(&t)? / (b / 3f64.sqrt()) - 1.0).abs() < 0.03);
    let t = Init::TruncatedNormal { std: 0.1 }.tensor(&shape[..], DType::F32, d, &mut rng(0))?;
    let mx = t.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
    assert!(mx <= 0.2);
    // std of N(0,1) truncated at ±2: 0.8796.
    assert!((std_of(&t)? / 0.08796 - 1.0).abs() < 0.03);
    assert!(Init::PytorchDefault
        .tensor(5, DType::F32, d, &mut rng(0))
        .is_err());
    Ok(())
}

#[test]
fn option_a_subsample_matches_python_slicing() -> Result<()> {
    let x = Tensor::arange(0f32, 25., &Device::Cpu)?.reshape((1, 1, 5, 5))?;
    let s = layers::subsample2(&x)?;
    // x[:, :, ::2, ::2] of a 5×5 ramp: rows 0,2,4 × cols 0,2,4.
    assert_eq!(
        s.flatten_all()?.to_vec1::<f32>()?,
        [0., 2., 4., 10., 12., 14., 20., 22., 24.]
    );
    let v = Var::from_tensor(&x)?;
    let g = layers::subsample2(v.as_tensor())?.sum_all()?.backward()?;
    let g = g
        .get(v.as_tensor())
        .expect("gradient")
        .flatten_all()?
        .to_vec1::<f32>()?;
    assert_eq!(g.iter().sum::<f32>(), 9.0);
    assert_eq!(g[2], 1.0);
    assert_eq!(g[1], 0.0);
    Ok(())
}
