//! Meta-Weight-Net's pieces: the VNet's range, the normalised weights, the real-step loss, and
//! the meta-gradient `dL_meta/dφ` under both normalisations against central finite differences
//! in f64 (a first-order oracle that shares nothing with the double backward under test).
//!
//! `models/tests/meta.rs` checks the unnormalised `dL/dφ` of the core on a hand-written VNet;
//! this file checks the binary's own path (library `VNet`, `n·v/Σv` normalisation) end to end.
//! Needs `CANDLE_GRAD_DO_NOT_DETACH=1` (set by `.cargo/config.toml` for `cargo test`).

use std::collections::BTreeMap;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor, Var};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use zoo::mwn::{
    mwn_meta_gradient, normalise_vnet_weights, vnet_weights, MwnRule, MwnSettings, Normalise,
    VnetOptim, Weighting,
};
use zoo::reweight::StepRule;
use zoo_models::loss::{self, Reduction};
use zoo_models::models::{Mlp, MlpConfig, VNet};
use zoo_models::{Classifier, Ctx, ParamSet};

use crate::common::{randn, v1};

const H: f64 = 1e-5;

fn labels(rng: &mut StdRng, n: usize, c: u32) -> Tensor {
    let v: Vec<u32> = (0..n).map(|_| rng.random_range(0..c)).collect();
    Tensor::from_vec(v, n, &Device::Cpu).unwrap()
}

#[test]
fn vnet_output_lies_in_the_open_unit_interval() {
    let dev = Device::Cpu;
    // Losses from 0 to 20 (CE of a 100-class model rarely exceeds ~15) and random ones.
    let mut rng = StdRng::seed_from_u64(0);
    let mut ls: Vec<f32> = (0..=200).map(|i| i as f32 * 0.1).collect();
    ls.extend((0..100).map(|_| rng.random::<f32>() * 5.0));
    let n = ls.len();
    let l = Tensor::from_vec(ls, (n, 1), &dev).unwrap();
    for seed in 0..8 {
        let vnet = VNet::new(100, &mut StdRng::seed_from_u64(seed), &dev).unwrap();
        let w = v1(&vnet.forward(&vnet.store().params(), &l).unwrap());
        assert_eq!(w.len(), n);
        assert!(
            w.iter().all(|&x| x > 0.0 && x < 1.0),
            "seed {seed}: VNet output outside (0, 1): {:?}",
            w.iter().find(|&&x| !(x > 0.0 && x < 1.0))
        );
        // Not a constant: the function depends on the loss.
        let (lo, hi) = w
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
        assert!(hi - lo > 1e-4, "seed {seed}: VNet output constant");
    }
    // A bad shape is an error, not a silent broadcast.
    let vnet = VNet::new(100, &mut StdRng::seed_from_u64(0), &dev).unwrap();
    let flat = Tensor::zeros(4, DType::F32, &dev).unwrap();
    assert!(vnet.forward(&vnet.store().params(), &flat).is_err());
}

#[test]
fn normalised_weights_are_hand_computed_values() {
    let v = Tensor::new(&[0.2f64, 0.3, 0.5, 1.0], &Device::Cpu).unwrap();
    // Sum: n·v/Σv with Σv = 2: [0.4, 0.6, 1.0, 2.0] (mean 1, so (1/n)Σ w ℓ = Σ v ℓ / Σ v).
    let s = v1(&normalise_vnet_weights(&v, Normalise::Sum).unwrap());
    for (a, b) in s.iter().zip([0.4, 0.6, 1.0, 2.0]) {
        assert!((a - b).abs() < 1e-12, "{s:?}");
    }
    let m = v1(&normalise_vnet_weights(&v, Normalise::Mean).unwrap());
    assert_eq!(m, vec![0.2, 0.3, 0.5, 1.0]);
    // Σv = 0: left unnormalised, as the authors' script.
    let z = Tensor::zeros(3, DType::F64, &Device::Cpu).unwrap();
    assert_eq!(
        v1(&normalise_vnet_weights(&z, Normalise::Sum).unwrap()),
        vec![0.0; 3]
    );
}

/// The real step's loss equals `Σ v_i ℓ_i / Σ v_j` (Sum) or `(1/n) Σ v_i ℓ_i` (Mean) with `v`
/// from the VNet on the detached losses, and the reported diagnostic weights sum to 1.
#[test]
fn mwn_rule_real_step_loss() {
    let dev = Device::Cpu;
    let mut rng = StdRng::seed_from_u64(4);
    let logits = randn(&mut rng, &[6, 4], 2.0).to_dtype(DType::F32).unwrap();
    let y = labels(&mut rng, 6, 4);
    for normalise in [Normalise::Sum, Normalise::Mean] {
        let vnet = Arc::new(VNet::new(100, &mut StdRng::seed_from_u64(1), &dev).unwrap());
        let settings = MwnSettings {
            hidden: 100,
            normalise,
            optim: VnetOptim::Adam {
                lr: 1e-3,
                weight_decay: 0.0,
            },
            meta_every: 1,
        };
        let mut rule = MwnRule::new(vnet.clone(), &settings).unwrap();
        let (l, diag) = rule.loss(&logits, &y).unwrap();
        let ell = v1(&loss::per_example_ce(&logits, &y).unwrap());
        let v = v1(&vnet_weights(
            &vnet,
            &vnet.store().params(),
            &loss::per_example_ce(&logits, &y).unwrap(),
            Normalise::Mean,
        )
        .unwrap());
        let sv: f64 = v.iter().sum();
        let num: f64 = v.iter().zip(&ell).map(|(a, b)| a * b).sum();
        let want = match normalise {
            Normalise::Sum => num / sv,
            Normalise::Mean => num / 6.0,
        };
        let got = v1(&l)[0];
        assert!(
            (got - want).abs() < 1e-5 * want.abs(),
            "{normalise:?}: {got} vs {want}"
        );
        let d = v1(&diag.unwrap());
        assert!((d.iter().sum::<f64>() - 1.0).abs() < 1e-5);
    }
}

/// Meta loss after a virtual step, computed with first-order autograd only: `ℓ` at `θ`
/// (detached), `v = V_φ(ℓ)` from explicit parameters, `w` normalised by hand, `θ' = θ − α ∇θ
/// (1/n) Σ w_i ℓ_i(θ)` with a detached gradient, then the mean CE of the meta batch at `θ'`.
#[allow(clippy::too_many_arguments)]
fn oracle_meta_loss(
    model: &Mlp,
    theta: &ParamSet,
    vnet: &VNet,
    phi: &ParamSet,
    (x, y): (&Tensor, &Tensor),
    (xm, ym): (&Tensor, &Tensor),
    lr: f64,
    normalise: Normalise,
) -> f64 {
    let z = model
        .forward(theta, x, &mut Ctx::train_no_rng(false))
        .unwrap();
    let ell = loss::per_example_ce(&z, y).unwrap().detach();
    let n = ell.dims1().unwrap();
    let v = v1(&vnet.forward(phi, &ell.unsqueeze(1).unwrap()).unwrap());
    let s: f64 = v.iter().sum();
    let w: Vec<f64> = match normalise {
        Normalise::Sum => v.iter().map(|x| n as f64 * x / s).collect(),
        Normalise::Mean => v,
    };
    let w = Tensor::from_vec(w, n, &Device::Cpu).unwrap();
    let mut vars = BTreeMap::new();
    let mut set = BTreeMap::new();
    for (k, t) in theta.iter() {
        let var = Var::from_tensor(&t.detach()).unwrap();
        set.insert(k.clone(), var.as_tensor().clone());
        vars.insert(k.clone(), var);
    }
    let p = ParamSet::new(set);
    let z = model.forward(&p, x, &mut Ctx::train_no_rng(false)).unwrap();
    let inner = ((loss::per_example_ce(&z, y).unwrap() * &w)
        .unwrap()
        .sum_all()
        .unwrap()
        / n as f64)
        .unwrap();
    let g = inner.backward().unwrap();
    let mut stepped = BTreeMap::new();
    for (k, var) in &vars {
        let gk = g.get(var.as_tensor()).unwrap().detach();
        stepped.insert(
            k.clone(),
            (var.as_tensor().detach() - (gk * lr).unwrap()).unwrap(),
        );
    }
    let zm = model
        .forward(&ParamSet::new(stepped), xm, &mut Ctx::train_no_rng(false))
        .unwrap();
    v1(&loss::cross_entropy(&zm, ym, Reduction::Mean).unwrap())[0]
}

#[test]
fn mwn_meta_gradient_matches_finite_differences() {
    let dev = Device::Cpu;
    let mut rng = StdRng::seed_from_u64(7);
    let model = Mlp::new(MlpConfig::new(&[5, 7, 3]), &mut rng, &dev).unwrap();
    let theta = model.store().params().to_dtype(DType::F64).unwrap();
    let x = randn(&mut rng, &[6, 5], 1.5);
    let y = labels(&mut rng, 6, 3);
    let xm = randn(&mut rng, &[4, 5], 1.5);
    let ym = labels(&mut rng, 4, 3);
    let lr = 0.5;
    // A small VNet with larger-than-default output weights, so the weights vary across the batch.
    let vnet = VNet::new(4, &mut rng, &dev).unwrap();
    let names: Vec<String> = vnet.store().params().names().cloned().collect();
    let mut phi_vars = Vec::new();
    for n in &names {
        let t = vnet
            .store()
            .params()
            .get(n)
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap();
        let t = if n.starts_with("linear2") {
            (t * 20.0).unwrap()
        } else {
            t
        };
        phi_vars.push(Var::from_tensor(&t).unwrap());
    }
    let phi = ParamSet::new(
        names
            .iter()
            .cloned()
            .zip(phi_vars.iter().map(|v| v.as_tensor().clone()))
            .collect(),
    );
    let leaves: Vec<&Tensor> = phi_vars.iter().map(|v| v.as_tensor()).collect();
    let shapes: Vec<Vec<usize>> = leaves.iter().map(|t| t.dims().to_vec()).collect();
    let phi0: Vec<f64> = leaves.iter().flat_map(|t| v1(t)).collect();
    let mut results = Vec::new();
    for normalise in [Normalise::Sum, Normalise::Mean] {
        let w = Weighting {
            vnet: &vnet,
            phi: &phi,
            leaves: &leaves,
            normalise,
        };
        let g = mwn_meta_gradient(&model, &theta, &w, (&x, &y), (&xm, &ym), lr, None).unwrap();
        let analytic: Vec<f64> = g.grads.iter().flat_map(v1).collect();
        let f = |flat: &[f64]| -> f64 {
            let mut off = 0;
            let mut set = BTreeMap::new();
            for (n, sh) in names.iter().zip(&shapes) {
                let k: usize = sh.iter().product();
                let t = Tensor::from_vec(flat[off..off + k].to_vec(), sh.as_slice(), &dev).unwrap();
                set.insert(n.clone(), t);
                off += k;
            }
            oracle_meta_loss(
                &model,
                &theta,
                &vnet,
                &ParamSet::new(set),
                (&x, &y),
                (&xm, &ym),
                lr,
                normalise,
            )
        };
        // The meta loss itself agrees with the oracle at φ.
        assert!(
            (g.meta_loss - f(&phi0)).abs() < 1e-10,
            "{normalise:?} meta loss"
        );
        let numeric: Vec<f64> = (0..phi0.len())
            .map(|i| {
                let mut p = phi0.clone();
                p[i] += H;
                let mut m = phi0.clone();
                m[i] -= H;
                (f(&p) - f(&m)) / (2.0 * H)
            })
            .collect();
        let scale = numeric.iter().fold(0f64, |m, x| m.max(x.abs()));
        assert!(scale > 1e-8, "{normalise:?}: FD gradient ~0, test vacuous");
        for (i, (a, n)) in analytic.iter().zip(&numeric).enumerate() {
            assert!(
                (a - n).abs() <= 1e-6 * scale + 1e-9,
                "{normalise:?} entry {i}: analytic {a} vs FD {n}\n{analytic:?}\n{numeric:?}"
            );
        }
        results.push(analytic);
    }
    // The normalisation matters: the two gradients differ.
    let diff: f64 = results[0]
        .iter()
        .zip(&results[1])
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(diff > 1e-6, "Sum and Mean gave the same meta-gradient");
}

/// A meta step moves every VNet parameter (and only on its schedule), and the rule's checkpoint
/// state (VNet + its optimiser) restores exactly into a fresh rule.
#[test]
fn mwn_rule_meta_step_and_state_round_trip() {
    use zoo::reweight::RuleStep;
    use zoo::runner::StepMonitor;
    let dev = Device::Cpu;
    let mut rng = StdRng::seed_from_u64(11);
    let model = Mlp::new(MlpConfig::new(&[5, 7, 3]), &mut rng, &dev).unwrap();
    let f32t = |t: Tensor| t.to_dtype(DType::F32).unwrap();
    let x = f32t(randn(&mut rng, &[8, 5], 1.5));
    let y = labels(&mut rng, 8, 3);
    let xm = f32t(randn(&mut rng, &[4, 5], 1.5));
    let ym = labels(&mut rng, 4, 3);
    let settings = MwnSettings {
        hidden: 16,
        normalise: Normalise::Sum,
        optim: VnetOptim::Adam {
            lr: 1e-2,
            weight_decay: 1e-4,
        },
        meta_every: 4,
    };
    let vnet = Arc::new(VNet::new(16, &mut StdRng::seed_from_u64(2), &dev).unwrap());
    let before: Vec<Vec<f64>> = vnet
        .store()
        .vars()
        .values()
        .map(|v| v1(v.as_tensor()))
        .collect();
    let mut rule = MwnRule::new(vnet.clone(), &settings).unwrap();
    let params = model.store().params();
    let monitor = StepMonitor::detached(0, 0);
    let mut draw = |_: &mut StdRng| Ok((xm.clone(), ym.clone()));
    for step in [1u64, 0] {
        let s = RuleStep {
            model: &model,
            params: &params,
            images: &x,
            labels: &y,
            lr: 0.5,
            step,
            rng: &mut rng,
            meta_batch: &mut draw,
            monitor: &monitor,
        };
        rule.prepare(s).unwrap();
        let now: Vec<Vec<f64>> = vnet
            .store()
            .vars()
            .values()
            .map(|v| v1(v.as_tensor()))
            .collect();
        if step == 1 {
            assert_eq!(now, before, "step 1 is not a meta step when meta_every = 4");
        } else {
            for (a, b) in now.iter().zip(&before) {
                assert_ne!(a, b, "a VNet parameter did not move in the meta step");
            }
        }
    }
    let m = rule.take_metrics(2);
    assert_eq!(m.get("meta_steps"), Some(1.0));
    assert!(m.get("meta_loss").unwrap().is_finite());
    let state = rule.state().unwrap();
    assert!(state.keys().any(|k| k.starts_with("vnet_optim.")));
    let fresh = Arc::new(VNet::new(16, &mut StdRng::seed_from_u64(99), &dev).unwrap());
    let mut restored = MwnRule::new(fresh.clone(), &settings).unwrap();
    restored.restore(&state).unwrap();
    let again = restored.state().unwrap();
    assert_eq!(state.len(), again.len());
    for (k, t) in &state {
        assert_eq!(v1(t), v1(&again[k]), "{k} differs after restore");
    }
    let mut bad = state.clone();
    bad.insert(
        "unknown".into(),
        Tensor::zeros(1, DType::F32, &dev).unwrap(),
    );
    assert!(restored.restore(&bad).is_err());
}
