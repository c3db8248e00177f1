//! Train-step throughput (forward + cross-entropy + backward + plain SGD, f32) of the MLP
//! 784-1200-1200-10 (batch 100), the LeNet of `../shared/bench/torch_bench.py` (batch 100) and
//! ResNet-32 (option B shortcuts, as in that script; batch 128), with candle's own ops and with
//! the fast path side by side, plus PyTorch running the same step through the script.
//!
//! A second table times the L2RW meta-step (`zoo_models::meta::l2rw_grad` and the weights) and
//! a whole L2RW training step (`l2rw_grad_reusing`, the weights, then the weighted real step
//! from the meta-step's inner forward) against a plain step of the same zoo model and optimiser:
//! Ren et al.'s
//! MNIST LeNet (batch 100, 10 meta images, as in the `l2rw` MNIST experiment) and ResNet-32
//! (batch 128, meta batch 100), on the fast path.
//!
//! `cargo bench -p zoo-models --bench train_step -- [--secs S] [--rounds 5]
//!  [--models mlp,lenet,resnet32] [--threads 2] [--python PATH] [--no-torch] [--no-candle]
//!  [--no-meta] [--out FILE]`
//!
//! The fast path and PyTorch alternate in `--rounds` rounds of `S / rounds` seconds each, and
//! their ratio is the median of the per-round ratios: this shared machine's speed drifts by tens
//! of percent within minutes, and back-to-back blocks of one then the other did not see the same
//! machine (the same build's ResNet-32 ratio read 1.04× and 0.85× nine minutes apart).
//!
//! The nets are written here against `zoo_models::ops` so they match the PyTorch script layer
//! for layer (with the zoo's fused ops where PyTorch runs two or three: conv + bias + ReLU, BN +
//! ReLU, linear + bias + ReLU, residual sum + ReLU). The table goes to stdout and (atomically) to `results/bench/train_step.md`.

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor, Var};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
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

/// Median plain and L2RW step times of one zoo model.
struct MetaTiming {
    name: &'static str,
    batches: &'static str,
    plain: f64,
    /// `l2rw_grad` + `l2rw_weights`.
    meta: f64,
    /// The whole training step: `l2rw_grad_reusing`, weights, weighted real step.
    l2rw: f64,
    /// Medians over rounds of `meta / plain` and `l2rw / plain` timed in the same round.
    meta_ratio: f64,
    l2rw_ratio: f64,
}

/// A boxed benchmark step.
type Step<'a> = Box<dyn FnMut() -> Result<()> + 'a>;

/// Times `steps` in rounds (one run of each per round, after two warm-up rounds) for at least
/// `secs` per step and 3 rounds; each round's times in seconds.
fn time_interleaved(secs: f64, mut steps: Vec<Step<'_>>) -> Result<Vec<Vec<f64>>> {
    for _ in 0..2 {
        for s in steps.iter_mut() {
            s()?;
        }
    }
    let start = Instant::now();
    let mut rounds = vec![];
    while start.elapsed().as_secs_f64() < secs * steps.len() as f64 || rounds.len() < 3 {
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

fn bench_meta(model: &str, secs: f64) -> Result<MetaTiming> {
    use zoo_models::loss::{self as zl, Reduction};
    use zoo_models::meta::{l2rw_grad, l2rw_grad_reusing, l2rw_weights};
    use zoo_models::models::{LeNet, LeNetConfig, ResNetCifar, ResNetCifarConfig};
    use zoo_models::optim::{Optimizer, Sgd};
    use zoo_models::{Classifier, Ctx};

    let mut rng = StdRng::seed_from_u64(7);
    let dev = Device::Cpu;
    let (net, name, batches, (x, y), (xm, ym)): (Box<dyn Classifier>, _, _, _, _) = match model {
        "lenet" => (
            Box::new(LeNet::new(LeNetConfig::mnist(2), &mut rng, &dev)?),
            "LeNet (Ren et al., MNIST 4-vs-9)",
            "100 / 10",
            data(&mut rng, &[100, 1, 28, 28], 2)?,
            data(&mut rng, &[10, 1, 28, 28], 2)?,
        ),
        _ => (
            Box::new(ResNetCifar::new(
                ResNetCifarConfig::new(32, 10),
                &mut rng,
                &dev,
            )?),
            "ResNet-32 (option A)",
            "128 / 100",
            data(&mut rng, &[128, 3, 32, 32], 10)?,
            data(&mut rng, &[100, 3, 32, 32], 10)?,
        ),
    };
    let lr = 0.01;
    let net = net.as_ref();
    let (x, y, xm, ym) = (&x, &y, &xm, &ym);
    let mut sgd_plain = Sgd::new(0.9, false, 0.0)?;
    let mut sgd_l2rw = Sgd::new(0.9, false, 0.0)?;
    // Interleaved, one step of each per round: the machine's speed drifts, and the ratios are
    // taken per round so that the three steps always see the same conditions.
    let times = time_interleaved(
        secs,
        vec![
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
        ],
    )?;
    let ratio = |i: usize| median(&times.iter().map(|t| t[i] / t[0]).collect::<Vec<_>>());
    let col = |i: usize| median(&times.iter().map(|t| t[i]).collect::<Vec<_>>());
    let (plain, meta, l2rw) = (col(0), col(1), col(2));
    let (meta_ratio, l2rw_ratio) = (ratio(1), ratio(2));
    Ok(MetaTiming {
        name,
        batches,
        plain,
        meta,
        l2rw,
        meta_ratio,
        l2rw_ratio,
    })
}

fn bench_torch(python: &str, script: &str, model: &str, secs: f64) -> Result<Timing> {
    let out = std::process::Command::new(python)
        .args([script, model, &secs.to_string()])
        .env("OMP_NUM_THREADS", "2")
        .output()
        .with_context(|| format!("running {python} {script}"))?;
    if !out.status.success() {
        bail!(
            "torch_bench.py {model} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let line = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value =
        serde_json::from_str(line.trim()).context("parsing torch_bench.py output")?;
    let arr = |k: &str| -> Result<Vec<f64>> {
        v[k].as_array()
            .with_context(|| format!("torch_bench.py output lacks {k}"))?
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

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "n/a".into())
}

struct Args {
    secs: f64,
    models: Vec<String>,
    threads: usize,
    python: String,
    torch: bool,
    candle: bool,
    meta: bool,
    rounds: usize,
    out: std::path::PathBuf,
}

const USAGE: &str = "\
usage: cargo bench -p zoo-models --bench train_step -- [options]
  --secs S             seconds timed per implementation and model, split over the rounds (10)
  --rounds N           alternating fast-path / PyTorch rounds; ratio = median of per-round ratios (5)
  --models LIST        comma-separated: mlp, lenet, resnet32 (all three)
  --threads N          threads for rayon and for torch.set_num_threads (2)
  --python PATH        Python with torch installed (python3)
  --no-torch           skip PyTorch
  --no-candle          skip candle's own ops
  --no-meta            skip the L2RW meta-step table
  --out FILE           where the table goes (results/bench/train_step.md)
  -h, --help           this text";

/// `None` for `--help` (after printing the usage).
fn parse_args() -> Result<Option<Args>> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let mut a = Args {
        secs: 10.0,
        models: vec!["mlp".into(), "lenet".into(), "resnet32".into()],
        threads: 2,
        python: "python3".into(),
        torch: true,
        candle: true,
        meta: true,
        rounds: 5,
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
            "--rounds" => a.rounds = val("--rounds")?.parse().context("--rounds: not a number")?,
            "--out" => a.out = val("--out")?.into(),
            "--no-torch" => a.torch = false,
            "--no-candle" => a.candle = false,
            "--no-meta" => a.meta = false,
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
    if a.secs <= 0.0 || a.threads == 0 || a.rounds == 0 {
        bail!("--secs, --threads and --rounds must be positive");
    }
    Ok(Some(a))
}

fn main() -> Result<()> {
    // candle's elementwise pool: no spinning, no workers on a few-core machine, as the binaries.
    zoo_models::ops::tame_candle_pool(1);
    let Some(args) = parse_args()? else {
        return Ok(());
    };
    // As in the binaries: second-order gradients on this thread, first-order backward passes
    // detached on rayon's pool, which start_detached_threads builds with --threads threads.
    std::env::set_var("RAYON_NUM_THREADS", args.threads.to_string());
    zoo_models::backprop::start_detached_threads(1);
    if rayon::current_num_threads() != args.threads {
        bail!(
            "rayon's pool has {} threads, not --threads {}",
            rayon::current_num_threads(),
            args.threads
        );
    }
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/bench/torch_bench.py"
    );
    let load_start = loadavg();
    let mut rows = vec![];
    for m in &args.models {
        let net = match m.as_str() {
            "mlp" => mlp()?,
            "lenet" => lenet()?,
            _ => resnet32()?,
        };
        let mut r: Vec<(String, Option<Timing>)> = vec![];
        if args.candle {
            ops::set_backend(Backend::Candle);
            eprintln!("{m}: candle ops ...");
            r.push(("candle ops".into(), Some(bench_candle(&net, args.secs)?)));
        }
        ops::set_backend(Backend::Fast);
        // The fast path and PyTorch alternate in rounds of secs / rounds each, so that both
        // see the same machine: its speed drifts by tens of percent within minutes.
        let (mut fast, mut torch) = (Timing::default(), Some(Timing::default()));
        let mut round_ratios = vec![];
        for round in 1..=args.rounds {
            eprintln!("{m}: fast path, round {round} ...");
            let f = bench_candle(&net, args.secs / args.rounds as f64)?;
            let fm = median(&f.tot);
            fast.add(f);
            if let (true, Some(acc)) = (args.torch, torch.as_mut()) {
                eprintln!("{m}: pytorch, round {round} ...");
                match bench_torch(&args.python, script, m, args.secs / args.rounds as f64) {
                    Ok(t) => {
                        round_ratios.push(median(&t.tot) / fm);
                        acc.add(t);
                    }
                    Err(e) => {
                        eprintln!("pytorch side failed: {e:#}");
                        torch = None;
                    }
                }
            }
        }
        r.push(("fast path".into(), Some(fast)));
        if args.torch {
            r.push(("pytorch".into(), torch));
        }
        rows.push((m.clone(), r, round_ratios));
    }
    let mut meta_rows = vec![];
    if args.meta {
        for m in &args.models {
            if m == "mlp" {
                continue;
            }
            eprintln!("{m}: plain step vs L2RW meta-step ...");
            meta_rows.push(bench_meta(m, args.secs)?);
        }
    }
    let load_end = loadavg();

    let mut md = String::new();
    md.push_str("# Train-step throughput: candle ops vs fast path vs PyTorch (CPU, f32)\n\n");
    md.push_str(&format!(
        "Written by `cargo bench -p zoo-models --bench train_step` on {} (UTC).\n\
         Machine: {}; {} threads each (rayon / torch.set_num_threads). Load average (1/5/15 min) \
         at start: {load_start}; at end: {load_end}.\n\
         PyTorch: `{}` running `../shared/bench/torch_bench.py` ({}).\n\n\
         Step = forward + cross-entropy + backward + plain SGD (the zoo's `Sgd`: in place on the fast path, tensor ops with candle's ops); median over >= {}s after warm-up. \
         fwd/bwd/upd are medians of each phase. The fast path and PyTorch run alternately in {} rounds of {:.1}s each \
         (times pooled over the rounds); their ratio is the median of the per-round ratios (listed), candle's ops' \
         ratio is to PyTorch's pooled median.\n\n",
        sh("date", &["-u", "+%Y-%m-%d %H:%M"]),
        machine(),
        args.threads,
        args.python,
        sh(
            &args.python,
            &["-c", "import torch; print('torch', torch.__version__)"]
        ),
        args.secs,
        args.rounds,
        args.secs / args.rounds as f64,
    ));
    md.push_str("| model | implementation | steps/s | ms/step | fwd ms | bwd ms | upd ms | steps timed | last loss | ratio to PyTorch |\n");
    md.push_str("|---|---|---|---|---|---|---|---|---|---|\n");
    let mut ratios_md = String::new();
    for (m, r, round_ratios) in &rows {
        let torch = r
            .iter()
            .find(|(n, _)| n == "pytorch")
            .and_then(|(_, t)| t.as_ref())
            .map(|t| median(&t.tot));
        for (name, t) in r {
            let ratio = match (name.as_str(), torch) {
                ("pytorch", Some(_)) => "1.00x".to_string(),
                ("fast path", Some(_)) if !round_ratios.is_empty() => {
                    format!("{:.2}x", median(round_ratios))
                }
                (_, Some(tt)) => t
                    .as_ref()
                    .map_or("n/a".into(), |t| format!("{:.2}x", tt / median(&t.tot))),
                _ => "n/a".into(),
            };
            match t {
                Some(t) => {
                    let med = median(&t.tot);
                    md.push_str(&format!(
                        "| {m} | {name} | {:.2} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {:.4} | {ratio} |\n",
                        1.0 / med,
                        med * 1e3,
                        median(&t.fwd) * 1e3,
                        median(&t.bwd) * 1e3,
                        median(&t.upd) * 1e3,
                        t.tot.len(),
                        t.loss,
                    ))
                }
                None => md.push_str(&format!("| {m} | {name} | failed | | | | | | | |\n")),
            }
        }
        if !round_ratios.is_empty() {
            let list: Vec<String> = round_ratios.iter().map(|r| format!("{r:.2}x")).collect();
            ratios_md.push_str(&format!("- {m}: {}\n", list.join(", ")));
        }
    }
    if !ratios_md.is_empty() {
        md.push_str("\nFast path / PyTorch steps per second, per round:\n\n");
        md.push_str(&ratios_md);
    }
    if !meta_rows.is_empty() {
        md.push_str(
            "\n## L2RW meta-step vs plain step (zoo models, fast path)\n\n\
             Plain = forward + mean CE + backward + SGD (momentum 0.9). Meta-step = \
             `meta::l2rw_grad` (forward, backward kept differentiable, meta forward at the \
             virtual parameters, backward through both) + `l2rw_weights`. L2RW step = the \
             meta-step by `meta::l2rw_grad_reusing` + the weighted real step, whose forward is \
             the meta-step's inner forward (same θ, same batch). The three steps are timed \
             interleaved, one of each per round; times are medians, ratios medians of the \
             per-round ratios. Goal: <= 3x.\n\n\
             | model | batch / meta batch | plain ms/step | meta-step ms | meta-step / plain \
             | L2RW step ms | L2RW step / plain |\n\
             |---|---|---|---|---|---|---|\n",
        );
        for t in &meta_rows {
            md.push_str(&format!(
                "| {} | {} | {:.1} | {:.1} | {:.2}x | {:.1} | {:.2}x |\n",
                t.name,
                t.batches,
                t.plain * 1e3,
                t.meta * 1e3,
                t.meta_ratio,
                t.l2rw * 1e3,
                t.l2rw_ratio
            ));
        }
    }
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
