//! The candle path (what CUDA and Metal run), checked on the CPU: no zero-size tensor in any
//! library model's forward, backward or meta-step graph; PyTorch's ReLU gradient at 0 on both
//! backends; a strided conv kernel gives the contiguous kernel's gradient (candle #3836); and both
//! backends train side by side in one process.

mod ops_common;

use candle_core::{DType, Device, Result, Tensor, Var};
use ops_common::randn;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use zoo_models::loss::{cross_entropy, Reduction};
use zoo_models::models::{
    DenseNet40, DenseNetConfig, LeNet, LeNetConfig, Mlp, MlpConfig, PreActResNet18,
    PreActResNetConfig, ResNet, ResNetCifar, ResNetCifarConfig, ResNetConfig, VNet, WideResNet,
    WideResNetConfig,
};
use zoo_models::ops::nonempty::{check_grads, check_graph};
use zoo_models::ops::{self, with_backend, Backend};
use zoo_models::{meta, Classifier, Ctx};

fn labels(n: usize, classes: u32, seed: u64) -> Tensor {
    let mut rng = StdRng::seed_from_u64(seed);
    let v: Vec<u32> = (0..n).map(|_| rng.random_range(0..classes)).collect();
    Tensor::from_vec(v, n, &Device::Cpu).unwrap()
}

/// Every library model, small, with the input shape it takes.
fn models(rng: &mut StdRng) -> Vec<(&'static str, Box<dyn Classifier>, [usize; 3])> {
    let d = Device::Cpu;
    let mut dense = DenseNetConfig::densenet40(3);
    dense.depth = 7;
    let mut wrn = WideResNetConfig::new(10, 1, 3);
    wrn.dropout = 0.3;
    vec![
        (
            "ResNet-8",
            Box::new(ResNetCifar::new(ResNetCifarConfig::new(8, 3), rng, &d).unwrap()),
            [3, 8, 8],
        ),
        (
            "LeNet",
            Box::new(LeNet::new(LeNetConfig::mnist(3), rng, &d).unwrap()),
            [1, 28, 28],
        ),
        (
            "MLP",
            Box::new(Mlp::new(MlpConfig::new(&[12, 16, 3]), rng, &d).unwrap()),
            [1, 3, 4],
        ),
        (
            "WRN-10-1 (dropout)",
            Box::new(WideResNet::new(wrn, rng, &d).unwrap()),
            [3, 8, 8],
        ),
        (
            "DenseNet-7",
            Box::new(DenseNet40::new(dense, rng, &d).unwrap()),
            [3, 8, 8],
        ),
        (
            "PreAct ResNet-18",
            Box::new(PreActResNet18::new(PreActResNetConfig::new(3), rng, &d).unwrap()),
            [3, 8, 8],
        ),
        (
            // The ImageNet stem: 7×7 stride-2 convolution and 3/2/1 max pooling (padded).
            "ResNet-10",
            Box::new(ResNet::new(ResNetConfig::resnet10(3), rng, &d).unwrap()),
            [3, 32, 32],
        ),
    ]
}

/// On the candle path, every model's training forward, first-order backward and L2RW
/// meta-gradient (second order through the virtual step) build no zero-size tensor. CUDA
/// rejects them (candle #2327) and the CPU does not, so this walk is the check a CPU can make.
#[test]
fn candle_path_graphs_have_no_zero_size_tensors() -> Result<()> {
    with_backend(Backend::Candle, || {
        let mut rng = StdRng::seed_from_u64(1);
        for (name, model, [c, h, w]) in models(&mut rng) {
            let x = randn(&[4, c, h, w], 2, DType::F32);
            let y = labels(4, 3, 3);
            let p = model.store().params();
            let mut drop_rng = StdRng::seed_from_u64(4);
            let z = model.forward(&p, &x, &mut Ctx::virtual_train(&mut drop_rng))?;
            let loss = cross_entropy(&z, &y, Reduction::Mean)?;
            check_graph(&loss, name)?;
            let leaves: Vec<&Tensor> = p.iter().map(|(_, t)| t).collect();
            check_grads(&loss.backward()?, &leaves, name)?;
            let z = model.forward(&p, &x, &mut Ctx::eval())?;
            check_graph(&z, &format!("{name} eval"))?;
            let g = meta::l2rw_grad(
                model.as_ref(),
                &p,
                (&x, &y),
                (&x, &y),
                0.1,
                Some(&mut drop_rng),
            )?;
            check_graph(&g.grads[0], &format!("{name} L2RW meta-gradient"))?;
        }
        Ok(())
    })
}

/// Max pooling on the candle path with and without padding, at sizes that need no pad and
/// ones that need pads on one side only: values and gradients equal the fast path's, and no
/// graph holds an empty tensor (the padding-0 case built empty pads before).
#[test]
fn candle_max_pool_has_no_empty_pads() -> Result<()> {
    for (k, s, pad, hw) in [
        (2, 2, 0, 7),
        (3, 2, 0, 9),
        (3, 2, 1, 8),
        (3, 2, 1, 7),
        (3, 1, 1, 5),
    ] {
        let run = |b: Backend| -> Result<(Vec<f64>, Vec<f64>)> {
            with_backend(b, || {
                let x = Var::from_tensor(&randn(&[2, 3, hw, hw], 7, DType::F64))?;
                let y = ops::max_pool2d_ext(x.as_tensor(), k, s, pad)?;
                let l = (&y * &y)?.sum_all()?;
                check_graph(&l, &format!("pool {k}/{s}/{pad} on {hw}"))?;
                let g = l.backward()?;
                let gx = g.get(x.as_tensor()).expect("gradient");
                Ok((ops_common::to_vec(&y), ops_common::to_vec(gx)))
            })
        };
        let (fast, candle) = (run(Backend::Fast)?, run(Backend::Candle)?);
        assert_eq!(fast.0, candle.0, "pool {k}/{s}/{pad} on {hw}: values");
        // Overlapping windows add their gradients in another order: f64 reassociation only.
        for (a, b) in fast.1.iter().zip(&candle.1) {
            assert!(
                (a - b).abs() <= 1e-12 * b.abs().max(1.0),
                "pool {k}/{s}/{pad} on {hw}"
            );
        }
    }
    Ok(())
}

/// ReLU's gradient at exactly 0 is 0 on both paths (PyTorch's convention; candle's own `relu`
/// gives 1), for the plain, residual and fused ReLUs; NaN passes and −∞ gives 0 on both.
#[test]
fn relu_gradient_at_zero_is_zero_on_both_backends() -> Result<()> {
    let dev = Device::Cpu;
    for b in Backend::ALL {
        with_backend(b, || -> Result<()> {
            let x = Var::new(&[[-1f32, 0.0, 2.0], [0.0, 3.0, -0.5]], &dev)?;
            let zero = Tensor::zeros((2, 3), DType::F32, &dev)?;
            let cases: [(&str, Tensor); 3] = [
                ("relu", ops::relu(x.as_tensor())?),
                ("add_relu", ops::add_relu(x.as_tensor(), &zero)?),
                (
                    "linear_relu",
                    ops::linear_relu(
                        x.as_tensor(),
                        &Tensor::eye(3, DType::F32, &dev)?,
                        &Tensor::zeros(3, DType::F32, &dev)?,
                    )?,
                ),
            ];
            for (what, y) in cases {
                let g = y.sum_all()?.backward()?;
                let gx = g.get(x.as_tensor()).expect("gradient").to_vec2::<f32>()?;
                assert_eq!(gx, vec![vec![0., 0., 1.], vec![0., 1., 0.]], "{b} {what}");
            }
            let odd = Tensor::new(&[f32::NAN, f32::NEG_INFINITY, 0.0], &dev)?;
            let r = ops::relu(&odd)?.to_vec1::<f32>()?;
            assert!(r[0].is_nan() && r[1] == 0.0 && r[2] == 0.0, "{b}: {r:?}");
            Ok(())
        })?;
    }
    Ok(())
}

/// A transposed (strided) kernel gives the contiguous copy's values and gradients on the candle
/// path: the kernel is made contiguous before candle's convolution, whose backward read the
/// strided kernel on Metal (candle #3836). The CPU cannot show the Metal bug; this checks the
/// work-around is exact and covers strided views the models may pass.
#[test]
fn strided_conv_kernel_gives_the_contiguous_kernels_gradient() -> Result<()> {
    with_backend(Backend::Candle, || {
        let x = randn(&[2, 4, 6, 6], 1, DType::F64);
        let w0 = randn(&[4, 5, 3, 3], 2, DType::F64);
        let run = |transposed: bool| -> Result<(Vec<f64>, Vec<f64>, Vec<f64>)> {
            let xv = Var::from_tensor(&x)?;
            let wv = Var::from_tensor(&w0)?;
            // (c_in=4, c_out=5) stored, used as (c_out=5, c_in=4): a strided view or its copy.
            let w = wv.as_tensor().transpose(0, 1)?;
            let w = if transposed { w } else { w.contiguous()? };
            let y = ops::conv2d(xv.as_tensor(), &w, 1, 1, 1)?;
            let l = (&y * &y)?.sum_all()?;
            let g = l.backward()?;
            Ok((
                ops_common::to_vec(&y),
                ops_common::to_vec(g.get(xv.as_tensor()).expect("dx")),
                ops_common::to_vec(g.get(wv.as_tensor()).expect("dw")),
            ))
        };
        assert!(!w0.transpose(0, 1)?.is_contiguous());
        assert_eq!(run(true)?, run(false)?);
        Ok(())
    })
}

/// SGD losses of ResNet-8 on one backend.
fn resnet_losses(b: Backend, steps: usize) -> Vec<f32> {
    with_backend(b, || {
        let mut rng = StdRng::seed_from_u64(5);
        let net = ResNetCifar::new(ResNetCifarConfig::new(8, 4), &mut rng, &Device::Cpu).unwrap();
        let x = randn(&[6, 3, 8, 8], 6, DType::F32);
        let y = labels(6, 4, 7);
        let mut out = vec![];
        for _ in 0..steps {
            let p = net.store().params();
            let z = net.forward(&p, &x, &mut Ctx::train_no_rng(true)).unwrap();
            let loss = cross_entropy(&z, &y, Reduction::Mean).unwrap();
            out.push(loss.to_scalar::<f32>().unwrap());
            let g = loss.backward().unwrap();
            for v in net.store().vars().values() {
                let gv = g.get(v.as_tensor()).expect("gradient");
                v.set(&(v.as_tensor() - (gv * 0.1).unwrap()).unwrap())
                    .unwrap();
            }
        }
        out
    })
}

/// The backend is a per-thread value: two trainings on two threads at once, one per backend,
/// give exactly the losses each gives alone, and agree with each other to f32 reassociation.
#[test]
fn both_backends_train_side_by_side_in_one_process() {
    let alone: Vec<Vec<f32>> = Backend::ALL.iter().map(|&b| resnet_losses(b, 3)).collect();
    let together: Vec<Vec<f32>> = std::thread::scope(|s| {
        let hs: Vec<_> = Backend::ALL
            .iter()
            .map(|&b| s.spawn(move || resnet_losses(b, 3)))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(alone, together);
    for (f, c) in alone[0].iter().zip(&alone[1]) {
        assert!((f - c).abs() <= 1e-4 * c.abs().max(1.0), "{alone:?}");
    }
    assert!(alone[0][2] < alone[0][0], "did not train: {alone:?}");
    assert_eq!(ops::backend(), Backend::Fast);
}

/// The VNet of Meta-Weight-Net on the candle path: no empty tensor in its meta-gradient graph.
#[test]
fn mwn_meta_gradient_graph_has_no_zero_size_tensors() -> Result<()> {
    with_backend(Backend::Candle, || {
        let mut rng = StdRng::seed_from_u64(11);
        let net = ResNetCifar::new(ResNetCifarConfig::new(8, 3), &mut rng, &Device::Cpu)?;
        let vnet = VNet::new(8, &mut rng, &Device::Cpu)?;
        let x = randn(&[4, 3, 8, 8], 12, DType::F32);
        let y = labels(4, 3, 13);
        let g = meta::mwn_grad(
            &net,
            &net.store().params(),
            &vnet,
            (&x, &y),
            (&x, &y),
            0.1,
            None,
        )?;
        for (i, t) in g.grads.iter().enumerate() {
            check_graph(t, &format!("VNet gradient {i}"))?;
        }
        Ok(())
    })
}

/// The candle path creates its constants through `ops::nonempty::full` (which leaves empty
/// parts out) or as scalars: a zero-size constant never enters a graph, so no graph walk can
/// see one, and it still fails on CUDA. Reintroducing `Tensor::full`/`zeros`/`ones` with a
/// computed shape in the reference ops fails here.
#[test]
fn reference_ops_create_constants_only_through_nonempty() {
    let src = include_str!("../src/ops/mod.rs");
    let start = src.find("pub mod reference {").expect("reference module");
    let body = &src[start..];
    let end = body.find("\n}\n").expect("end of the reference module");
    for (i, line) in body[..end].lines().enumerate() {
        for ctor in ["Tensor::full(", "Tensor::zeros(", "Tensor::ones(", "_like("] {
            if let Some(at) = line.find(ctor) {
                let scalar = line[at + ctor.len()..].starts_with("()");
                assert!(
                    scalar,
                    "ops::reference line {}: {ctor} with a computed shape; use \
                     ops::nonempty::full: {line}",
                    i + 1
                );
            }
        }
    }
}
