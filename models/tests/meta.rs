//! The meta-gradient step against central finite differences in f64.
//!
//! Each oracle below recomputes the meta loss `L` from scratch with *first-order* autograd only
//! (fresh variables, one backward for the inner gradient, detached), so it shares nothing with the
//! double-backward mechanism under test. Tolerance: `|analytic − FD| ≤ 1e-6·max|FD| + 1e-9`
//! elementwise (central differences with step 1e-5; truncation ~1e-10, rounding ~1e-11).
//!
//! Every check runs on both backends (`ops::Backend::Fast` and `Candle`, the ops a GPU runs).
//!
//! Needs `CANDLE_GRAD_DO_NOT_DETACH=1` (set by `.cargo/config.toml` for `cargo test`).

use candle_core::{DType, Device, Result, Tensor, Var};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use zoo_models::loss::{self, Reduction};
use zoo_models::meta::{self, second_order_available};
use zoo_models::models::{LeNet, LeNetConfig, ResNetCifar, ResNetCifarConfig, VNet};
use zoo_models::ops::{with_backend, Backend};
use zoo_models::{ops, Classifier, Ctx, ParamSet, ParamStore};

const H: f64 = 1e-5;

fn randn(rng: &mut StdRng, shape: &[usize], scale: f64) -> Tensor {
    let n: usize = shape.iter().product();
    // Sum of uniforms: roughly normal, deterministic and dependency-free.
    let v: Vec<f64> = (0..n)
        .map(|_| (0..4).map(|_| rng.random::<f64>() - 0.5).sum::<f64>() * scale)
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn labels(rng: &mut StdRng, n: usize, c: u32) -> Tensor {
    let v: Vec<u32> = (0..n).map(|_| rng.random_range(0..c)).collect();
    Tensor::from_vec(v, n, &Device::Cpu).unwrap()
}

fn v1(t: &Tensor) -> Vec<f64> {
    t.flatten_all()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn s(t: &Tensor) -> f64 {
    t.to_dtype(DType::F64).unwrap().to_scalar().unwrap()
}

fn fd(f: &dyn Fn(&[f64]) -> f64, x: &[f64]) -> Vec<f64> {
    (0..x.len())
        .map(|i| {
            let mut p = x.to_vec();
            p[i] += H;
            let mut m = x.to_vec();
            m[i] -= H;
            (f(&p) - f(&m)) / (2.0 * H)
        })
        .collect()
}

/// Runs `f` with each backend's ops (the finite-difference checks hold on both: `Candle` is what
/// a GPU runs).
fn on_both_backends(f: impl Fn()) {
    for b in Backend::ALL {
        with_backend(b, &f);
    }
}

fn assert_matches_fd(analytic: &[f64], numeric: &[f64], what: &str) {
    let what = &format!("{what} [{} backend]", ops::backend());
    assert_eq!(analytic.len(), numeric.len(), "{what}");
    let scale = numeric.iter().fold(0f64, |m, x| m.max(x.abs()));
    assert!(
        scale > 1e-8,
        "{what}: finite-difference gradient is ~0, test is vacuous"
    );
    for (i, (a, n)) in analytic.iter().zip(numeric).enumerate() {
        assert!(
            (a - n).abs() <= 1e-6 * scale + 1e-9,
            "{what}: entry {i}: analytic {a} vs finite differences {n}\nanalytic {analytic:?}\nnumeric  {numeric:?}"
        );
    }
}

fn rel_diff(a: &[f64], b: &[f64]) -> f64 {
    let num: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).powi(2))
        .sum::<f64>()
        .sqrt();
    let den: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    num / den
}

// ---------------------------------------------------------------------------------------------
// Two tiny classifiers in f64, written against the public ops so the test does not depend on the
// zoo's model definitions.

/// A CPU store holding `vars` (drawn in order).
fn store_of<const N: usize>(vars: [(&str, Tensor); N]) -> ParamStore {
    let mut store = ParamStore::new(&Device::Cpu);
    for (name, t) in vars {
        store.add_var(name, t).unwrap();
    }
    store
}

/// 5-8-3 ReLU MLP.
struct TinyMlp {
    store: ParamStore,
}

impl TinyMlp {
    fn new(rng: &mut StdRng) -> Self {
        let store = store_of([
            ("fc1.weight", randn(rng, &[8, 5], 0.8)),
            ("fc1.bias", randn(rng, &[8], 0.3)),
            ("fc2.weight", randn(rng, &[3, 8], 0.8)),
            ("fc2.bias", randn(rng, &[3], 0.3)),
        ]);
        Self { store }
    }
}

impl Classifier for TinyMlp {
    fn store(&self) -> &ParamStore {
        &self.store
    }
    fn features(&self, p: &ParamSet, x: &Tensor, _ctx: &mut Ctx) -> Result<Tensor> {
        ops::linear(x, p.get("fc1.weight")?, Some(p.get("fc1.bias")?))?.relu()
    }
    fn head(&self) -> (&str, Option<&str>) {
        ("fc2.weight", Some("fc2.bias"))
    }
    fn num_classes(&self) -> usize {
        3
    }
    fn feature_dim(&self) -> usize {
        8
    }
}

/// conv3x3(3→4)+BN+ReLU, 2×2 max pool, conv3x3(4→4, stride 2)+BN+ReLU, global average pool,
/// linear(4→3). BatchNorm in training mode (batch statistics) as under the virtual step.
struct TinyConvBn {
    store: ParamStore,
}

impl TinyConvBn {
    fn new(rng: &mut StdRng) -> Self {
        let store = store_of([
            ("conv1.weight", randn(rng, &[4, 3, 3, 3], 0.5)),
            ("bn1.weight", (randn(rng, &[4], 0.2) + 1.0).unwrap()),
            ("bn1.bias", randn(rng, &[4], 0.2)),
            ("conv2.weight", randn(rng, &[4, 4, 3, 3], 0.5)),
            ("bn2.weight", (randn(rng, &[4], 0.2) + 1.0).unwrap()),
            ("bn2.bias", randn(rng, &[4], 0.2)),
            ("fc.weight", randn(rng, &[3, 4], 0.8)),
            ("fc.bias", randn(rng, &[3], 0.3)),
        ]);
        Self { store }
    }
}

impl Classifier for TinyConvBn {
    fn store(&self) -> &ParamStore {
        &self.store
    }
    fn features(&self, p: &ParamSet, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        assert!(
            ctx.train && !ctx.update_stats,
            "meta forwards must not update BN statistics"
        );
        let bn = |x: &Tensor, n: &str| -> Result<Tensor> {
            let w = p.get(&format!("{n}.weight"))?;
            let b = p.get(&format!("{n}.bias"))?;
            Ok(ops::batch_norm_train(x, w, b, 1e-5)?.0)
        };
        let h = ops::conv2d(x, p.get("conv1.weight")?, 1, 1, 1)?;
        let h = bn(&h, "bn1")?.relu()?;
        let h = ops::max_pool2d(&h, 2)?;
        let h = ops::conv2d(&h, p.get("conv2.weight")?, 2, 1, 1)?;
        let h = bn(&h, "bn2")?.relu()?;
        ops::global_avg_pool(&h)
    }
    fn head(&self) -> (&str, Option<&str>) {
        ("fc.weight", Some("fc.bias"))
    }
    fn num_classes(&self) -> usize {
        3
    }
    fn feature_dim(&self) -> usize {
        4
    }
}

/// The model's parameters in f64 (a differentiable copy when the store is f32, the variables
/// themselves when it is f64).
fn theta64(model: &dyn Classifier) -> ParamSet {
    model.store().params().to_dtype(DType::F64).unwrap()
}

fn meta_ctx() -> Ctx<'static> {
    Ctx::train_no_rng(false)
}

/// Detached values of `theta`, as fresh variables (for the first-order oracles).
fn fresh_vars(theta: &BTreeMap<String, Tensor>) -> (ParamSet, BTreeMap<String, Var>) {
    let vars: BTreeMap<String, Var> = theta
        .iter()
        .map(|(n, t)| (n.clone(), Var::from_tensor(&t.detach()).unwrap()))
        .collect();
    let p = vars
        .iter()
        .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
        .collect();
    (p, vars)
}

/// `θ − lr·∇θ loss(θ)`, values only (first-order autograd, detached).
fn sgd_values(
    theta: &BTreeMap<String, Tensor>,
    lr: f64,
    loss: &dyn Fn(&ParamSet) -> Tensor,
) -> BTreeMap<String, Tensor> {
    let (p, vars) = fresh_vars(theta);
    let g = loss(&p).backward().unwrap();
    vars.iter()
        .map(|(n, v)| {
            let gi = g
                .get(v.as_tensor())
                .expect("oracle: missing gradient")
                .detach();
            (
                n.clone(),
                (v.as_detached_tensor() - (gi * lr).unwrap()).unwrap(),
            )
        })
        .collect()
}

struct Problem {
    x: Tensor,
    y: Tensor,
    xm: Tensor,
    ym: Tensor,
    lr: f64,
}

impl Problem {
    /// Oracle: `L(θ − α ∇θ Σ w_i ℓ_i(θ)/n)` for fixed weight values `w`.
    fn meta_loss(&self, model: &dyn Classifier, w: &[f64]) -> f64 {
        let theta: BTreeMap<String, Tensor> = theta64(model).detach().into_map();
        let n = w.len() as f64;
        let wt = Tensor::new(w, &Device::Cpu).unwrap();
        let theta2 = sgd_values(&theta, self.lr, &|p| {
            let z = model.forward(p, &self.x, &mut meta_ctx()).unwrap();
            let l = loss::per_example_ce(&z, &self.y).unwrap();
            ((l * &wt).unwrap().sum_all().unwrap() / n).unwrap()
        });
        let z = model
            .forward(&ParamSet::new(theta2), &self.xm, &mut meta_ctx())
            .unwrap();
        s(&loss::cross_entropy(&z, &self.ym, Reduction::Mean).unwrap())
    }

    /// `dL/dε` at `ε = eps0` from the audited function.
    fn analytic(&self, model: &dyn Classifier, eps0: &[f64]) -> Vec<f64> {
        let eps = Var::from_vec(eps0.to_vec(), eps0.len(), &Device::Cpu).unwrap();
        let g = meta::classifier_meta_gradient(
            model,
            &theta64(model),
            (&self.x, &self.y),
            (&self.xm, &self.ym),
            |_| Ok(eps.as_tensor().clone()),
            &[eps.as_tensor()],
            self.lr,
            None,
        )
        .unwrap();
        v1(&g.grads[0])
    }
}

fn mlp_problem(rng: &mut StdRng) -> (TinyMlp, Problem) {
    let model = TinyMlp::new(rng);
    let p = Problem {
        x: randn(rng, &[6, 5], 1.5),
        y: labels(rng, 6, 3),
        xm: randn(rng, &[4, 5], 1.5),
        ym: labels(rng, 4, 3),
        lr: 0.5,
    };
    (model, p)
}

#[test]
fn second_order_self_test_passes() {
    assert!(
        second_order_available(),
        "d²(x⁴)/dx² at 1 is not 12: CANDLE_GRAD_DO_NOT_DETACH is not in effect"
    );
    meta::require_second_order().unwrap();
}

#[test]
fn l2rw_on_mlp_matches_finite_differences() {
    on_both_backends(|| {
        let mut rng = StdRng::seed_from_u64(1);
        let (model, p) = mlp_problem(&mut rng);
        // At ε = 0 (L2RW's point) and at generic weights, where θ' ≠ θ and curvature matters.
        let zeros = vec![0.0; 6];
        let generic: Vec<f64> = (0..6).map(|_| rng.random::<f64>()).collect();
        for eps0 in [zeros.clone(), generic] {
            let analytic = p.analytic(&model, &eps0);
            let numeric = fd(&|e| p.meta_loss(&model, e), &eps0);
            assert_matches_fd(&analytic, &numeric, "MLP dL/dε");
        }
        // l2rw_grad is the ε = 0 case, and its value is −(α/n)⟨∇L(θ), ∇ℓ_i(θ)⟩.
        let g = meta::l2rw_grad(
            &model,
            &model.store().params(),
            (&p.x, &p.y),
            (&p.xm, &p.ym),
            p.lr,
            None,
        )
        .unwrap();
        let via_l2rw = v1(&g.grads[0]);
        assert_matches_fd(
            &via_l2rw,
            &fd(&|e| p.meta_loss(&model, e), &zeros),
            "l2rw_grad",
        );
        let theta = model.store().params();
        let flat_grad = |loss: Tensor| -> Vec<f64> {
            let gs = loss.backward().unwrap();
            theta
                .iter()
                .flat_map(|(_, t)| v1(gs.get(t).unwrap()))
                .collect()
        };
        let zm = model.forward(&theta, &p.xm, &mut meta_ctx()).unwrap();
        let g_meta = flat_grad(loss::cross_entropy(&zm, &p.ym, Reduction::Mean).unwrap());
        for (i, &got) in via_l2rw.iter().enumerate() {
            let xi = p.x.narrow(0, i, 1).unwrap();
            let yi = p.y.narrow(0, i, 1).unwrap();
            let zi = model.forward(&theta, &xi, &mut meta_ctx()).unwrap();
            let gi = flat_grad(loss::cross_entropy(&zi, &yi, Reduction::Sum).unwrap());
            let dot: f64 = g_meta.iter().zip(&gi).map(|(a, b)| a * b).sum();
            let expected = -p.lr / 6.0 * dot;
            assert!(
                (got - expected).abs() < 1e-10 * (1.0 + expected.abs()),
                "example {i}: {got} vs inner-product formula {expected}"
            );
        }
        // Ren et al.'s weights: clipped at zero and normalised.
        let w = v1(&meta::l2rw_weights(&g.grads[0]).unwrap());
        let total: f64 = w.iter().sum();
        assert!(w.iter().all(|&x| x >= 0.0));
        assert!((total - 1.0).abs() < 1e-12 || total == 0.0);
        // Training losses and weights are reported.
        assert_eq!(g.train_losses.dims(), &[6]);
        assert_eq!(v1(&g.weights), vec![0.0; 6]);
    });
}

#[test]
fn conv_bn_pool_matches_finite_differences() {
    on_both_backends(|| {
        let mut rng = StdRng::seed_from_u64(2);
        let model = TinyConvBn::new(&mut rng);
        let p = Problem {
            x: randn(&mut rng, &[5, 3, 8, 8], 1.5),
            y: labels(&mut rng, 5, 3),
            xm: randn(&mut rng, &[4, 3, 8, 8], 1.5),
            ym: labels(&mut rng, 4, 3),
            lr: 0.5,
        };
        let eps0: Vec<f64> = (0..5).map(|_| rng.random::<f64>()).collect();
        let analytic = p.analytic(&model, &eps0);
        let numeric = fd(&|e| p.meta_loss(&model, e), &eps0);
        assert_matches_fd(&analytic, &numeric, "conv+BN+pool dL/dε");
    });
}

/// Library models (f32 stores, run in f64 through a differentiable copy of the parameters).
#[test]
fn library_models_match_finite_differences() {
    on_both_backends(|| {
        let mut rng = StdRng::seed_from_u64(8);
        // ResNet-8: option-A shortcuts, BatchNorm, global average pooling.
        let resnet =
            ResNetCifar::new(ResNetCifarConfig::new(8, 3), &mut rng, &Device::Cpu).unwrap();
        // Ren et al.'s LeNet: 3×3 stride-2 SAME max pooling.
        let lenet = LeNet::new(LeNetConfig::mnist(3), &mut rng, &Device::Cpu).unwrap();
        let cases: [(&dyn Classifier, [usize; 3], &str); 2] = [
            (&resnet, [3, 8, 8], "ResNet-8"),
            (&lenet, [1, 28, 28], "LeNet"),
        ];
        for (model, [c, h, w], name) in cases {
            let p = Problem {
                x: randn(&mut rng, &[4, c, h, w], 1.5),
                y: labels(&mut rng, 4, 3),
                xm: randn(&mut rng, &[4, c, h, w], 1.5),
                ym: labels(&mut rng, 4, 3),
                lr: 0.5,
            };
            let eps0: Vec<f64> = (0..4).map(|_| rng.random::<f64>()).collect();
            let analytic = p.analytic(model, &eps0);
            let numeric = fd(&|e| p.meta_loss(model, e), &eps0);
            assert_matches_fd(&analytic, &numeric, &format!("{name} dL/dε"));
        }
    });
}

/// `mwn_grad` with the library's VNet equals the finite-difference-checked generic path with
/// the same network written out by hand (f32 VNet, so f32 tolerance).
#[test]
fn mwn_grad_with_library_vnet() {
    on_both_backends(|| {
        let mut rng = StdRng::seed_from_u64(9);
        let (model, p) = mlp_problem(&mut rng);
        let vnet = VNet::new(16, &mut rng, &Device::Cpu).unwrap();
        let theta = model.store().params();
        let g = meta::mwn_grad(
            &model,
            &theta,
            &vnet,
            (&p.x, &p.y),
            (&p.xm, &p.ym),
            p.lr,
            None,
        )
        .unwrap();
        let phi = vnet.store().params().to_dtype(DType::F64).unwrap();
        let leaves: Vec<&Tensor> = vnet
            .store()
            .vars()
            .values()
            .map(|v| v.as_tensor())
            .collect();
        let reference = meta::classifier_meta_gradient(
            &model,
            &theta,
            (&p.x, &p.y),
            (&p.xm, &p.ym),
            |l| vnet_forward(&phi, l),
            &leaves,
            p.lr,
            None,
        )
        .unwrap();
        assert_eq!(g.grads.len(), 4);
        // The VNet's optimiser step from the meta-gradient.
        let gs = meta::leaf_grad_store(&leaves, &g.grads).unwrap();
        let mut opt = zoo_models::optim::Adam::new(0.0);
        zoo_models::optim::Optimizer::step(&mut opt, vnet.store(), &gs, 1e-3).unwrap();
        assert!(zoo_models::optim::Optimizer::last_skipped(&opt).is_empty());
        for (a, b) in g.grads.iter().zip(&reference.grads) {
            let (a, b) = (v1(a), v1(b));
            let scale = b.iter().fold(0f64, |m, x| m.max(x.abs()));
            assert!(scale > 1e-6);
            for (x, y) in a.iter().zip(&b) {
                assert!((x - y).abs() <= 1e-4 * scale, "{a:?} vs {b:?}");
            }
        }
    });
}

/// A 1-4-1 VNet `σ(W₂ relu(W₁ ℓ + b₁) + b₂)` from explicit parameter values.
fn vnet_forward(phi: &ParamSet, l: &Tensor) -> Result<Tensor> {
    let h = ops::linear(
        &l.unsqueeze(1)?,
        phi.get("linear1.weight")?,
        Some(phi.get("linear1.bias")?),
    )?
    .relu()?;
    candle_nn::ops::sigmoid(&ops::linear(
        &h,
        phi.get("linear2.weight")?,
        Some(phi.get("linear2.bias")?),
    )?)?
    .squeeze(1)
}

/// The finite-difference oracle of a VNet's meta-gradient: weights `w = weights(φ, ℓ(θ))` with
/// `ℓ` computed once at `theta` (data to the VNet), then the first-order oracle of the virtual
/// step, differentiated numerically in φ (the `leaves`, named `names`).
fn vnet_fd_oracle(
    model: &dyn Classifier,
    theta: &ParamSet,
    p: &Problem,
    names: &[String],
    leaves: &[&Tensor],
    weights: impl Fn(&ParamSet, &Tensor) -> Result<Tensor>,
) -> Vec<f64> {
    let z = model.forward(theta, &p.x, &mut meta_ctx()).unwrap();
    let ell = loss::per_example_ce(&z, &p.y).unwrap().detach();
    let shapes: Vec<Vec<usize>> = leaves.iter().map(|t| t.dims().to_vec()).collect();
    let phi0: Vec<f64> = leaves.iter().flat_map(|t| v1(t)).collect();
    let f = |flat: &[f64]| -> f64 {
        let mut off = 0;
        let mut set = BTreeMap::new();
        for (n, sh) in names.iter().zip(&shapes) {
            let k: usize = sh.iter().product();
            let t =
                Tensor::from_vec(flat[off..off + k].to_vec(), sh.as_slice(), &Device::Cpu).unwrap();
            set.insert(n.clone(), t);
            off += k;
        }
        let w = v1(&weights(&ParamSet::new(set), &ell).unwrap());
        p.meta_loss(model, &w)
    };
    fd(&f, &phi0)
}

#[test]
fn vnet_meta_gradient_matches_finite_differences() {
    on_both_backends(|| {
        let mut rng = StdRng::seed_from_u64(3);
        let (model, p) = mlp_problem(&mut rng);
        let vstore = store_of([
            ("linear1.weight", randn(&mut rng, &[4, 1], 1.5)),
            ("linear1.bias", randn(&mut rng, &[4], 0.5)),
            ("linear2.weight", randn(&mut rng, &[1, 4], 1.5)),
            ("linear2.bias", randn(&mut rng, &[1], 0.5)),
        ]);
        let phi = vstore.params();
        let names: Vec<String> = phi.names().cloned().collect();
        let leaves: Vec<&Tensor> = names.iter().map(|n| phi.get(n).unwrap()).collect();
        let g = meta::classifier_meta_gradient(
            &model,
            &model.store().params(),
            (&p.x, &p.y),
            (&p.xm, &p.ym),
            |l| vnet_forward(&phi, l),
            &leaves,
            p.lr,
            None,
        )
        .unwrap();
        let analytic: Vec<f64> = g.grads.iter().flat_map(v1).collect();

        let theta = model.store().params();
        let numeric = vnet_fd_oracle(&model, &theta, &p, &names, &leaves, vnet_forward);
        assert_matches_fd(&analytic, &numeric, "VNet dL/dφ");
        assert!(v1(&g.weights).iter().all(|&w| w > 0.0 && w < 1.0));
    });
}

/// Two virtual steps on two different batches, meta loss on a third; gradient w.r.t. θ.
struct Unrolled {
    batches: Vec<(Tensor, Tensor)>,
    meta: (Tensor, Tensor),
    lr: f64,
}

impl Unrolled {
    fn run(&self, model: &dyn Classifier, first_order: bool) -> (Vec<f64>, Vec<String>) {
        let theta = model.store().params();
        let g = meta::unrolled_meta_gradient(
            &theta,
            self.batches.len(),
            self.lr,
            first_order,
            |j, q| {
                let (x, y) = &self.batches[j];
                let z = model.forward(q, x, &mut meta_ctx())?;
                loss::cross_entropy(&z, y, Reduction::Mean)
            },
            |q| {
                let z = model.forward(q, &self.meta.0, &mut meta_ctx())?;
                loss::cross_entropy(&z, &self.meta.1, Reduction::Mean)
            },
            &[],
        )
        .unwrap();
        assert_eq!(g.inner_losses.len(), self.batches.len());
        let names: Vec<String> = g.grads.keys().cloned().collect();
        (g.grads.values().flat_map(v1).collect(), names)
    }

    /// Oracle: `L(θ'_k(θ))` with each step's gradient from first-order autograd.
    fn value(&self, model: &dyn Classifier, theta: BTreeMap<String, Tensor>) -> f64 {
        let mut th = theta;
        for (x, y) in &self.batches {
            th = sgd_values(&th, self.lr, &|p| {
                let z = model.forward(p, x, &mut meta_ctx()).unwrap();
                loss::cross_entropy(&z, y, Reduction::Mean).unwrap()
            });
        }
        let z = model
            .forward(&ParamSet::new(th), &self.meta.0, &mut meta_ctx())
            .unwrap();
        s(&loss::cross_entropy(&z, &self.meta.1, Reduction::Mean).unwrap())
    }
}

#[test]
fn unrolled_two_steps_matches_finite_differences_and_differs_from_first_order() {
    on_both_backends(|| {
        let mut rng = StdRng::seed_from_u64(4);
        let model = TinyMlp::new(&mut rng);
        let u = Unrolled {
            batches: (0..2)
                .map(|_| (randn(&mut rng, &[6, 5], 1.5), labels(&mut rng, 6, 3)))
                .collect(),
            meta: (randn(&mut rng, &[4, 5], 1.5), labels(&mut rng, 4, 3)),
            lr: 0.5,
        };
        let (exact, names) = u.run(&model, false);
        let theta0: BTreeMap<String, Tensor> = model.store().params().detach().into_map();
        assert_eq!(names, theta0.keys().cloned().collect::<Vec<_>>());
        let shapes: Vec<Vec<usize>> = theta0.values().map(|t| t.dims().to_vec()).collect();
        let flat0: Vec<f64> = theta0.values().flat_map(v1).collect();
        let f = |flat: &[f64]| -> f64 {
            let mut off = 0;
            let mut th = BTreeMap::new();
            for (n, sh) in names.iter().zip(&shapes) {
                let k: usize = sh.iter().product();
                let t = Tensor::from_vec(flat[off..off + k].to_vec(), sh.as_slice(), &Device::Cpu)
                    .unwrap();
                th.insert(n.clone(), t);
                off += k;
            }
            u.value(&model, th)
        };
        let numeric = fd(&f, &flat0);
        assert_matches_fd(&exact, &numeric, "unrolled k=2 dL/dθ");

        // The detachment guard: the first-order result (what silently detached gradients produce)
        // must be far from the exact one, so the check above would fail under detachment.
        let (first, _) = u.run(&model, true);
        let d = rel_diff(&first, &exact);
        assert!(
            d > 0.05,
            "first-order and exact meta-gradients differ by only {d:.3e}"
        );
        // And the first-order version is ∇L(θ'_k) (identity Jacobians).
        let th2 = {
            let mut th = theta0.clone();
            for (x, y) in &u.batches {
                th = sgd_values(&th, u.lr, &|p| {
                    let z = model.forward(p, x, &mut meta_ctx()).unwrap();
                    loss::cross_entropy(&z, y, Reduction::Mean).unwrap()
                });
            }
            th
        };
        let (pv, vars) = fresh_vars(&th2);
        let z = model.forward(&pv, &u.meta.0, &mut meta_ctx()).unwrap();
        let gs = loss::cross_entropy(&z, &u.meta.1, Reduction::Mean)
            .unwrap()
            .backward()
            .unwrap();
        let direct: Vec<f64> = vars
            .values()
            .flat_map(|v| v1(gs.get(v.as_tensor()).unwrap()))
            .collect();
        for (a, b) in first.iter().zip(&direct) {
            assert!((a - b).abs() < 1e-12, "first-order {a} vs ∇L(θ'_k) {b}");
        }
    });
}

/// Meta-Weight-Net's meta-gradient with respect to the VNet's parameters, through ResNet-8 with
/// batch norm (batch statistics in the virtual step), against central differences over every
/// parameter of the library's VNet (run in f64).
#[test]
fn mwn_vnet_through_resnet8_with_batch_norm_matches_finite_differences() {
    on_both_backends(|| {
        let mut rng = StdRng::seed_from_u64(22);
        let model = ResNetCifar::new(ResNetCifarConfig::new(8, 3), &mut rng, &Device::Cpu).unwrap();
        let p = Problem {
            x: randn(&mut rng, &[4, 3, 8, 8], 1.5),
            y: labels(&mut rng, 4, 3),
            xm: randn(&mut rng, &[4, 3, 8, 8], 1.5),
            ym: labels(&mut rng, 4, 3),
            lr: 0.5,
        };
        let vnet = VNet::new(4, &mut rng, &Device::Cpu).unwrap();
        let phi0_map = vnet
            .store()
            .params()
            .to_dtype(DType::F64)
            .unwrap()
            .detach()
            .into_map();
        let (phi, _vars) = fresh_vars(&phi0_map);
        let names: Vec<String> = phi.names().cloned().collect();
        let leaves: Vec<&Tensor> = names.iter().map(|n| phi.get(n).unwrap()).collect();
        let weights = |phi: &ParamSet, l: &Tensor| -> Result<Tensor> {
            vnet.forward(phi, &l.unsqueeze(1)?)?.squeeze(1)
        };
        let g = meta::classifier_meta_gradient(
            &model,
            &theta64(&model),
            (&p.x, &p.y),
            (&p.xm, &p.ym),
            |l| weights(&phi, l),
            &leaves,
            p.lr,
            None,
        )
        .unwrap();
        let analytic: Vec<f64> = g.grads.iter().flat_map(v1).collect();
        let numeric = vnet_fd_oracle(&model, &theta64(&model), &p, &names, &leaves, weights);
        assert_matches_fd(&analytic, &numeric, "MWN VNet through ResNet-8 dL/dφ");
    });
}

/// MLNT's unrolled meta-gradient (two virtual steps, then the meta loss) through ResNet-8 with
/// batch norm, against central differences along random unit directions of θ (θ has ~70k
/// entries), and far from the first-order approximation.
#[test]
fn unrolled_steps_through_resnet8_with_batch_norm_match_finite_differences() {
    on_both_backends(|| {
        let mut rng = StdRng::seed_from_u64(21);
        let model = ResNetCifar::new(ResNetCifarConfig::new(8, 3), &mut rng, &Device::Cpu).unwrap();
        let u = Unrolled {
            batches: (0..2)
                .map(|_| (randn(&mut rng, &[4, 3, 8, 8], 1.5), labels(&mut rng, 4, 3)))
                .collect(),
            meta: (randn(&mut rng, &[4, 3, 8, 8], 1.5), labels(&mut rng, 4, 3)),
            lr: 0.5,
        };
        let theta = theta64(&model);
        let grads = |first_order: bool| {
            meta::unrolled_meta_gradient(
                &theta,
                u.batches.len(),
                u.lr,
                first_order,
                |j, q| {
                    let (x, y) = &u.batches[j];
                    loss::cross_entropy(&model.forward(q, x, &mut meta_ctx())?, y, Reduction::Mean)
                },
                |q| {
                    let z = model.forward(q, &u.meta.0, &mut meta_ctx())?;
                    loss::cross_entropy(&z, &u.meta.1, Reduction::Mean)
                },
                &[],
            )
            .unwrap()
            .grads
        };
        let (exact, first) = (grads(false), grads(true));
        let theta0: BTreeMap<String, Tensor> = theta.detach().into_map();
        let (mut along_exact, mut along_first, mut numeric) = (vec![], vec![], vec![]);
        for _ in 0..3 {
            let mut dir: BTreeMap<String, Tensor> = theta0
                .iter()
                .map(|(n, t)| (n.clone(), randn(&mut rng, t.dims(), 1.0)))
                .collect();
            let norm: f64 = dir.values().flat_map(v1).map(|x| x * x).sum::<f64>().sqrt();
            for t in dir.values_mut() {
                *t = (&*t / norm).unwrap();
            }
            let dot = |g: &BTreeMap<String, Tensor>| -> f64 {
                g.iter()
                    .map(|(n, gt)| {
                        v1(gt)
                            .iter()
                            .zip(v1(&dir[n]))
                            .map(|(a, b)| a * b)
                            .sum::<f64>()
                    })
                    .sum()
            };
            along_exact.push(dot(&exact));
            along_first.push(dot(&first));
            let at = |h: f64| -> f64 {
                let th = theta0
                    .iter()
                    .map(|(n, t)| (n.clone(), (t + (&dir[n] * h).unwrap()).unwrap()))
                    .collect();
                u.value(&model, th)
            };
            numeric.push((at(H) - at(-H)) / (2.0 * H));
        }
        assert_matches_fd(
            &along_exact,
            &numeric,
            "ResNet-8 unrolled k=2, directional dL/dθ",
        );
        let d = rel_diff(&along_first, &along_exact);
        assert!(
            d > 0.01,
            "first-order and exact differ by only {d:.3e} along the directions"
        );
    });
}

#[test]
fn one_step_meta_gradient_needs_second_order_terms() {
    // dL/dε exists only through ∇θℓ: with detached inner gradients it would be missing (candle
    // returns no gradient at all). Here it must be present and non-zero for every example.
    let mut rng = StdRng::seed_from_u64(5);
    let (model, p) = mlp_problem(&mut rng);
    let g = p.analytic(&model, &[0.0; 6]);
    assert!(g.iter().all(|x| x.abs() > 1e-8), "{g:?}");
}

#[test]
fn errors_are_clear() {
    let mut rng = StdRng::seed_from_u64(6);
    let (model, p) = mlp_problem(&mut rng);
    // A leaf the weights do not depend on.
    let unrelated = Var::zeros(6, DType::F64, &Device::Cpu).unwrap();
    let e = meta::classifier_meta_gradient(
        &model,
        &model.store().params(),
        (&p.x, &p.y),
        (&p.xm, &p.ym),
        |_| Tensor::ones(6, DType::F64, &Device::Cpu),
        &[unrelated.as_tensor()],
        p.lr,
        None,
    )
    .unwrap_err();
    assert!(e.to_string().contains("no gradient"), "{e}");
    // Weights of the wrong shape.
    let e = meta::classifier_meta_gradient(
        &model,
        &model.store().params(),
        (&p.x, &p.y),
        (&p.xm, &p.ym),
        |_| Tensor::ones(5, DType::F64, &Device::Cpu),
        &[],
        p.lr,
        None,
    )
    .unwrap_err();
    assert!(e.to_string().contains("weights must have shape"), "{e}");
    // A parameter as a leaf: the weights-only inner pass would miss its Hessian terms.
    let theta = model.store().params();
    let (name, w) = theta.iter().next().unwrap();
    let e = meta::classifier_meta_gradient(
        &model,
        &theta,
        (&p.x, &p.y),
        (&p.xm, &p.ym),
        |_| Tensor::ones(6, DType::F64, &Device::Cpu),
        &[w],
        p.lr,
        None,
    )
    .unwrap_err();
    assert!(e.to_string().contains(name.as_str()), "{e}");
}

#[test]
fn detached_backward_matches_backward() {
    // `backprop::backward` (first-order passes, on detaching threads when they run) must give the
    // same gradients as `Tensor::backward`, and they must carry no graph.
    let mut rng = StdRng::seed_from_u64(8);
    let (model, p) = mlp_problem(&mut rng);
    let theta = model.store().params();
    let z = model.forward(&theta, &p.x, &mut meta_ctx()).unwrap();
    let l = loss::cross_entropy(&z, &p.y, Reduction::Mean).unwrap();
    let a = l.backward().unwrap();
    let b = zoo_models::backprop::backward(&l).unwrap();
    for (name, t) in theta.iter() {
        let (ga, gb) = (a.get(t).unwrap(), b.get(t).unwrap());
        assert_eq!(v1(ga), v1(gb), "{name}");
    }
}

#[test]
fn handed_over_parameter_gradients_add_up() {
    // In `backprop::backward` the ops hand their parameters' gradients over directly instead of
    // through candle's zeros-then-add accumulation. A weight used twice by the zoo's ops and once
    // by a candle op, a conv weight and bias, a bias and batch-norm parameters must get the sums
    // `Tensor::backward` gives, and a parameter of a computed (non-variable) weight must not be
    // handed over.
    let dev = Device::Cpu;
    let mut rng = StdRng::seed_from_u64(9);
    let mut randn = |shape: &[usize]| {
        let n = shape.iter().product::<usize>();
        let v: Vec<f64> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
        Var::from_tensor(&Tensor::from_vec(v, shape, &dev).unwrap()).unwrap()
    };
    let (x, w, b) = (randn(&[4, 3, 6, 6]), randn(&[5, 3, 3, 3]), randn(&[5]));
    let (gamma, beta, lw, lb) = (randn(&[5]), randn(&[5]), randn(&[7, 20]), randn(&[7]));
    let loss = || -> Result<Tensor> {
        let y = ops::conv2d_bias(x.as_tensor(), w.as_tensor(), b.as_tensor(), 2, 1, 1)?;
        let (y, _, _) = ops::batch_norm_train(&y, gamma.as_tensor(), beta.as_tensor(), 1e-5)?;
        let h = ops::relu(&y)?.flatten_from(1)?.narrow(1, 0, 20)?;
        let z1 = ops::linear(&h, lw.as_tensor(), Some(lb.as_tensor()))?;
        let h2 = h.sqr()?;
        let z2 = ops::linear(&h2, lw.as_tensor(), None)?;
        // A computed weight: its gradient flows back to `lw` through candle's graph.
        let z3 = ops::linear(&h, &(lw.as_tensor() * 0.5)?, None)?;
        let reg = lw.as_tensor().sqr()?.sum_all()?;
        (z1.sqr()?.sum_all()? + z2.sum_all()? + z3.tanh()?.sum_all()? + reg)? * 0.1
    };
    let l = loss().unwrap();
    let a = l.backward().unwrap();
    let c = zoo_models::backprop::backward(&l).unwrap();
    for (name, v) in [
        ("x", &x),
        ("w", &w),
        ("b", &b),
        ("gamma", &gamma),
        ("beta", &beta),
    ]
    .into_iter()
    .chain([("lw", &lw), ("lb", &lb)])
    {
        let (ga, gc) = (
            v1(a.get(v.as_tensor()).unwrap()),
            v1(c.get(v.as_tensor()).unwrap()),
        );
        let scale = ga.iter().fold(1e-300f64, |m, g| m.max(g.abs()));
        let err = ga
            .iter()
            .zip(&gc)
            .fold(0f64, |m, (p, q)| m.max((p - q).abs()))
            / scale;
        assert!(err < 1e-12, "{name}: relative difference {err:e}");
    }
}

#[test]
fn frozen_parameters_pass_through_and_to_grad_store_feeds_optimisers() {
    let mut rng = StdRng::seed_from_u64(7);
    let (model, p) = mlp_problem(&mut rng);
    model.store().set_trainable("fc1.weight", false).unwrap();
    let theta = model.store().params();
    let step = meta::virtual_step(&theta, 0.1, false, |q| {
        let z = model.forward(q, &p.x, &mut meta_ctx())?;
        loss::cross_entropy(&z, &p.y, Reduction::Mean)
    })
    .unwrap();
    assert!(step.no_grad.is_empty());
    let before = v1(theta.get("fc1.weight").unwrap());
    assert_eq!(v1(step.params.get("fc1.weight").unwrap()), before);
    assert_ne!(
        v1(step.params.get("fc2.weight").unwrap()),
        v1(theta.get("fc2.weight").unwrap())
    );

    let u = meta::unrolled_meta_gradient(
        &theta,
        1,
        0.1,
        false,
        |_, q| {
            let z = model.forward(q, &p.x, &mut meta_ctx())?;
            loss::cross_entropy(&z, &p.y, Reduction::Mean)
        },
        |q| {
            let z = model.forward(q, &p.xm, &mut meta_ctx())?;
            loss::cross_entropy(&z, &p.ym, Reduction::Mean)
        },
        &[],
    )
    .unwrap();
    assert!(!u.grads.contains_key("fc1.weight"));
    let gs = meta::to_grad_store(model.store(), &u.grads).unwrap();
    use zoo_models::optim::{Optimizer, Sgd};
    let mut opt = Sgd::new(0.0, false, 0.0).unwrap();
    opt.step(model.store(), &gs, 0.1).unwrap();
    assert!(opt.last_skipped().is_empty());
}

/// `l2rw_grad_reusing` takes the real step from the meta-step's inner forward: the same
/// meta-gradient, the same logits, the same real-step gradients and the same BatchNorm running
/// statistics as `l2rw_grad` followed by a fresh real forward (ResNet-8, f32).
#[test]
fn l2rw_reusing_the_inner_forward_matches_a_fresh_real_step() -> Result<()> {
    let dev = Device::Cpu;
    let make = || {
        ResNetCifar::new(
            ResNetCifarConfig::new(8, 3),
            &mut StdRng::seed_from_u64(5),
            &dev,
        )
    };
    let (a, b) = (make()?, make()?);
    let mut rng = StdRng::seed_from_u64(9);
    let x = randn(&mut rng, &[6, 3, 8, 8], 1.0).to_dtype(DType::F32)?;
    let y = labels(&mut rng, 6, 3);
    let xm = randn(&mut rng, &[4, 3, 8, 8], 1.0).to_dtype(DType::F32)?;
    let ym = labels(&mut rng, 4, 3);

    let ta = a.store().params();
    let ga = meta::l2rw_grad(&a, &ta, (&x, &y), (&xm, &ym), 0.1, None)?;
    let wa = meta::l2rw_weights(&ga.grads[0])?;
    let za = a.forward(&ta, &x, &mut Ctx::train_no_rng(true))?;
    let grads_a = loss::weighted_ce(&za, &y, &wa, Reduction::Sum)?.backward()?;

    let tb = b.store().params();
    let (gb, inner) = meta::l2rw_grad_reusing(&b, &tb, (&x, &y), (&xm, &ym), 0.1, None)?;
    let wb = meta::l2rw_weights(&gb.grads[0])?;
    let lb = loss::weighted_ce(inner.logits(), &y, &wb, Reduction::Sum)?;
    let grads_b = inner.grads(b.store(), &lb)?;

    let close = |what: &str, p: &Tensor, q: &Tensor| {
        let (p, q) = (v1(p), v1(q));
        assert_eq!(p.len(), q.len(), "{what}: lengths");
        let scale = p.iter().fold(1e-3f64, |m, v| m.max(v.abs()));
        for (i, (u, v)) in p.iter().zip(&q).enumerate() {
            assert!((u - v).abs() <= 1e-5 * scale, "{what}[{i}]: {u} vs {v}");
        }
    };
    close("dL/dε", &ga.grads[0], &gb.grads[0]);
    close("logits", &za, inner.logits());
    let mut compared = 0;
    for (name, va) in a.store().vars() {
        let vb = &b.store().vars()[name];
        let (ga, gb) = (grads_a.get(va.as_tensor()), grads_b.get(vb.as_tensor()));
        let (ga, gb) = (
            ga.expect(name),
            gb.unwrap_or_else(|| panic!("{name}: no gradient")),
        );
        close(name, ga, gb);
        compared += 1;
    }
    assert!(compared > 10, "only {compared} variables compared");
    // Running statistics were updated once on both paths (and are not the initial zeros).
    let (pa, pb) = (a.store().buffers(), b.store().buffers());
    let mut stats = 0;
    for (name, t) in pa.iter().filter(|(n, _)| n.ends_with("running_mean")) {
        close(name, t, &pb[name]);
        assert!(v1(t).iter().any(|v| v.abs() > 1e-6), "{name} not updated");
        stats += 1;
    }
    assert!(stats > 3, "only {stats} running means compared");
    Ok(())
}
