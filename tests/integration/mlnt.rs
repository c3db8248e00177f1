//! MLNT's pieces: neighbour label transfer (the count of resampled rows, labels only from the
//! batch), the EMA teacher update against hand-computed values, the unrolled meta-gradient of the
//! consistency loss against central finite differences in f64 (exact; the first-order variant is
//! checked to differ), the combined update's gradient, and the smoke preset end to end through
//! the built binary. Needs `CANDLE_GRAD_DO_NOT_DETACH=1` (set by `.cargo/config.toml`).

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use zoo::mlnt::{
    consistency_kl, ema_update, mlnt_meta_gradient, nearest_neighbours, neighbour_label_transfer,
    schedule_at, FastSteps, MlntConfig,
};
use zoo_models::loss::{self, Reduction};
use zoo_models::meta::virtual_step;
use zoo_models::models::{Mlp, MlpConfig};
use zoo_models::{Classifier, Ctx, ParamSet};

use crate::common::{
    assert_ok, assert_rejected_before_work, cifar_dir, randn, read_json, row_names, run_with_out,
    scratch, smoke_summary, svg_plots, v1,
};

#[test]
fn neighbour_transfer_resamples_floor_rho_n_rows_with_batch_labels() {
    let mut rng = StdRng::seed_from_u64(3);
    for (n, rho, k) in [
        (20, 0.5, 5),
        (33, 0.5, 10),
        (17, 0.3, 3),
        (10, 1.0, 9),
        (12, 0.0, 4),
    ] {
        let d = 6;
        let feats: Vec<f32> = (0..n * d).map(|_| rng.random::<f32>()).collect();
        // Labels from a few classes only, so "present in the batch" is a real constraint.
        let labels: Vec<u32> = (0..n)
            .map(|_| [1u32, 4, 7][rng.random_range(0..3)])
            .collect();
        let nb = nearest_neighbours(&feats, n, k).unwrap();
        for (i, l) in nb.iter().enumerate() {
            assert_eq!(l.len(), k.min(n - 1));
            assert!(!l.contains(&i), "row {i} is its own neighbour");
        }
        for _ in 0..20 {
            let t = neighbour_label_transfer(&labels, &nb, rho, &mut rng).unwrap();
            let count = (n as f64 * rho).floor() as usize;
            assert_eq!(t.selected.len(), count, "n = {n}, ρ = {rho}");
            let mut sel = t.selected.clone();
            sel.sort_unstable();
            sel.dedup();
            assert_eq!(sel.len(), count, "a row was selected twice");
            for i in 0..n {
                if t.selected.contains(&i) {
                    // The label of one of the row's k nearest neighbours.
                    assert!(
                        nb[i].iter().any(|&j| labels[j] == t.labels[i]),
                        "row {i}: label {} is no neighbour's",
                        t.labels[i]
                    );
                } else {
                    assert_eq!(t.labels[i], labels[i], "unselected row {i} changed");
                }
                assert!(labels.contains(&t.labels[i]), "label not in the batch");
            }
        }
    }
}

/// Pairs of points far apart, each pair with two different labels, k = 1: every selected row's
/// only neighbour carries the other label, so exactly ⌊ρn⌋ labels change.
#[test]
fn neighbour_transfer_changes_exactly_floor_rho_n_labels_when_neighbours_differ() {
    let mut rng = StdRng::seed_from_u64(9);
    let pairs = 10;
    let n = 2 * pairs;
    let mut feats = Vec::new();
    let mut labels = Vec::new();
    for p in 0..pairs {
        let c = 100.0 * p as f32;
        feats.extend([c, 0.0, c + 0.1, 0.0]);
        labels.extend([(p % 3) as u32, (p % 3 + 1) as u32]);
    }
    let nb = nearest_neighbours(&feats, n, 1).unwrap();
    for p in 0..pairs {
        assert_eq!(nb[2 * p], vec![2 * p + 1]);
        assert_eq!(nb[2 * p + 1], vec![2 * p]);
    }
    for rho in [0.5, 0.25, 0.33, 1.0] {
        for _ in 0..10 {
            let t = neighbour_label_transfer(&labels, &nb, rho, &mut rng).unwrap();
            let changed = t.labels.iter().zip(&labels).filter(|(a, b)| a != b).count();
            assert_eq!(changed, (n as f64 * rho).floor() as usize, "ρ = {rho}");
        }
    }
}

#[test]
fn ema_update_equals_hand_computed_values() {
    let dev = Device::Cpu;
    let cfg = MlpConfig::new(&[3, 4, 2]);
    let teacher = Mlp::new(cfg.clone(), &mut StdRng::seed_from_u64(1), &dev).unwrap();
    let student = Mlp::new(cfg, &mut StdRng::seed_from_u64(2), &dev).unwrap();
    // Constants first: 0.99·1 + 0.01·3 = 1.02.
    for v in teacher.store().vars().values() {
        v.set(&Tensor::ones(v.shape(), v.dtype(), &dev).unwrap())
            .unwrap();
    }
    for v in student.store().vars().values() {
        v.set(&(Tensor::ones(v.shape(), v.dtype(), &dev).unwrap() * 3.0).unwrap())
            .unwrap();
    }
    ema_update(teacher.store(), student.store(), 0.99).unwrap();
    for (name, v) in teacher.store().vars() {
        for x in v1(v.as_tensor()) {
            assert!((x - 1.02).abs() < 1e-6, "{name}: {x}");
        }
    }
    // Random values, elementwise in f64, twice (the second update starts from the first).
    let mut rng = StdRng::seed_from_u64(5);
    for v in student.store().vars().values() {
        let r = randn(&mut rng, v.dims(), 1.0).to_dtype(v.dtype()).unwrap();
        v.set(&r).unwrap();
    }
    for eps in [0.9, 0.999] {
        let before: BTreeMap<String, Vec<f64>> = teacher
            .store()
            .vars()
            .iter()
            .map(|(k, v)| (k.clone(), v1(v.as_tensor())))
            .collect();
        ema_update(teacher.store(), student.store(), eps).unwrap();
        for (name, v) in teacher.store().vars() {
            let s = v1(student.store().var(name).unwrap().as_tensor());
            let got = v1(v.as_tensor());
            for ((g, t), s) in got.iter().zip(&before[name]).zip(&s) {
                let want = eps * t + (1.0 - eps) * s;
                assert!((g - want).abs() < 1e-6, "{name}: {g} vs {want}");
            }
        }
    }
}

#[test]
fn schedule_follows_the_official_ramp() {
    let s = MlntConfig::paper().mlnt;
    assert_eq!((s.start_iter, s.mid_iter), (500, 2000));
    assert!(schedule_at(&s, 500).is_none(), "starts after start_iter");
    let (a, e) = schedule_at(&s, 501).unwrap();
    assert!((a - (-5.0f64 * (1.0 - 1.0 / 1500.0f64).powi(2)).exp()).abs() < 1e-12);
    assert_eq!(e, 0.99);
    let (a, e) = schedule_at(&s, 1250).unwrap();
    assert!((a - (-5.0f64 * 0.25).exp()).abs() < 1e-12);
    assert_eq!(e, 0.99);
    assert_eq!(schedule_at(&s, 2001), Some((1.0, 0.999)));
}

/// The f64 oracle: `(1/M) Σ_m KL(p ‖ f(x; θ'_m))` with `θ'_m` from `steps` plain SGD steps
/// on the synthetic labels (values only: the first-order virtual step has the same value).
fn meta_loss_value(
    model: &Mlp,
    theta: &ParamSet,
    x: &Tensor,
    ys: &[Tensor],
    p: &Tensor,
    lr: f64,
    steps: usize,
) -> f64 {
    let mut total = 0.0;
    for y in ys {
        let mut th = theta.detach();
        for _ in 0..steps {
            // Fresh variables, so the step differentiates (a detached entry would pass through).
            let tracked = th
                .map(|_, t| Ok(candle_core::Var::from_tensor(t)?.as_tensor().clone()))
                .unwrap();
            th = virtual_step(&tracked, lr, true, |q| {
                let z = model.forward(q, x, &mut Ctx::train_no_rng(false))?;
                loss::cross_entropy(&z, y, Reduction::Mean)
            })
            .unwrap()
            .params
            .detach();
        }
        let z = model
            .forward(&th, x, &mut Ctx::train_no_rng(false))
            .unwrap();
        total += v1(&consistency_kl(&z, p).unwrap())[0];
    }
    total / ys.len() as f64
}

#[test]
fn mlnt_meta_gradient_matches_central_finite_differences() {
    let dev = Device::Cpu;
    let mut rng = StdRng::seed_from_u64(11);
    let model = Mlp::new(MlpConfig::new(&[5, 6, 4]), &mut rng, &dev).unwrap();
    // A tracked f64 copy of θ (every entry differentiable, as the store's variables are).
    let theta64: BTreeMap<String, candle_core::Var> = model
        .store()
        .params()
        .iter()
        .map(|(k, t)| {
            (
                k.clone(),
                candle_core::Var::from_tensor(&t.to_dtype(DType::F64).unwrap()).unwrap(),
            )
        })
        .collect();
    let theta = ParamSet::new(
        theta64
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
            .collect(),
    );
    let n = 8;
    let x = randn(&mut rng, &[n, 5], 2.0);
    let ys: Vec<Tensor> = (0..3)
        .map(|_| {
            let v: Vec<u32> = (0..n).map(|_| rng.random_range(0..4)).collect();
            Tensor::from_vec(v, n, &dev).unwrap()
        })
        .collect();
    let p =
        candle_nn::ops::softmax(&randn(&mut rng, &[n, 4], 3.0), candle_core::D::Minus1).unwrap();
    let lr = 0.5;
    for steps in [1, 2] {
        let grad = |first_order| {
            let fast = FastSteps {
                lr,
                steps,
                first_order,
            };
            mlnt_meta_gradient(&model, &theta, &x, (&ys, &p), fast).unwrap()
        };
        let (g, fo) = (grad(false), grad(true));
        let want_loss = meta_loss_value(&model, &theta, &x, &ys, &p, lr, steps);
        assert!((g.meta_loss - want_loss).abs() < 1e-12, "meta loss value");
        let h = 1e-5;
        let mut max_rel = 0.0f64;
        let mut fo_dev = 0.0f64;
        for (name, t) in theta.iter() {
            let base = v1(t);
            let an = v1(&g.grads[name]);
            let an_fo = v1(&fo.grads[name]);
            for i in 0..base.len() {
                let shifted = |d: f64| -> f64 {
                    let mut b = base.clone();
                    b[i] += d;
                    let mut th = theta.detach();
                    th.insert(name.clone(), Tensor::from_vec(b, t.shape(), &dev).unwrap());
                    meta_loss_value(&model, &th, &x, &ys, &p, lr, steps)
                };
                let fd = (shifted(h) - shifted(-h)) / (2.0 * h);
                let err = (an[i] - fd).abs() / (fd.abs().max(1e-6) + 1e-8);
                max_rel = max_rel.max(if fd.abs() < 1e-7 {
                    (an[i] - fd).abs() * 1e6
                } else {
                    err
                });
                fo_dev = fo_dev.max((an_fo[i] - fd).abs());
            }
        }
        assert!(
            max_rel < 1e-5,
            "{steps} fast step(s): exact meta-gradient vs finite differences, max rel error {max_rel:e}"
        );
        // The first-order approximation is a different number (the test can tell them apart).
        assert!(
            fo_dev > 1e-6,
            "{steps} fast step(s): first order agrees with finite differences ({fo_dev:e})"
        );
    }
}

#[test]
fn smoke_preset_end_to_end() {
    let out = scratch("mlnt", "smoke");
    let dir = cifar_dir();
    let o = run_with_out(
        env!("CARGO_BIN_EXE_mlnt"),
        &["--preset", "smoke", "--data-dir", dir.to_str().unwrap()],
        &out,
    );
    assert_ok(&o, "smoke run");
    let s = smoke_summary(&out, "mlnt");
    let rows = s["rows"].as_array().unwrap();
    let names = row_names(&s);
    for m in [
        "ce",
        "mlnt",
        "mlnt_fo",
        "mlnt (iteration 2)",
        "ce (iteration 2)",
    ] {
        assert!(
            names
                .iter()
                .any(|n| n.ends_with(&format!(": {m}, selected on validation"))),
            "no {m} row: {names:?}"
        );
    }
    crate::common::assert_rows_in_range(rows);
    let results = read_json(&out.join("results.json"));
    // ce, mlnt, mlnt_fo, and the second iteration of each (CE's: the ablation).
    assert_eq!(results.as_array().unwrap().len(), 6);
    // The ablation's paired row against MLNT's second iteration.
    assert!(
        names
            .iter()
            .any(|n| n.contains("mlnt (iteration 2) − ce (iteration 2)")),
        "no MLNT − CE second-round row: {names:?}"
    );
    // The MLNT runs took meta steps.
    let log = std::fs::read_to_string(out.join("seed_0/cifar10_uniform_any_0.4/mlnt/log.csv"))
        .expect("mlnt log");
    assert!(log.lines().next().unwrap().contains("train_meta_loss"));
    for f in ["config.json", "summary.md"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    // The accuracy curves: one plot for the one noise setting, with a line per method.
    let plots = svg_plots(&s, &out);
    assert_eq!(plots, ["test_accuracy_cifar10_uniform_any_0_4.svg"]);
    let svg = std::fs::read_to_string(out.join(&plots[0])).expect("curves plot");
    for m in ["mlnt_fo", "ce (iteration 2)"] {
        assert!(svg.contains(m), "no {m} line in the curves plot");
    }
    // The refactoring guard: the same numbers as the recorded baseline.
    crate::golden::check("mlnt_smoke", &s);
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn clothing1m_and_bad_flags_fail_before_any_work() {
    let cases = [
        vec!["--preset", "paper"],
        vec!["--preset", "smoke", "--parts", "clothing1m"],
        vec!["--preset", "smoke", "--num-fast", "0"],
        vec!["--preset", "smoke", "--perturb-ratio", "1.5"],
        vec!["--preset", "smoke", "--num-neighbor", "100"],
        vec!["--preset", "smoke", "--methods", "mlnt"],
        vec!["--preset", "smoke", "--noise", "pair:1.5"],
        vec!["--preset", "smoke", "--iterative", "false"],
    ];
    let errs = assert_rejected_before_work(env!("CARGO_BIN_EXE_mlnt"), "mlnt", &cases);
    for (bad, err) in cases.iter().zip(&errs) {
        if bad.contains(&"paper") || bad.contains(&"clothing1m") {
            assert!(
                err.contains("Clothing1M") && err.contains("offline"),
                "{err}"
            );
        }
    }
}

/// The cpu preset promises MWN's split, seeds and schedule, so that CE here replays `mwn`'s CE
/// and the two summaries can be read side by side.
#[test]
fn cpu_preset_matches_mwn_cpu_split_and_schedule() {
    let (m, w) = (MlntConfig::cpu(), zoo::mwn::MwnConfig::cpu());
    let (ms, ws) = (&m.cifar.settings[0], &w.noise.settings[0]);
    assert_eq!(
        (&ms.dataset, &ms.noise, &ms.net, ms.val_per_class),
        (&ws.dataset, &ws.noise, &ws.net, ws.meta_per_class)
    );
    assert_eq!(m.seeds, w.seeds);
    assert_eq!(
        (m.cifar.train_limit, m.cifar.test_limit, m.cifar.augment),
        (w.noise.train_limit, w.noise.test_limit, w.noise.augment)
    );
    let mut mwn_opt = w.noise.opt.clone();
    mwn_opt.warmup_steps = 0; // only MWN's weighting waits; CE's schedule is the same
    assert_eq!(m.cifar.opt, mwn_opt);
}
