//! Train-step throughput (forward + cross-entropy + backward + plain SGD, f32) of the MLP
//! 784-1200-1200-10 (batch 100), the LeNet of `../shared/bench/torch_bench.py` (batch 100) and
//! ResNet-32 (option B shortcuts, as in that script; batch 128), with candle's own ops and with
//! the fast path, against PyTorch running the same step in each of its CPU modes: eager (NCHW),
//! channels-last, `torch.compile` and channels-last + `torch.compile` (`benches/torch_modes.py`,
//! which imports the shared `torch_bench.py` for the nets; the MLP has no channels-last form).
//! The headline ratio is the fast path's against PyTorch's best mode on that net.
//!
//! A second table times meta-learning steps against a plain step of the same zoo model and
//! optimiser, on the fast path: the L2RW meta-step (`meta::l2rw_grad` + the weights) and a whole
//! L2RW training step (`l2rw_grad_reusing`, the weights, the weighted real step from the
//! meta-step's inner forward); Meta-Weight-Net's meta-step (VNet 1-100-1, weights normalised to
//! sum 1 as the paper preset, the meta-gradient by `meta::classifier_meta_gradient` and the VNet's
//! SGD step) and a whole MWN step (that meta-step every step + the VNet-weighted real step); and
//! MLNT's (exact unrolled meta-gradient of one synthetic label set by
//! `meta::unrolled_meta_gradient`, one fast step of 0.2, and a whole MLNT step with M = 2
//! synthetic sets as the cpu preset: EMA teacher, k-NN label transfer, teacher forward, the M
//! meta-gradients, the combined real step; M = 10, the paper's, extrapolated per round). All are
//! built here from `zoo_models`' public API, not from the experiment binaries. Models: Ren et
//! al.'s MNIST LeNet (batch 100, 10 meta images, as the `l2rw` MNIST experiment) and ResNet-32
//! (option A, batch 128, meta batch 100).
//!
//! A third part times sgemm at 1024³ (candle's matmul, i.e. the `gemm` crate, and PyTorch's
//! `torch_bench.py sgemm`) and prints each net's step as direct-equivalent GFLOP/s against it.
//! A step's FLOPs are counted as direct convolution and dense layers: forward
//! `F = Σ 2·|output|·c_in·k_h·k_w` over convolutions and `Σ 2·batch·in·out` over linear layers;
//! a step is `3·F` (forward, plus a backward of twice the forward: input and weight gradients).
//! Bias, batch norm, ReLU, pooling, the loss and SGD are not counted; neither side computes the
//! first layer's input gradient, which `3·F` includes (MLP 13 %, LeNet 3 %, ResNet-32 0.2 % of
//! the count). Winograd convolutions do fewer multiplies than this count, hence
//! "direct-equivalent".
//!
//! `cargo bench -p zoo-models --bench train_step -- [--secs S] [--rounds 5]
//!  [--models mlp,lenet,resnet32] [--threads 2] [--python PATH] [--torch-modes LIST]
//!  [--torch-bench DIR] [--no-torch] [--no-candle] [--no-meta] [--no-mlnt] [--no-sgemm]
//!  [--sgemm-secs S] [--note TEXT] [--out FILE]`
//!
//! The fast path and the PyTorch modes alternate in `--rounds` rounds of `S / rounds` seconds
//! each (PyTorch's modes in a rotating order, in one long-lived Python process per net, so
//! `torch.compile` compiles once, timed apart from the steps), and each ratio is the median of
//! the per-round ratios: this shared machine's speed drifts by tens of percent within minutes,
//! and back-to-back blocks of one then the other did not see the same machine (the same build's
//! ResNet-32 ratio read 1.04× and 0.85× nine minutes apart). The best PyTorch mode of a net is
//! the one with the lowest pooled median step time.
//!
//! The nets are written here against `zoo_models::ops` so they match the PyTorch script layer
//! for layer (with the zoo's fused ops where PyTorch runs two or three: conv + bias + ReLU, BN +
//! ReLU, linear + bias + ReLU, residual sum + ReLU). The tables go to stdout and (atomically) to
//! `results/bench/train_step.md`.

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor, Var};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::io::{BufRead, BufReader, Write};
use std::time::Instant;
use zoo_models::ops::{self, Backend};

/// A network's forward pass over its parameter list.
type Forward = Box<dyn Fn(&[Var], &Tensor) -> candle_core::Result<Tensor>>;

struct Net {
    params: Vec<Var>,
    forward: Forward,
    x: Tensor,
    y: Tensor,
}

fn uniform(rng: &mut StdRng, shape: &[usize], fan_in: usize) -> Result<Var> {
    let bound = 1.0 / (fan_in as f64).sqrt();
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|_| (rng.random::<f64>() * 2.0 - 1.0) as f32 * bound as f32)
        .collect();
    Ok(Var::from_tensor(&Tensor::from_vec(
        v,
        shape,
        &Device::Cpu,
    )?)?)
}

fn data(rng: &mut StdRng, shape: &[usize], classes: u32) -> Result<(Tensor, Tensor)> {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect();
    let y: Vec<u32> = (0..shape[0])
        .map(|_| rng.random_range(0..classes))
        .collect();
    Ok((
        Tensor::from_vec(v, shape, &Device::Cpu)?,
        Tensor::from_vec(y, shape[0], &Device::Cpu)?,
    ))
}

fn mlp() -> Result<Net> {
    let mut rng = StdRng::seed_from_u64(42);
    let dims = [784, 1200, 1200, 10];
    let mut params = vec![];
    for w in dims.windows(2) {
        params.push(uniform(&mut rng, &[w[1], w[0]], w[0])?);
        params.push(uniform(&mut rng, &[w[1]], w[0])?);
    }
    let (x, y) = data(&mut rng, &[100, 784], 10)?;
    let forward = Box::new(|p: &[Var], x: &Tensor| -> candle_core::Result<Tensor> {
        let h = ops::linear_relu(x, &p[0], &p[1])?;
        let h = ops::linear_relu(&h, &p[2], &p[3])?;
        ops::linear(&h, &p[4], Some(&p[5]))
    });
    Ok(Net {
        params,
        forward,
        x,
        y,
    })
}

/// Convolution + bias + ReLU, one fused op.
fn conv_bias_relu(x: &Tensor, w: &Var, b: &Var, pad: usize) -> candle_core::Result<Tensor> {
    ops::conv2d_bias_relu(x, w, b, 1, pad, 1)
}

fn lenet() -> Result<Net> {
    let mut rng = StdRng::seed_from_u64(42);
    let mut params = vec![];
    for (o, i, k) in [(16, 1, 5), (32, 16, 5), (64, 32, 3)] {
        params.push(uniform(&mut rng, &[o, i, k, k], i * k * k)?);
        params.push(uniform(&mut rng, &[o], i * k * k)?);
    }
    params.push(uniform(&mut rng, &[10, 64 * 7 * 7], 64 * 7 * 7)?);
    params.push(uniform(&mut rng, &[10], 64 * 7 * 7)?);
    let (x, y) = data(&mut rng, &[100, 1, 28, 28], 10)?;
    let forward = Box::new(|p: &[Var], x: &Tensor| -> candle_core::Result<Tensor> {
        let h = ops::max_pool2d(&conv_bias_relu(x, &p[0], &p[1], 2)?, 2)?;
        let h = ops::max_pool2d(&conv_bias_relu(&h, &p[2], &p[3], 2)?, 2)?;
        let h = conv_bias_relu(&h, &p[4], &p[5], 1)?;
        ops::linear(&h.flatten_from(1)?, &p[6], Some(&p[7]))
    });
    Ok(Net {
        params,
        forward,
        x,
        y,
    })
}

/// Parameter layout of one BN'd conv: weight, gamma, beta.
fn conv_bn(rng: &mut StdRng, params: &mut Vec<Var>, o: usize, i: usize, k: usize) -> Result<usize> {
    let at = params.len();
    params.push(uniform(rng, &[o, i, k, k], i * k * k)?);
    params.push(Var::from_tensor(&Tensor::ones(
        o,
        DType::F32,
        &Device::Cpu,
    )?)?);
    params.push(Var::from_tensor(&Tensor::zeros(
        o,
        DType::F32,
        &Device::Cpu,
    )?)?);
    Ok(at)
}

/// Convolution then batch norm, followed by ReLU (fused into the batch norm) with `relu`.
fn apply_conv_bn(
    p: &[Var],
    at: usize,
    x: &Tensor,
    (stride, pad): (usize, usize),
    relu: bool,
) -> candle_core::Result<Tensor> {
    let h = ops::conv2d(x, &p[at], stride, pad, 1)?;
    let bn = if relu {
        ops::batch_norm_relu_train
    } else {
        ops::batch_norm_train
    };
    Ok(bn(&h, &p[at + 1], &p[at + 2], 1e-5)?.0)
}

fn resnet32() -> Result<Net> {
    let mut rng = StdRng::seed_from_u64(42);
    let mut params = vec![];
    let stem = conv_bn(&mut rng, &mut params, 16, 3, 3)?;
    // (c1, c2, shortcut, stride) parameter offsets per block
    let mut blocks = vec![];
    let mut cin = 16;
    for (si, cout) in [16usize, 32, 64].into_iter().enumerate() {
        for bi in 0..5 {
            let stride = if si > 0 && bi == 0 { 2 } else { 1 };
            let c1 = conv_bn(&mut rng, &mut params, cout, cin, 3)?;
            let c2 = conv_bn(&mut rng, &mut params, cout, cout, 3)?;
            let sc = if stride != 1 || cin != cout {
                Some(conv_bn(&mut rng, &mut params, cout, cin, 1)?)
            } else {
                None
            };
            blocks.push((c1, c2, sc, stride));
            cin = cout;
        }
    }
    let fc = params.len();
    params.push(uniform(&mut rng, &[10, 64], 64)?);
    params.push(uniform(&mut rng, &[10], 64)?);
    let (x, y) = data(&mut rng, &[128, 3, 32, 32], 10)?;
    let forward = Box::new(
        move |p: &[Var], x: &Tensor| -> candle_core::Result<Tensor> {
            let mut h = apply_conv_bn(p, stem, x, (1, 1), true)?;
            for &(c1, c2, sc, stride) in &blocks {
                let a = apply_conv_bn(p, c1, &h, (stride, 1), true)?;
                let a = apply_conv_bn(p, c2, &a, (1, 1), false)?;
                let s = match sc {
                    Some(sc) => apply_conv_bn(p, sc, &h, (stride, 0), false)?,
                    None => h.clone(),
                };
                h = ops::add_relu(&a, &s)?;
            }
            ops::linear(&ops::global_avg_pool(&h)?, &p[fc], Some(&p[fc + 1]))
        },
    );
    Ok(Net {
        params,
        forward,
        x,
        y,
    })
}

/// Seconds per timed step (whole step and its forward / backward / update phases), pooled over
/// rounds, and the last loss.
#[derive(Default)]
struct Timing {
    tot: Vec<f64>,
    fwd: Vec<f64>,
    bwd: Vec<f64>,
    upd: Vec<f64>,
    loss: f64,
}

impl Timing {
    fn add(&mut self, other: Timing) {
        self.tot.extend(other.tot);
        self.fwd.extend(other.fwd);
        self.bwd.extend(other.bwd);
        self.upd.extend(other.upd);
        self.loss = other.loss;
    }
}

/// The median (the mean of the middle two for an even count).
fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n.is_multiple_of(2) {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    } else {
        v[n / 2]
    }
}

fn bench_candle(net: &Net, secs: f64) -> Result<Timing> {
    use zoo_models::optim::{Optimizer, Sgd};
    let lr = 0.01;
    // A fresh copy of the parameters in a store, updated by the zoo's SGD (in place on the fast
    // path, tensor ops on candle's), as PyTorch's `optimizer.step()` is in place.
    let mut store = zoo_models::ParamStore::new(&Device::Cpu);
    for (i, v) in net.params.iter().enumerate() {
        store.add_var(format!("p{i:03}"), v.as_tensor().copy()?)?;
    }
    let params: Vec<Var> = store.vars().values().cloned().collect();
    let sgd = std::cell::RefCell::new(Sgd::new(0.0, false, 0.0)?);
    let step = || -> Result<(f64, f64, f64, f64)> {
        let t0 = Instant::now();
        let logits = (net.forward)(&params, &net.x)?;
        let loss = candle_nn::loss::cross_entropy(&logits, &net.y)?;
        let l = loss.to_scalar::<f32>()? as f64;
        let t1 = Instant::now();
        let grads = zoo_models::backprop::backward(&loss)?;
        let t2 = Instant::now();
        let mut sgd = sgd.borrow_mut();
        sgd.step(&store, &grads, lr)?;
        if !sgd.last_skipped().is_empty() {
            bail!("parameters without a gradient: {:?}", sgd.last_skipped());
        }
        let t3 = Instant::now();
        Ok((
            l,
            (t1 - t0).as_secs_f64(),
            (t2 - t1).as_secs_f64(),
            (t3 - t2).as_secs_f64(),
        ))
    };
    let start = Instant::now();
    let mut warm = 0;
    while warm < 2 || start.elapsed().as_secs_f64() < 2.0 {
        step()?;
        warm += 1;
    }
    let (mut tot, mut f, mut b, mut u) = (vec![], vec![], vec![], vec![]);
    let mut loss = 0.0;
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < secs || tot.len() < 3 {
        let t = Instant::now();
        let (l, a, bb, c) = step()?;
        tot.push(t.elapsed().as_secs_f64());
        f.push(a);
        b.push(bb);
        u.push(c);
        loss = l;
    }
    Ok(Timing {
        tot,
        fwd: f,
        bwd: b,
        upd: u,
        loss,
    })
}

/// Direct-equivalent forward FLOPs of one batch (see the module docs): convolutions
/// `2·|output|·c_in·k_h·k_w`, linear layers `2·batch·in·out`. A step is three times this.
fn forward_flops(model: &str) -> f64 {
    let conv = |n: usize, cout: usize, hw: usize, cin: usize, k: usize| {
        2.0 * (n * cout * hw * hw) as f64 * (cin * k * k) as f64
    };
    let lin = |n: usize, i: usize, o: usize| 2.0 * (n * i * o) as f64;
    match model {
        "mlp" => lin(100, 784, 1200) + lin(100, 1200, 1200) + lin(100, 1200, 10),
        "lenet" => {
            conv(100, 16, 28, 1, 5)
                + conv(100, 32, 14, 16, 5)
                + conv(100, 64, 7, 32, 3)
                + lin(100, 64 * 7 * 7, 10)
        }
        _ => {
            let n = 128;
            let mut f = conv(n, 16, 32, 3, 3);
            let (mut cin, mut hw) = (16, 32);
            for (si, cout) in [16usize, 32, 64].into_iter().enumerate() {
                for bi in 0..5 {
                    let stride = if si > 0 && bi == 0 { 2 } else { 1 };
                    let out = hw / stride;
                    f += conv(n, cout, out, cin, 3) + conv(n, cout, out, cout, 3);
                    if stride != 1 || cin != cout {
                        f += conv(n, cout, out, cin, 1);
                    }
                    (cin, hw) = (cout, out);
                }
            }
            f + lin(n, 64, 10)
        }
    }
}

/// One step of the meta table: its median time and its median per-round ratio to a plain step.
struct MetaRow {
    step: String,
    secs: f64,
    ratio: f64,
}

/// The meta table of one zoo model.
struct MetaTiming {
    name: &'static str,
    batches: &'static str,
    rounds: usize,
    rows: Vec<MetaRow>,
}

/// A boxed benchmark step.
type Step<'a> = Box<dyn FnMut() -> Result<()> + 'a>;

/// Times `steps` in rounds (one run of each per round, after two warm-up rounds) for at least
/// `secs` per step and `min_rounds` rounds; each round's times in seconds.
fn time_interleaved(
    secs: f64,
    min_rounds: usize,
    mut steps: Vec<Step<'_>>,
) -> Result<Vec<Vec<f64>>> {
    for _ in 0..2 {
        for s in steps.iter_mut() {
            s()?;
        }
    }
    let start = Instant::now();
    let mut rounds = vec![];
    while start.elapsed().as_secs_f64() < secs * steps.len() as f64 || rounds.len() < min_rounds {
        let mut t = vec![];
        for s in steps.iter_mut() {
            let t0 = Instant::now();
            s()?;
            t.push(t0.elapsed().as_secs_f64());
        }
        rounds.push(t);
    }
    Ok(rounds)
}

/// Meta-Weight-Net's example weights `n·v/Σv` from VNet outputs `v = V_φ(ℓ)` (the paper
/// preset's normalisation; `v` itself when `Σv = 0`), differentiable in `φ`.
fn mwn_weights(
    vnet: &zoo_models::models::VNet,
    phi: &zoo_models::ParamSet,
    losses: &Tensor,
) -> candle_core::Result<Tensor> {
    let n = losses.dims1()?;
    let v = vnet.forward(phi, &losses.unsqueeze(1)?)?.squeeze(1)?;
    let s = v.sum_all()?;
    if s.to_scalar::<f32>()? == 0.0 {
        Ok(v)
    } else {
        v.broadcast_div(&s)? * n as f64
    }
}

/// The teacher update `θ̃ ← ε·θ̃ + (1 − ε)·θ` of MLNT, variables and float buffers.
fn ema(teacher: &zoo_models::ParamStore, student: &zoo_models::ParamStore, eps: f64) -> Result<()> {
    for (name, tv) in teacher.vars() {
        let sv = student.var(name)?;
        tv.set(&((tv.as_tensor() * eps)? + (sv.as_tensor() * (1.0 - eps))?)?.detach())?;
    }
    let sb = student.buffers();
    for (name, tb) in teacher.buffers() {
        if !tb.dtype().is_float() {
            continue;
        }
        let s = sb.get(&name).context("student buffer")?;
        teacher.set_buffer(&name, &((&tb * eps)? + (s * (1.0 - eps))?)?.detach())?;
    }
    Ok(())
}

/// The `k` nearest other rows of each row of `feats` (`n × d`), squared Euclidean distance.
fn nearest(feats: &[f32], n: usize, k: usize) -> Vec<Vec<usize>> {
    let d = feats.len() / n;
    let row = |i: usize| &feats[i * d..(i + 1) * d];
    (0..n)
        .map(|i| {
            let mut dist: Vec<(f32, usize)> = (0..n)
                .filter(|&j| j != i)
                .map(|j| {
                    let s = row(i).iter().zip(row(j)).map(|(a, b)| (a - b) * (a - b));
                    (s.sum(), j)
                })
                .collect();
            dist.sort_by(|p, q| p.0.total_cmp(&q.0).then(p.1.cmp(&q.1)));
            dist.into_iter().take(k).map(|(_, j)| j).collect()
        })
        .collect()
}

/// MLNT's random neighbour label transfer: `⌊ρ·n⌋` random rows take the label of one of their
/// neighbours.
fn label_transfer(labels: &[u32], nb: &[Vec<usize>], rho: f64, rng: &mut StdRng) -> Vec<u32> {
    use rand::seq::SliceRandom;
    let n = labels.len();
    let mut perm: Vec<usize> = (0..n).collect();
    perm.shuffle(rng);
    let mut out = labels.to_vec();
    for &i in &perm[..(n as f64 * rho) as usize] {
        out[i] = labels[nb[i][rng.random_range(0..nb[i].len())]];
    }
    out
}

/// MLNT's consistency loss `KL(p_teacher ‖ softmax(z))`, mean over all elements.
fn consistency_kl(z: &Tensor, p: &Tensor) -> candle_core::Result<Tensor> {
    let log_p = p.clamp(1e-30, 1.0)?.log()?;
    let log_q = candle_nn::ops::log_softmax(z, candle_core::D::Minus1)?;
    (p * (log_p - log_q)?)?.mean_all()
}

/// MLNT's exact meta-gradient `dL_meta/dθ` for one synthetic label set: one fast SGD step of 0.2
/// on the synthetic labels, the consistency loss to the teacher at `θ'`, the gradient through the
/// fast step (`meta::unrolled_meta_gradient`, second order). Forwards use batch statistics
/// without touching running statistics.
fn mlnt_meta_gradient(
    net: &dyn zoo_models::Classifier,
    theta: &zoo_models::ParamSet,
    x: &Tensor,
    synthetic: &Tensor,
    teacher_probs: &Tensor,
) -> Result<std::collections::BTreeMap<String, Tensor>> {
    use zoo_models::loss::{self as zl, Reduction};
    use zoo_models::Ctx;
    let g = zoo_models::meta::unrolled_meta_gradient(
        theta,
        1,
        0.2,
        false,
        |_, p| {
            let z = net.forward(p, x, &mut Ctx::train_no_rng(false))?;
            zl::cross_entropy(&z, synthetic, Reduction::Mean)
        },
        |p| {
            consistency_kl(
                &net.forward(p, x, &mut Ctx::train_no_rng(false))?,
                teacher_probs,
            )
        },
        &[],
    )?;
    Ok(g.grads)
}

/// Synthetic label sets of the MLNT step timed here (the cpu preset's M; the paper's is 10).
const MLNT_M: usize = 2;

fn bench_meta(model: &str, secs: f64, min_rounds: usize, mlnt: bool) -> Result<MetaTiming> {
    use zoo_models::loss::{self as zl, Reduction};
    use zoo_models::meta::{
        classifier_meta_gradient, l2rw_grad, l2rw_grad_reusing, l2rw_weights, leaf_grad_store,
    };
    use zoo_models::models::{LeNet, LeNetConfig, ResNetCifar, ResNetCifarConfig, VNet};
    use zoo_models::optim::{Optimizer, Sgd};
    use zoo_models::{Classifier, Ctx};

    let mut rng = StdRng::seed_from_u64(7);
    let dev = Device::Cpu;
    let build = |rng: &mut StdRng| -> Result<Box<dyn Classifier>> {
        Ok(match model {
            "lenet" => Box::new(LeNet::new(LeNetConfig::mnist(2), rng, &dev)?),
            _ => Box::new(ResNetCifar::new(ResNetCifarConfig::new(32, 10), rng, &dev)?),
        })
    };
    let net = build(&mut rng)?;
    let teacher = build(&mut rng)?;
    ema(teacher.store(), net.store(), 0.0)?;
    let vnet = VNet::new(100, &mut rng, &dev)?;
    let (name, batches, (x, y), (xm, ym)) = match model {
        "lenet" => (
            "LeNet (Ren et al., MNIST 4-vs-9)",
            "100 / 10",
            data(&mut rng, &[100, 1, 28, 28], 2)?,
            data(&mut rng, &[10, 1, 28, 28], 2)?,
        ),
        _ => (
            "ResNet-32 (option A)",
            "128 / 100",
            data(&mut rng, &[128, 3, 32, 32], 10)?,
            data(&mut rng, &[100, 3, 32, 32], 10)?,
        ),
    };
    let lr = 0.01;
    let n = y.dims1()?;
    let (net, teacher, vnet) = (net.as_ref(), teacher.as_ref(), &vnet);
    let (x, y, xm, ym) = (&x, &y, &xm, &ym);
    let labels: Vec<u32> = y.to_vec1()?;
    // MWN's VNet optimiser: the paper preset's SGD (lr 1e-3, momentum 0.9, Nesterov, wd 5e-4).
    let vnet_lr = 1e-3;
    let mwn_meta_step = move |opt: &mut Sgd| -> Result<()> {
        let theta = net.store().params();
        let phi = vnet.store().params();
        let vars = vnet.store().vars();
        let leaves: Vec<&Tensor> = vars.values().map(|v| v.as_tensor()).collect();
        let g = classifier_meta_gradient(
            net,
            &theta,
            (x, y),
            (xm, ym),
            |l| mwn_weights(vnet, &phi, l),
            &leaves,
            lr,
            None,
        )?;
        opt.step(vnet.store(), &leaf_grad_store(&leaves, &g.grads)?, vnet_lr)?;
        Ok(())
    };
    // A fixed teacher prediction and synthetic label set for the one-set meta-gradient.
    let p_fixed = candle_nn::ops::softmax(
        &teacher.forward(
            &teacher.store().params().detach(),
            x,
            &mut Ctx::train_no_rng(false),
        )?,
        candle_core::D::Minus1,
    )?
    .detach();
    let y_fixed = {
        let classes = net.num_classes() as u32;
        let mut r = StdRng::seed_from_u64(11);
        let ys: Vec<u32> = labels
            .iter()
            .map(|&l| {
                if r.random::<f64>() < 0.5 {
                    r.random_range(0..classes)
                } else {
                    l
                }
            })
            .collect();
        Tensor::from_vec(ys, n, &dev)?
    };
    let mut names = vec![
        "plain step".to_string(),
        "L2RW meta-step (`l2rw_grad` + weights)".to_string(),
        "L2RW step (meta-step reusing its forward + weighted real step)".to_string(),
        "MWN meta-step (VNet meta-gradient + VNet SGD step)".to_string(),
        "MWN step (meta-step every step + VNet-weighted real step)".to_string(),
    ];
    let (mut sgd_plain, mut sgd_l2rw, mut sgd_mwn) = (
        Sgd::new(0.9, false, 0.0)?,
        Sgd::new(0.9, false, 0.0)?,
        Sgd::new(0.9, false, 0.0)?,
    );
    let (mut vopt_meta, mut vopt_step) = (Sgd::new(0.9, true, 5e-4)?, Sgd::new(0.9, true, 5e-4)?);
    let mut steps: Vec<Step<'_>> = vec![
        Box::new(move || {
            let theta = net.store().params();
            let z = net.forward(&theta, x, &mut Ctx::train_no_rng(true))?;
            let loss = zl::cross_entropy(&z, y, Reduction::Mean)?;
            sgd_plain.step(net.store(), &zoo_models::backprop::backward(&loss)?, lr)?;
            Ok(())
        }),
        Box::new(move || {
            let theta = net.store().params();
            let g = l2rw_grad(net, &theta, (x, y), (xm, ym), lr, None)?;
            l2rw_weights(&g.grads[0])?;
            Ok(())
        }),
        Box::new(move || {
            let theta = net.store().params();
            let (g, inner) = l2rw_grad_reusing(net, &theta, (x, y), (xm, ym), lr, None)?;
            let w = l2rw_weights(&g.grads[0])?;
            let loss = zl::weighted_ce(inner.logits(), y, &w, Reduction::Sum)?;
            sgd_l2rw.step(net.store(), &inner.grads(net.store(), &loss)?, lr)?;
            Ok(())
        }),
        Box::new(move || mwn_meta_step(&mut vopt_meta)),
        Box::new(move || {
            mwn_meta_step(&mut vopt_step)?;
            // The real step: weights from the updated VNet on the detached losses (no graph).
            let theta = net.store().params();
            let z = net.forward(&theta, x, &mut Ctx::train_no_rng(true))?;
            let ell = zl::per_example_ce(&z, y)?.detach();
            let w = mwn_weights(vnet, &vnet.store().params().detach(), &ell)?.detach();
            let loss = zl::weighted_ce(&z, y, &w, Reduction::Mean)?;
            sgd_mwn.step(net.store(), &zoo_models::backprop::backward(&loss)?, lr)?;
            Ok(())
        }),
    ];
    if mlnt {
        names.push("MLNT meta-gradient, one synthetic label set (exact, 1 fast step)".into());
        names.push(format!(
            "MLNT step, M = {MLNT_M} (cpu preset): EMA, k-NN transfer, teacher, M meta-gradients, \
             combined real step"
        ));
        let (p_fixed, y_fixed) = (&p_fixed, &y_fixed);
        steps.push(Box::new(move || {
            mlnt_meta_gradient(net, &net.store().params(), x, y_fixed, p_fixed)?;
            Ok(())
        }));
        let mut sgd_mlnt = Sgd::new(0.9, false, 0.0)?;
        let mut rng_mlnt = StdRng::seed_from_u64(13);
        steps.push(Box::new(move || {
            ema(teacher.store(), net.store(), 0.999)?;
            let theta = net.store().params();
            let feats = net.features(&theta.detach(), x, &mut Ctx::eval())?;
            let feats: Vec<f32> = feats.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
            let nb = nearest(&feats, n, 10);
            let tp = teacher.store().params().detach();
            let p_tch = candle_nn::ops::softmax(
                &teacher.forward(&tp, x, &mut Ctx::train_no_rng(false))?,
                candle_core::D::Minus1,
            )?
            .detach();
            let mut sum: std::collections::BTreeMap<String, Tensor> = Default::default();
            for _ in 0..MLNT_M {
                let ys = label_transfer(&labels, &nb, 0.5, &mut rng_mlnt);
                let ys = Tensor::from_vec(ys, n, &Device::Cpu)?;
                for (k, g) in mlnt_meta_gradient(net, &theta, x, &ys, &p_tch)? {
                    let g = (g / MLNT_M as f64)?;
                    let e = match sum.remove(&k) {
                        Some(s) => (s + g)?,
                        None => g,
                    };
                    sum.insert(k, e);
                }
            }
            // The combined update: one SGD step on ∇CE + α∇L_meta (α = 1).
            let z = net.forward(&theta, x, &mut Ctx::train_no_rng(true))?;
            let loss = zl::cross_entropy(&z, y, Reduction::Mean)?;
            let mut grads = zoo_models::backprop::backward(&loss)?;
            for (k, g) in sum {
                let v = net.store().var(&k)?;
                let total = match grads.get(v.as_tensor()) {
                    Some(c) => (c + g)?,
                    None => g,
                };
                grads.insert(v.as_tensor(), total);
            }
            sgd_mlnt.step(net.store(), &grads, lr)?;
            Ok(())
        }));
    }
    // Interleaved, one step of each per round: the machine's speed drifts, and the ratios are
    // taken per round so that the steps always see the same conditions.
    let times = time_interleaved(secs, min_rounds, steps)?;
    let ratio =
        |f: &dyn Fn(&[f64]) -> f64| median(&times.iter().map(|t| f(t) / t[0]).collect::<Vec<_>>());
    let col = |f: &dyn Fn(&[f64]) -> f64| median(&times.iter().map(|t| f(t)).collect::<Vec<_>>());
    let mut rows: Vec<MetaRow> = names
        .into_iter()
        .enumerate()
        .map(|(i, step)| MetaRow {
            step,
            secs: col(&|t| t[i]),
            ratio: ratio(&|t| t[i]),
        })
        .collect();
    if mlnt {
        // M = 10: the M = 2 step plus eight more one-set meta-gradients, per round.
        let (one, step) = (rows.len() - 2, rows.len() - 1);
        let m10 = move |t: &[f64]| t[step] + (10 - MLNT_M) as f64 * t[one];
        rows.push(MetaRow {
            step: format!(
                "MLNT step, M = 10 (paper), extrapolated: the M = {MLNT_M} step + {} one-set \
                 meta-gradients, per round",
                10 - MLNT_M
            ),
            secs: col(&m10),
            ratio: ratio(&m10),
        });
    }
    Ok(MetaTiming {
        name,
        batches,
        rounds: times.len(),
        rows,
    })
}

/// A `Timing` from a line of `torch_bench.py`'s JSON shape.
fn timing_from_json(v: &serde_json::Value) -> Result<Timing> {
    let arr = |k: &str| -> Result<Vec<f64>> {
        v[k].as_array()
            .with_context(|| format!("PyTorch output lacks {k}"))?
            .iter()
            .map(|x| x.as_f64().context("non-numeric time"))
            .collect()
    };
    Ok(Timing {
        tot: arr("step_times")?,
        fwd: arr("fwd")?,
        bwd: arr("bwd")?,
        upd: arr("upd")?,
        loss: v["last_loss"].as_f64().unwrap_or(f64::NAN),
    })
}

/// Where the PyTorch side lives: the Python, `benches/torch_modes.py` and the folder of the
/// shared `torch_bench.py` it imports.
struct TorchSide {
    python: String,
    script: String,
    bench_dir: String,
    threads: usize,
}

impl TorchSide {
    fn command(&self) -> std::process::Command {
        let mut c = std::process::Command::new(&self.python);
        c.arg(&self.script)
            .args(["--bench-dir", &self.bench_dir])
            .args(["--threads", &self.threads.to_string()])
            .env("OMP_NUM_THREADS", self.threads.to_string())
            // Inductor's compile workers: one, on this shared machine (compile time only).
            .env("TORCHINDUCTOR_COMPILE_THREADS", "1");
        c
    }

    /// sgemm at 1024³ through `torch_bench.py sgemm`: GFLOP/s at the median time.
    fn sgemm(&self, secs: f64) -> Result<f64> {
        let out = self
            .command()
            .args(["sgemm", &secs.to_string()])
            .output()
            .context("running torch_modes.py sgemm")?;
        if !out.status.success() {
            bail!(
                "torch sgemm failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let line = String::from_utf8_lossy(&out.stdout);
        let v: serde_json::Value = serde_json::from_str(line.trim()).context("sgemm output")?;
        v["gflops"].as_f64().context("sgemm output lacks gflops")
    }
}

/// A long-lived `torch_modes.py serve` process for one net: set up (and compiled) once, then
/// asked for one timed block of a mode at a time.
struct TorchServer {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    stdout: BufReader<std::process::ChildStdout>,
}

impl TorchServer {
    /// Starts the server; also returns its set-up report (`setup`: per mode `compile_s` or
    /// `error`) and torch's version.
    fn start(side: &TorchSide, model: &str, modes: &[String]) -> Result<(Self, serde_json::Value)> {
        use std::process::Stdio;
        let mut child = side
            .command()
            .args(["serve", model, &modes.join(",")])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {} {}", side.python, side.script))?;
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().context("no stdout")?);
        let mut s = Self {
            child,
            stdin,
            stdout,
        };
        let ready = s.read_json()?;
        if ready["ready"] != serde_json::Value::Bool(true) {
            bail!("torch_modes.py did not start: {ready}");
        }
        Ok((s, ready))
    }

    fn read_json(&mut self) -> Result<serde_json::Value> {
        let mut line = String::new();
        loop {
            line.clear();
            if self.stdout.read_line(&mut line)? == 0 {
                bail!("torch_modes.py exited");
            }
            // Anything else on stdout (a library's print) is not ours.
            if line.trim_start().starts_with('{') {
                return serde_json::from_str(line.trim()).context("parsing torch_modes.py output");
            }
        }
    }

    fn time(&mut self, mode: &str, secs: f64) -> Result<Timing> {
        let stdin = self
            .stdin
            .as_mut()
            .context("torch_modes.py's stdin closed")?;
        writeln!(stdin, "{mode} {secs}")?;
        stdin.flush()?;
        let v = self.read_json()?;
        if let Some(e) = v.get("error") {
            bail!("{mode}: {e}");
        }
        timing_from_json(&v)
    }
}

impl Drop for TorchServer {
    fn drop(&mut self) {
        drop(self.stdin.take()); // EOF: the server returns
        let _ = self.child.wait();
    }
}

/// sgemm 1024³ with candle's matmul (the `gemm` crate): GFLOP/s at the median time.
fn sgemm_ours(secs: f64) -> Result<f64> {
    let n = 1024;
    let mut rng = StdRng::seed_from_u64(1);
    let (a, _) = data(&mut rng, &[n, n], 1)?;
    let (b, _) = data(&mut rng, &[n, n], 1)?;
    for _ in 0..3 {
        a.matmul(&b)?;
    }
    let mut times = vec![];
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < secs || times.len() < 3 {
        let t = Instant::now();
        let c = a.matmul(&b)?;
        times.push(t.elapsed().as_secs_f64());
        drop(c);
    }
    Ok(2.0 * (n * n * n) as f64 / median(&times) / 1e9)
}

/// One PyTorch mode of one net: pooled times, the fast path / this mode per-round ratios
/// (steps/s), the compile time, or why it has no times.
struct TorchMode {
    mode: String,
    timing: Timing,
    ratios: Vec<f64>,
    compile_s: Option<f64>,
    error: Option<String>,
}

/// Everything measured on one net.
struct NetResult {
    model: String,
    candle: Option<Timing>,
    fast: Timing,
    torch: Vec<TorchMode>,
    /// Why PyTorch has no row at all, or modes skipped.
    notes: Vec<String>,
}

impl NetResult {
    /// The PyTorch mode with the lowest pooled median step time.
    fn best(&self) -> Option<&TorchMode> {
        self.torch
            .iter()
            .filter(|m| m.error.is_none() && !m.timing.tot.is_empty())
            .min_by(|a, b| median(&a.timing.tot).total_cmp(&median(&b.timing.tot)))
    }
}

fn sh(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    format!("{cpu}, {cores} cores")
}

/// `uptime`'s line (time, up time, users, load averages), or the load averages alone.
fn load() -> String {
    let u = sh("uptime", &[]);
    if !u.is_empty() {
        return u;
    }
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| {
            let l: Vec<_> = s.split_whitespace().take(3).collect();
            format!("load average: {}", l.join(", "))
        })
        .unwrap_or_else(|_| "n/a".into())
}

struct Args {
    secs: f64,
    models: Vec<String>,
    threads: usize,
    python: String,
    torch_modes: Vec<String>,
    torch_bench: String,
    torch: bool,
    candle: bool,
    meta: bool,
    mlnt: bool,
    sgemm: bool,
    sgemm_secs: f64,
    rounds: usize,
    note: Option<String>,
    out: std::path::PathBuf,
}

const TORCH_MODES: [&str; 4] = ["eager", "channels_last", "compile", "channels_last_compile"];

const USAGE: &str = "\
usage: cargo bench -p zoo-models --bench train_step -- [options]
  --secs S             seconds timed per implementation (and PyTorch mode) and model, split over
                       the rounds; also per step of the meta table (10)
  --rounds N           alternating fast-path / PyTorch rounds; ratio = median of per-round ratios;
                       also the meta table's minimum rounds (5)
  --models LIST        comma-separated: mlp, lenet, resnet32 (all three)
  --threads N          threads for rayon and for torch.set_num_threads (2)
  --python PATH        Python with torch installed (python3)
  --torch-modes LIST   PyTorch modes: eager, channels_last, compile, channels_last_compile (all;
                       the channels-last ones are skipped on the MLP)
  --torch-bench DIR    folder of torch_bench.py (../shared/bench beside the repo)
  --no-torch           skip PyTorch
  --no-candle          skip candle's own ops
  --no-meta            skip the meta-step table
  --no-mlnt            skip MLNT in the meta-step table
  --no-sgemm           skip the sgemm peak (and the GFLOP/s columns' percentages)
  --sgemm-secs S       seconds per sgemm round, 3 alternating rounds (3)
  --note TEXT          a note to put in the written file (e.g. on the machine's load)
  --out FILE           where the tables go (results/bench/train_step.md)
  -h, --help           this text";

/// `None` for `--help` (after printing the usage).
fn parse_args() -> Result<Option<Args>> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let mut a = Args {
        secs: 10.0,
        models: vec!["mlp".into(), "lenet".into(), "resnet32".into()],
        threads: 2,
        python: "python3".into(),
        torch_modes: TORCH_MODES.iter().map(|s| s.to_string()).collect(),
        torch_bench: format!("{root}/../shared/bench"),
        torch: true,
        candle: true,
        meta: true,
        mlnt: true,
        sgemm: true,
        sgemm_secs: 3.0,
        rounds: 5,
        note: None,
        out: format!("{root}/results/bench/train_step.md").into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--secs" => a.secs = val("--secs")?.parse().context("--secs: not a number")?,
            "--models" => a.models = val("--models")?.split(',').map(String::from).collect(),
            "--threads" => {
                a.threads = val("--threads")?
                    .parse()
                    .context("--threads: not a number")?
            }
            "--python" => a.python = val("--python")?,
            "--torch-modes" => {
                a.torch_modes = val("--torch-modes")?.split(',').map(String::from).collect()
            }
            "--torch-bench" => a.torch_bench = val("--torch-bench")?,
            "--rounds" => a.rounds = val("--rounds")?.parse().context("--rounds: not a number")?,
            "--sgemm-secs" => {
                a.sgemm_secs = val("--sgemm-secs")?
                    .parse()
                    .context("--sgemm-secs: not a number")?
            }
            "--note" => a.note = Some(val("--note")?),
            "--out" => a.out = val("--out")?.into(),
            "--no-torch" => a.torch = false,
            "--no-candle" => a.candle = false,
            "--no-meta" => a.meta = false,
            "--no-mlnt" => a.mlnt = false,
            "--no-sgemm" => a.sgemm = false,
            "--bench" => {} // passed by `cargo bench`
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(None);
            }
            other => bail!("unknown argument {other}\n{USAGE}"),
        }
    }
    for m in &a.models {
        if !["mlp", "lenet", "resnet32"].contains(&m.as_str()) {
            bail!("unknown model {m} (mlp, lenet, resnet32)");
        }
    }
    for m in &a.torch_modes {
        if !TORCH_MODES.contains(&m.as_str()) {
            bail!("unknown PyTorch mode {m} ({})", TORCH_MODES.join(", "));
        }
    }
    if let Ok(p) = std::fs::canonicalize(&a.torch_bench) {
        a.torch_bench = p.display().to_string();
    }
    if a.secs <= 0.0 || a.threads == 0 || a.rounds == 0 || a.sgemm_secs <= 0.0 {
        bail!("--secs, --threads, --rounds and --sgemm-secs must be positive");
    }
    Ok(Some(a))
}

/// The fast path and PyTorch's modes, alternating in rounds, on one net.
fn bench_net(args: &Args, side: &TorchSide, m: &str) -> Result<NetResult> {
    let net = match m {
        "mlp" => mlp()?,
        "lenet" => lenet()?,
        _ => resnet32()?,
    };
    let mut res = NetResult {
        model: m.to_string(),
        candle: None,
        fast: Timing::default(),
        torch: vec![],
        notes: vec![],
    };
    if args.candle {
        ops::set_backend(Backend::Candle);
        eprintln!("{m}: candle ops ...");
        res.candle = Some(bench_candle(&net, args.secs)?);
    }
    ops::set_backend(Backend::Fast);
    let mut modes = args.torch_modes.clone();
    if m == "mlp" && modes.iter().any(|s| s.starts_with("channels_last")) {
        modes.retain(|s| !s.starts_with("channels_last"));
        res.notes.push(
            "The MLP has no channels-last form (its input is 2-D): eager and compile only.".into(),
        );
    }
    let mut server = None;
    if args.torch && !modes.is_empty() {
        eprintln!("{m}: setting up PyTorch ({}) ...", modes.join(", "));
        match TorchServer::start(side, m, &modes) {
            Ok((s, ready)) => {
                for mode in &modes {
                    let info = &ready["setup"][mode];
                    res.torch.push(TorchMode {
                        mode: mode.clone(),
                        timing: Timing::default(),
                        ratios: vec![],
                        compile_s: info["compile_s"].as_f64(),
                        error: info["error"].as_str().map(String::from),
                    });
                }
                server = Some(s);
            }
            Err(e) => {
                eprintln!("pytorch side failed: {e:#}");
                res.notes.push(format!("PyTorch failed to start: {e:#}"));
            }
        }
    }
    let block = args.secs / args.rounds as f64;
    for round in 1..=args.rounds {
        eprintln!("{m}: fast path, round {round} ...");
        let f = bench_candle(&net, block)?;
        let fm = median(&f.tot);
        res.fast.add(f);
        let Some(server) = server.as_mut() else {
            continue;
        };
        // PyTorch's modes in a rotating order, so none always runs right after the fast path.
        let k = res.torch.len().max(1);
        for i in 0..res.torch.len() {
            let tm = &mut res.torch[(i + round - 1) % k];
            if tm.error.is_some() {
                continue;
            }
            eprintln!("{m}: pytorch {}, round {round} ...", tm.mode);
            match server.time(&tm.mode, block) {
                Ok(t) => {
                    tm.ratios.push(median(&t.tot) / fm);
                    tm.timing.add(t);
                }
                Err(e) => {
                    eprintln!("pytorch side failed: {e:#}");
                    tm.error = Some(format!("{e:#}"));
                }
            }
        }
    }
    Ok(res)
}

fn main() -> Result<()> {
    let Some(args) = parse_args()? else {
        return Ok(());
    };
    // As in the binaries: candle's elementwise pool without spinning, the allocator tuning,
    // second-order gradients on this thread and first-order backward passes detached on rayon's
    // pool of --threads threads.
    let opts = zoo_models::InitOptions {
        jobs: 1,
        threads: Some(args.threads),
    };
    // SAFETY: argument parsing starts no thread; this is still the only one.
    unsafe { zoo_models::init_with(&opts) };
    if rayon::current_num_threads() != args.threads {
        bail!(
            "rayon's pool has {} threads, not --threads {}",
            rayon::current_num_threads(),
            args.threads
        );
    }
    let side = TorchSide {
        python: args.python.clone(),
        script: concat!(env!("CARGO_MANIFEST_DIR"), "/benches/torch_modes.py").into(),
        bench_dir: args.torch_bench.clone(),
        threads: args.threads,
    };
    let load_start = load();
    let started = sh("date", &["-u", "+%Y-%m-%d %H:%M:%S"]);

    // sgemm peaks, alternating ours and PyTorch's in 3 rounds; the peak is the best round.
    let (mut gemm_ours, mut gemm_torch) = (vec![], vec![]);
    if args.sgemm {
        for round in 1..=3 {
            eprintln!("sgemm 1024^3, round {round} ...");
            gemm_ours.push(sgemm_ours(args.sgemm_secs)?);
            if args.torch {
                match side.sgemm(args.sgemm_secs) {
                    Ok(g) => gemm_torch.push(g),
                    Err(e) => eprintln!("pytorch sgemm failed: {e:#}"),
                }
            }
        }
    }
    let peak = |v: &[f64]| {
        v.iter()
            .copied()
            .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))))
    };
    let (peak_ours, peak_torch) = (peak(&gemm_ours), peak(&gemm_torch));

    let mut rows = vec![];
    for m in &args.models {
        rows.push(bench_net(&args, &side, m)?);
    }
    let mut meta_rows = vec![];
    if args.meta {
        for m in &args.models {
            if m == "mlp" {
                continue;
            }
            eprintln!("{m}: plain step vs meta-steps ...");
            meta_rows.push(bench_meta(m, args.secs, args.rounds, args.mlnt)?);
        }
    }
    let load_end = load();
    let torch_version = if args.torch {
        sh(
            &args.python,
            &["-c", "import torch; print('torch', torch.__version__)"],
        )
    } else {
        "not run".into()
    };
    let md = report(
        &args,
        &rows,
        &meta_rows,
        (peak_ours, peak_torch),
        (&gemm_ours, &gemm_torch),
        Header {
            started,
            load_start,
            load_end,
            torch_version,
        },
    );
    print!("{md}");
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = args.out.with_extension("md.tmp");
    std::fs::write(&tmp, &md)?;
    std::fs::rename(&tmp, &args.out)?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

/// The run's context for the report.
struct Header {
    started: String,
    load_start: String,
    load_end: String,
    torch_version: String,
}

fn fmt_ratios(v: &[f64]) -> String {
    v.iter()
        .map(|r| format!("{r:.2}x"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn report(
    args: &Args,
    rows: &[NetResult],
    meta_rows: &[MetaTiming],
    (peak_ours, peak_torch): (Option<f64>, Option<f64>),
    (gemm_ours, gemm_torch): (&[f64], &[f64]),
    h: Header,
) -> String {
    let mut md = String::new();
    md.push_str("# Train-step throughput: fast path vs PyTorch's CPU modes (f32)\n\n");
    md.push_str(&format!(
        "Written by `cargo bench -p zoo-models --bench train_step` (started {} UTC, finished {} UTC).\n\
         Machine: {}; {} threads each (rayon / torch.set_num_threads).\n\
         Load at start: `{}`; at end: `{}`.\n\
         Source: git {}{}.\n\
         PyTorch: {} (`{}`), running `models/benches/torch_modes.py` on the nets of `{}/torch_bench.py`.\n\n",
        h.started,
        sh("date", &["-u", "+%Y-%m-%d %H:%M:%S"]),
        machine(),
        args.threads,
        h.load_start,
        h.load_end,
        sh("git", &["-C", env!("CARGO_MANIFEST_DIR"), "rev-parse", "--short", "HEAD"]),
        {
            let dirty = sh(
                "git",
                &["-C", env!("CARGO_MANIFEST_DIR"), "status", "--porcelain", "--", "src", "benches"],
            );
            if dirty.is_empty() {
                String::new()
            } else {
                format!(
                    " (with uncommitted changes to {} files under models/src or models/benches)",
                    dirty.lines().count()
                )
            }
        },
        h.torch_version,
        args.python,
        args.torch_bench,
    ));
    if let Some(note) = &args.note {
        md.push_str(&format!("**Note.** {note}\n\n"));
    }
    md.push_str(&format!(
        "Step = forward + cross-entropy + backward + plain SGD (lr 0.01; the zoo's `Sgd`, in place on \
         the fast path). The fast path and each PyTorch mode (eager NCHW, channels-last, \
         `torch.compile`, channels-last + `torch.compile`; compilation timed once at set-up, outside \
         the step times) run alternately in {} rounds of {:.1} s each after a 2 s warm-up per block; \
         times are medians pooled over the rounds, and each ratio (the fast path's steps/s over the \
         other's) is the median of the per-round ratios. The best PyTorch mode is the one with the \
         lowest pooled median. candle's own ops run once ({} s, not interleaved; their ratio is of \
         pooled medians).\n\n",
        args.rounds,
        args.secs / args.rounds as f64,
        args.secs,
    ));
    md.push_str(
        "| net | direct-eq. GFLOP / step | fast path ms | best PyTorch mode | its ms | **fast path / best mode** | fast path / eager | candle ops / best mode |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let fm = median(&r.fast.tot);
        let eager = r
            .torch
            .iter()
            .find(|t| t.mode == "eager" && !t.ratios.is_empty());
        let (best, best_ms, best_ratio, candle) = match r.best() {
            Some(b) => {
                let bm = median(&b.timing.tot);
                (
                    b.mode.clone(),
                    format!("{:.1}", bm * 1e3),
                    format!("**{:.2}x**", median(&b.ratios)),
                    r.candle
                        .as_ref()
                        .map_or("n/a".into(), |c| format!("{:.2}x", bm / median(&c.tot))),
                )
            }
            None => ("n/a".into(), "".into(), "n/a".into(), "n/a".into()),
        };
        md.push_str(&format!(
            "| {} | {:.2} | {:.1} | {best} | {best_ms} | {best_ratio} | {} | {candle} |\n",
            r.model,
            3.0 * forward_flops(&r.model) / 1e9,
            fm * 1e3,
            eager.map_or("n/a".into(), |e| format!("{:.2}x", median(&e.ratios))),
        ));
    }
    md.push_str(
        "\n## Every implementation\n\n\
         GFLOP/s is direct-equivalent: a step's FLOPs counted as direct convolution and dense \
         layers, `3·F` with forward `F = Σ 2·|output|·c_in·k_h·k_w` over convolutions and \
         `Σ 2·batch·in·out` over linear layers (forward + a backward of twice the forward; bias, \
         batch norm, ReLU, pooling, loss and SGD not counted; the first layer's input gradient, \
         which nobody computes, is in the count: MLP 13 %, LeNet 3 %, ResNet-32 0.2 %). Winograd \
         does fewer multiplies than that count. % of peak: of the same framework's sgemm peak \
         below (candle/gemm for candle ops and the fast path, PyTorch's for PyTorch).\n\n\
         | model | implementation | steps/s | ms/step | fwd ms | bwd ms | upd ms | steps timed | last loss | GFLOP/s | % of sgemm peak | fast path / this (steps/s) |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let mut ratios_md = String::new();
    let mut notes_md = String::new();
    for r in rows {
        let flops = 3.0 * forward_flops(&r.model);
        let fm = median(&r.fast.tot);
        let line = |name: &str, t: &Timing, peak: Option<f64>, ratio: String| {
            let med = median(&t.tot);
            let gf = flops / med / 1e9;
            format!(
                "| {} | {name} | {:.2} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {:.4} | {gf:.0} | {} | {ratio} |\n",
                r.model,
                1.0 / med,
                med * 1e3,
                median(&t.fwd) * 1e3,
                median(&t.bwd) * 1e3,
                median(&t.upd) * 1e3,
                t.tot.len(),
                t.loss,
                peak.map_or("n/a".into(), |p| format!("{:.0} %", 100.0 * gf / p)),
            )
        };
        if let Some(c) = &r.candle {
            md += &line(
                "candle ops",
                c,
                peak_ours,
                format!("{:.2}x (pooled)", median(&c.tot) / fm),
            );
        }
        md += &line("fast path", &r.fast, peak_ours, "1.00x".into());
        for t in &r.torch {
            if t.timing.tot.is_empty() {
                md.push_str(&format!(
                    "| {} | pytorch {} | failed | | | | | | | | | |\n",
                    r.model, t.mode
                ));
                continue;
            }
            md += &line(
                &format!("pytorch {}", t.mode),
                &t.timing,
                peak_torch,
                format!("{:.2}x", median(&t.ratios)),
            );
            ratios_md.push_str(&format!(
                "- {} vs pytorch {}: {}\n",
                r.model,
                t.mode,
                fmt_ratios(&t.ratios)
            ));
        }
        for n in &r.notes {
            notes_md.push_str(&format!("- {}: {n}\n", r.model));
        }
        for t in &r.torch {
            if let Some(c) = t.compile_s {
                let eager = r
                    .torch
                    .iter()
                    .find(|e| e.mode == "eager" && !e.timing.tot.is_empty());
                // Compile against the same memory format without it.
                let plain = if t.mode == "channels_last_compile" {
                    "channels_last"
                } else {
                    "eager"
                };
                let base = r
                    .torch
                    .iter()
                    .find(|e| e.mode == plain && !e.timing.tot.is_empty());
                let base = base.or(eager);
                let vs = match (base, t.timing.tot.is_empty()) {
                    (Some(b), false) => format!(
                        "; its step {:.2}x the time of {}'s ({})",
                        median(&t.timing.tot) / median(&b.timing.tot),
                        b.mode,
                        if median(&t.timing.tot) < median(&b.timing.tot) {
                            "compile helps"
                        } else {
                            "compile does not help"
                        }
                    ),
                    _ => String::new(),
                };
                notes_md.push_str(&format!(
                    "- {}: pytorch {} compiled in {c:.1} s (first step, excluded from the times){vs}\n",
                    r.model, t.mode
                ));
            }
            if let Some(e) = &t.error {
                notes_md.push_str(&format!("- {}: pytorch {} failed: {e}\n", r.model, t.mode));
            }
        }
    }
    if !ratios_md.is_empty() {
        md.push_str("\nFast path / PyTorch steps per second, per round:\n\n");
        md.push_str(&ratios_md);
    }
    if !notes_md.is_empty() {
        md.push_str("\nNotes:\n\n");
        md.push_str(&notes_md);
    }
    if !gemm_ours.is_empty() {
        md.push_str(&format!(
            "\n## sgemm peak (1024³, f32, {} threads)\n\n\
             Three alternating rounds of {} s each; GFLOP/s at each round's median time; the peak is \
             the best round.\n\n\
             - candle matmul (`gemm` crate): {} GFLOP/s, peak **{:.0}**\n\
             - PyTorch (`torch_bench.py sgemm`): {}{}\n",
            args.threads,
            args.sgemm_secs,
            gemm_ours.iter().map(|g| format!("{g:.0}")).collect::<Vec<_>>().join(", "),
            peak_ours.unwrap_or(f64::NAN),
            if gemm_torch.is_empty() {
                "not run".to_string()
            } else {
                format!(
                    "{} GFLOP/s",
                    gemm_torch.iter().map(|g| format!("{g:.0}")).collect::<Vec<_>>().join(", ")
                )
            },
            peak_torch.map_or(String::new(), |p| format!(", peak **{p:.0}**")),
        ));
    }
    if !meta_rows.is_empty() {
        md.push_str(
            "\n## Meta-learning steps vs a plain step (zoo models, fast path)\n\n\
             Plain = forward + mean CE + backward + SGD (momentum 0.9). L2RW meta-step = \
             `meta::l2rw_grad` (forward, weights-only backward, meta forward at the virtual \
             parameters, backward) + `l2rw_weights`; L2RW step = the meta-step by \
             `meta::l2rw_grad_reusing` + the weighted real step from its inner forward. MWN \
             meta-step = `meta::classifier_meta_gradient` with VNet 1-100-1 weights normalised to \
             sum 1 (the paper preset) + the VNet's SGD step; MWN step = that meta-step (every step, \
             as the paper) + the real step weighted by the updated VNet (its own forward: the \
             public API does not hand MWN the meta-step's inner forward, as it does L2RW). MLNT: \
             the exact meta-gradient of one synthetic label set (`meta::unrolled_meta_gradient`, \
             one fast SGD step of 0.2, consistency KL to the teacher; second order through θ); \
             the whole MLNT step with the cpu preset's M, the combined update (∇CE + ∇L_meta in \
             one SGD step); M = 10 extrapolated. All built from `zoo_models`' public API. The \
             steps are timed interleaved, one of each per round; times are medians, ratios medians \
             of the per-round ratios. Goals (issue 27): a whole L2RW step and an MWN step (meta \
             every step) <= 3x a plain step.\n\n\
             | model | batch / meta batch | rounds | step | ms | / plain step |\n\
             |---|---|---|---|---|---|\n",
        );
        for t in meta_rows {
            for r in &t.rows {
                md.push_str(&format!(
                    "| {} | {} | {} | {} | {:.1} | {:.2}x |\n",
                    t.name,
                    t.batches,
                    t.rounds,
                    r.step,
                    r.secs * 1e3,
                    r.ratio
                ));
            }
        }
    }
    md
}
