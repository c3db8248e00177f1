//! Architecture tests: output shapes of every model and parameter counts against published or
//! hand-computed PyTorch counts.

use candle_core::{DType, Device, Result, Tensor};
use rand::rngs::StdRng;
use rand::SeedableRng;
use zoo_models::models::*;
use zoo_models::{Classifier, Ctx};

fn input(shape: &[usize]) -> Result<Tensor> {
    let mut rng = StdRng::seed_from_u64(7);
    zoo_models::init::Init::Normal { std: 1.0 }.tensor(shape, DType::F32, &Device::Cpu, &mut rng)
}

/// Eval and train forwards give `(b, classes)` logits and `(b, feature_dim)` features.
fn check_shapes(m: &dyn Classifier, x_shape: &[usize]) -> Result<()> {
    let x = input(x_shape)?;
    let p = m.store().params();
    let b = x_shape[0];
    let f = m.features(&p, &x, &mut Ctx::eval())?;
    assert_eq!(f.dims(), &[b, m.feature_dim()]);
    let y = m.forward(&p, &x, &mut Ctx::eval())?;
    assert_eq!(y.dims(), &[b, m.num_classes()]);
    let mut rng = StdRng::seed_from_u64(1);
    let y = m.forward(&p, &x, &mut Ctx::train(&mut rng))?;
    assert_eq!(y.dims(), &[b, m.num_classes()]);
    let v: Vec<f32> = y.flatten_all()?.to_vec1()?;
    assert!(v.iter().all(|v| v.is_finite()), "non-finite logits");
    Ok(())
}

fn rng() -> StdRng {
    StdRng::seed_from_u64(0)
}

#[test]
fn mlp_shapes_and_count() -> Result<()> {
    let mut cfg = MlpConfig::new(&[784, 1200, 1200, 10]);
    cfg.input_dropout = 0.2;
    cfg.hidden_dropout = 0.5;
    let m = Mlp::new(cfg, &mut rng(), &Device::Cpu)?;
    check_shapes(&m, &[3, 1, 28, 28])?;
    // 784·1200+1200 + 1200·1200+1200 + 1200·10+10 (hand count).
    assert_eq!(m.store().num_params(), 2_395_210);
    assert_eq!(m.head(), ("layers.2.weight", Some("layers.2.bias")));
    Ok(())
}

#[test]
fn lenet_shapes_and_count() -> Result<()> {
    let m = LeNet::new(LeNetConfig::mnist(1), &mut rng(), &Device::Cpu)?;
    check_shapes(&m, &[2, 1, 28, 28])?;
    // conv 1·16·25+16, 16·32·25+32, 32·64·25+64; fc 1024·100+100, 100+1: the variables of
    // Ren et al.'s TensorFlow model (w1..w5, b1..b5).
    assert_eq!(
        m.store().num_params(),
        416 + 12_832 + 51_264 + 102_500 + 101
    );
    let m10 = LeNet::new(LeNetConfig::mnist(10), &mut rng(), &Device::Cpu)?;
    check_shapes(&m10, &[2, 1, 28, 28])?;
    assert!(
        LeNet::new(LeNetConfig::mnist(10), &mut rng(), &Device::Cpu)?
            .forward(
                &m10.store().params(),
                &input(&[2, 3, 28, 28])?,
                &mut Ctx::eval()
            )
            .is_err()
    );
    Ok(())
}

#[test]
fn resnet_cifar_shapes_and_counts() -> Result<()> {
    // Counts printed by Idelbayev's pytorch_resnet_cifar10 (the code MWN and LDAM reuse) for
    // CIFAR-10: resnet20 269,722, resnet32 464,154, resnet56 853,018 (He et al. 2016 Table 6:
    // 0.27M, 0.46M, 0.85M). ResNet-8 is a hand count: 464 + 4,672 + 13,952 + 55,552 + 650.
    for (depth, count) in [(8, 75_290), (20, 269_722), (32, 464_154), (56, 853_018)] {
        let m = ResNetCifar::new(ResNetCifarConfig::new(depth, 10), &mut rng(), &Device::Cpu)?;
        assert_eq!(m.store().num_params(), count, "ResNet-{depth}");
        if depth <= 20 {
            check_shapes(&m, &[2, 3, 32, 32])?;
        }
    }
    let m = ResNetCifar::new(ResNetCifarConfig::new(32, 100), &mut rng(), &Device::Cpu)?;
    assert_eq!(m.feature_dim(), 64);
    assert_eq!(m.num_classes(), 100);
    assert!(ResNetCifar::new(ResNetCifarConfig::new(30, 10), &mut rng(), &Device::Cpu).is_err());
    Ok(())
}

#[test]
fn wide_resnet_shapes_and_count() -> Result<()> {
    // WRN-28-10 on CIFAR-10: 36,479,194 parameters (Zagoruyko & Komodakis 2016 Table 1: 36.5M;
    // the exact figure of xternalz/WideResNet-pytorch).
    let m = WideResNet::new(WideResNetConfig::new(28, 10, 10), &mut rng(), &Device::Cpu)?;
    assert_eq!(m.store().num_params(), 36_479_194);
    assert_eq!(m.feature_dim(), 640);
    drop(m);
    let mut cfg = WideResNetConfig::new(10, 2, 10);
    cfg.dropout = 0.3;
    let m = WideResNet::new(cfg, &mut rng(), &Device::Cpu)?;
    check_shapes(&m, &[2, 3, 32, 32])?;
    Ok(())
}

#[test]
fn preact_resnet18_shapes_and_count() -> Result<()> {
    // kuangliu/pytorch-cifar PreActResNet18 with 10 classes: 11,171,146 parameters (11.17M).
    let m = PreActResNet18::new(PreActResNetConfig::new(10), &mut rng(), &Device::Cpu)?;
    assert_eq!(m.store().num_params(), 11_171_146);
    check_shapes(&m, &[2, 3, 32, 32])?;
    Ok(())
}

#[test]
fn imagenet_resnets_shapes_and_counts() -> Result<()> {
    // ResNet-10 (basic [1,1,1,1], 1000 classes), hand count from torchvision's layout:
    // stem 9,408+128, stages 73,984 + 230,144 + 919,040 + 3,673,088, fc 513,000.
    let m = ResNet10::new(ResNetConfig::resnet10(1000), &mut rng(), &Device::Cpu)?;
    assert_eq!(m.store().num_params(), 5_418_792);
    check_shapes(&m, &[2, 3, 64, 64])?;
    // torchvision resnext50_32x4d: 25,028,904 parameters.
    let m = ResNeXt50::new(
        ResNetConfig::resnext50_32x4d(1000),
        &mut rng(),
        &Device::Cpu,
    )?;
    assert_eq!(m.store().num_params(), 25_028_904);
    assert_eq!(m.feature_dim(), 2048);
    check_shapes(&m, &[2, 3, 64, 64])?;
    Ok(())
}

#[test]
fn densenet40_shapes_and_count() -> Result<()> {
    // DenseNet (L=40, k=12) for CIFAR-10: 1,019,722 parameters (Huang et al. Table 2: 1.0M),
    // hand count 432 + 108,240 + 25,920 + 298,320 + 93,024 + 488,400 + 896 + 4,490.
    let mut cfg = DenseNetConfig::densenet40(10);
    cfg.dropout = 0.2;
    let m = DenseNet40::new(cfg, &mut rng(), &Device::Cpu)?;
    assert_eq!(m.store().num_params(), 1_019_722);
    assert_eq!(m.feature_dim(), 448);
    check_shapes(&m, &[2, 3, 32, 32])?;
    Ok(())
}

#[test]
fn vnet_shape_range_and_count() -> Result<()> {
    let v = VNet::new(100, &mut rng(), &Device::Cpu)?;
    assert_eq!(v.store().num_params(), 301);
    let losses = Tensor::new(&[[0.1f32], [1.0], [5.0]], &Device::Cpu)?;
    let w = v.forward(&v.store().params(), &losses)?;
    assert_eq!(w.dims(), &[3, 1]);
    for x in w.flatten_all()?.to_vec1::<f32>()? {
        assert!(x > 0.0 && x < 1.0);
    }
    assert!(v
        .forward(&v.store().params(), &losses.flatten_all()?)
        .is_err());
    Ok(())
}

#[test]
fn same_seed_same_weights() -> Result<()> {
    let a = ResNetCifar::new(ResNetCifarConfig::new(8, 10), &mut rng(), &Device::Cpu)?;
    let b = ResNetCifar::new(ResNetCifarConfig::new(8, 10), &mut rng(), &Device::Cpu)?;
    let c = ResNetCifar::new(
        ResNetCifarConfig::new(8, 10),
        &mut StdRng::seed_from_u64(1),
        &Device::Cpu,
    )?;
    let (pa, pb, pc) = (a.store().params(), b.store().params(), c.store().params());
    let w = "layer2.0.conv1.weight";
    let d_ab = (pa.get(w)? - pb.get(w)?)?
        .abs()?
        .sum_all()?
        .to_scalar::<f32>()?;
    let d_ac = (pa.get(w)? - pc.get(w)?)?
        .abs()?
        .sum_all()?
        .to_scalar::<f32>()?;
    assert_eq!(d_ab, 0.0);
    assert!(d_ac > 0.0);
    Ok(())
}
