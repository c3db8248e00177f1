//! MLNT's pieces — neighbour label transfer, the EMA teacher, the consistency loss and its
//! unrolled meta-gradient — and [`MlntRule`], the [`StepRule`] that runs them inside the
//! reweighting core's [`ReweightTask`](crate::reweight::ReweightTask) training loop (same data
//! stream, augmentation, schedule, evaluation and checkpoints as the CE baseline and as `mwn`).

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{bail, ensure, Context, Result};
use candle_core::{DType, Tensor};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;
use zoo_models::loss::{self, Reduction};
use zoo_models::meta::{to_grad_store, unrolled_meta_gradient, InnerForward};
use zoo_models::optim::{Optimizer, Sgd};
use zoo_models::{Classifier, Ctx, ParamSet, ParamStore};

use super::config::{Features, MlntSettings, Update};
use crate::reweight::{check_meta_step, role_rng, RuleStep, StepRule};
use crate::runner::Metrics;

/// The `k` nearest other rows of each row of `feats` (`n × d`, row-major) in squared Euclidean
/// distance, nearest first (ties by index); `k` is capped at `n − 1`. A row is never its own
/// neighbour (the authors' script takes the `k + 1` nearest and skips the first, normally the row
/// itself).
pub fn nearest_neighbours(feats: &[f32], n: usize, k: usize) -> Result<Vec<Vec<usize>>> {
    ensure!(n >= 2, "the neighbour search needs at least two rows");
    ensure!(
        feats.len().is_multiple_of(n),
        "{} features do not split into {n} rows",
        feats.len()
    );
    let d = feats.len() / n;
    let k = k.min(n - 1);
    let row = |i: usize| &feats[i * d..(i + 1) * d];
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let a = row(i);
        let mut dist: Vec<(f32, usize)> = (0..n)
            .filter(|&j| j != i)
            .map(|j| {
                let s: f32 = a.iter().zip(row(j)).map(|(x, y)| (x - y) * (x - y)).sum();
                (s, j)
            })
            .collect();
        dist.sort_by(|p, q| p.0.total_cmp(&q.0).then(p.1.cmp(&q.1)));
        out.push(dist.into_iter().take(k).map(|(_, j)| j).collect());
    }
    Ok(out)
}

/// One synthetic label set ([`neighbour_label_transfer`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    /// The synthetic labels, `(n,)`.
    pub labels: Vec<u32>,
    /// The rows resampled (exactly `⌊ρ·n⌋`, distinct, in draw order).
    pub selected: Vec<usize>,
}

/// Random neighbour label transfer (Li et al. 2019, §4.1; the authors' `main.py`): a random
/// `⌊ρ·n⌋` of the rows (`int(n·ρ)` in the script) each take the **given** label of one of their
/// `k` nearest neighbours (from [`nearest_neighbours`]), drawn uniformly. The other rows keep
/// their labels. Every new label is therefore one already present in the batch; a selected row's
/// label changes only when the drawn neighbour's label differs from its own, so the number of
/// labels that change is at most `⌊ρ·n⌋` (exactly that when every neighbour of every row carries
/// another label).
pub fn neighbour_label_transfer(
    labels: &[u32],
    neighbours: &[Vec<usize>],
    rho: f64,
    rng: &mut StdRng,
) -> Result<Transfer> {
    let n = labels.len();
    ensure!(
        neighbours.len() == n,
        "{} neighbour lists for {n} labels",
        neighbours.len()
    );
    ensure!(
        rho.is_finite() && (0.0..=1.0).contains(&rho),
        "ρ must lie in [0, 1], got {rho}"
    );
    let count = ((n as f64) * rho).floor() as usize;
    let mut perm: Vec<usize> = (0..n).collect();
    perm.shuffle(rng);
    let selected = perm[..count].to_vec();
    let mut out = labels.to_vec();
    for &i in &selected {
        let nb = &neighbours[i];
        ensure!(!nb.is_empty(), "row {i} has no neighbours");
        let j = nb[rng.random_range(0..nb.len())];
        out[i] = labels[j];
    }
    Ok(Transfer {
        labels: out,
        selected,
    })
}

/// The teacher update `θ̃ ← ε·θ̃ + (1 − ε)·θ` for every variable of `teacher` from the same-named
/// variable of `student` (the authors' `param_tch.data.mul_(eps).add_((1-eps), param.data)`), and
/// the same average of the BatchNorm running statistics (buffers; a deviation: the authors'
/// teacher gets its running statistics from its own training-mode forwards).
pub fn ema_update(teacher: &ParamStore, student: &ParamStore, eps: f64) -> Result<()> {
    ensure!((0.0..=1.0).contains(&eps), "EMA factor must lie in [0, 1]");
    for (name, tv) in teacher.vars() {
        let sv = student.var(name)?;
        let new = ((tv.as_tensor() * eps)? + (sv.as_tensor() * (1.0 - eps))?)?.detach();
        tv.set(&new)?;
    }
    let sb = student.buffers();
    for (name, tb) in teacher.buffers() {
        let s = sb
            .get(&name)
            .with_context(|| format!("student has no buffer {name}"))?;
        if !tb.dtype().is_float() {
            continue;
        }
        let new = ((&tb * eps)? + (s * (1.0 - eps))?)?.detach();
        teacher.set_buffer(&name, &new)?;
    }
    Ok(())
}

/// Copies every variable and buffer of `student` into `teacher` (the teacher's initialisation at
/// `start_iter`, as the authors' `init` branch).
pub fn copy_weights(teacher: &ParamStore, student: &ParamStore) -> Result<()> {
    ema_update(teacher, student, 0.0)
}

/// The consistency loss `KL(p_teacher ‖ softmax(logits))` with PyTorch `nn.KLDivLoss()`'s default
/// reduction, the mean over all `n·C` elements of `p (log p − log q)` (`p log p = 0` where
/// `p = 0`). `teacher_probs` is `(n, C)`, detached.
pub fn consistency_kl(student_logits: &Tensor, teacher_probs: &Tensor) -> Result<Tensor> {
    ensure!(
        student_logits.dims() == teacher_probs.dims() && student_logits.rank() == 2,
        "logits {:?} and teacher probabilities {:?} must be the same (n, C)",
        student_logits.dims(),
        teacher_probs.dims()
    );
    let p = teacher_probs.to_dtype(student_logits.dtype())?.detach();
    let log_p = p.clamp(1e-30, 1.0)?.log()?;
    let log_q = candle_nn::ops::log_softmax(student_logits, candle_core::D::Minus1)?;
    Ok((p * (log_p - log_q)?)?.mean_all()?)
}

/// The result of [`mlnt_meta_gradient`].
#[derive(Debug, Clone)]
pub struct MlntGrad {
    /// `dL_meta/dθ`, `L_meta = (1/M) Σ_m KL(teacher ‖ student(θ'_m))`, by parameter name.
    pub grads: BTreeMap<String, Tensor>,
    /// `L_meta` (before the weight α).
    pub meta_loss: f64,
    /// Mean CE of the fast steps on the synthetic labels.
    pub fast_loss: f64,
}

/// The fast (virtual) steps of one synthetic label set.
#[derive(Debug, Clone, Copy)]
pub struct FastSteps {
    /// Step size α.
    pub lr: f64,
    /// Number of steps.
    pub steps: usize,
    /// Treat `dθ'/dθ` as the identity (first-order meta-gradient).
    pub first_order: bool,
}

/// MLNT's meta-gradient (Li et al. 2019, Alg. 1): for each synthetic label set `Ŷ_m`,
/// `fast_steps` virtual SGD steps `θ' ← θ' − α ∇ CE(f(x; θ'), Ŷ_m)` from `θ`, the consistency
/// loss [`consistency_kl`] of `f(x; θ'_m)` to the teacher, and the gradient of the mean over `m`
/// w.r.t. `θ` through the fast steps: the core's [`unrolled_meta_gradient`], exact second order
/// unless `first_order`. Forwards use batch statistics without touching running statistics.
pub fn mlnt_meta_gradient(
    model: &dyn Classifier,
    theta: &ParamSet,
    x: &Tensor,
    (synthetic, teacher_probs): (&[Tensor], &Tensor),
    fast: FastSteps,
) -> Result<MlntGrad> {
    let FastSteps {
        lr: fast_lr,
        steps: fast_steps,
        first_order,
    } = fast;
    ensure!(
        !synthetic.is_empty(),
        "give at least one synthetic label set"
    );
    let m = synthetic.len() as f64;
    let mut sum: BTreeMap<String, Tensor> = BTreeMap::new();
    let (mut meta_loss, mut fast_loss) = (0.0, 0.0);
    for y in synthetic {
        let g = unrolled_meta_gradient(
            theta,
            fast_steps,
            fast_lr,
            first_order,
            |_, p| {
                let z = model.forward(p, x, &mut Ctx::train_no_rng(false))?;
                loss::cross_entropy(&z, y, Reduction::Mean)
            },
            |p| {
                let z = model.forward(p, x, &mut Ctx::train_no_rng(false))?;
                consistency_kl(&z, teacher_probs)
                    .map_err(|e| candle_core::Error::Msg(format!("{e:#}")))
            },
            &[],
        )?;
        meta_loss += g.meta_loss / m;
        fast_loss += g.inner_losses.iter().sum::<f64>() / (g.inner_losses.len().max(1) as f64 * m);
        for (k, t) in g.grads {
            let t = (t / m)?;
            let e = match sum.remove(&k) {
                Some(s) => (s + t)?,
                None => t,
            };
            sum.insert(k, e);
        }
    }
    Ok(MlntGrad {
        grads: sum,
        meta_loss,
        fast_loss,
    })
}

/// The meta-loss weight and the teacher's EMA factor at global step `step` (0-based), or `None`
/// before `start_iter` (the authors' `batch_idx > start_iter`): `α·exp(−5(1−u)²)` with
/// `u = (step − start)/(mid − start)` and `ema_start` up to `mid_iter`, then `α` and `ema_end`.
pub fn schedule_at(s: &MlntSettings, step: u64) -> Option<(f64, f64)> {
    let t = step as usize;
    if t <= s.start_iter {
        return None;
    }
    if t > s.mid_iter || s.mid_iter == s.start_iter {
        return Some((s.alpha, s.ema_end));
    }
    let u = (t - s.start_iter) as f64 / (s.mid_iter - s.start_iter) as f64;
    Some((s.alpha * (-5.0 * (1.0 - u).powi(2)).exp(), s.ema_start))
}

/// MLNT as a [`StepRule`] (or, with `consistency` off, the CE baseline plus the same EMA
/// teacher, for the ablation). Before each real step after `start_iter`: the teacher update,
/// then (every `meta_every` steps) M synthetic label sets from the neighbours, the meta-gradient
/// and, per [`Update`], either its addition to the CE step's gradient or its own SGD step.
pub struct MlntRule {
    teacher: Arc<dyn Classifier>,
    features: Option<Arc<dyn Classifier>>,
    s: MlntSettings,
    first_order: bool,
    consistency: bool,
    initialised: bool,
    pending: Option<(ParamSet, BTreeMap<String, Tensor>)>,
    seed: u64,
    plain: Sgd,
    // Diagnostics since the last `take_metrics`.
    meta_loss_sum: f64,
    fast_loss_sum: f64,
    changed_sum: f64,
    meta_steps: usize,
    alpha_last: f64,
}

impl MlntRule {
    /// A rule training against `teacher` (a model of the student's architecture; its weights
    /// are overwritten by the student's at `start_iter`). `features`: the frozen CE baseline for
    /// [`Features::Baseline`], `None` for [`Features::Student`]. `consistency = false`: only the
    /// EMA (the CE baseline's ablation). The synthetic labels of step `t` are drawn from a
    /// generator seeded by `(seed, t)`, apart from the training stream (so CE and MLNT see the
    /// same batches, and `--resume` redraws the same labels).
    pub fn new(
        teacher: Arc<dyn Classifier>,
        features: Option<Arc<dyn Classifier>>,
        settings: &MlntSettings,
        first_order: bool,
        consistency: bool,
        seed: u64,
    ) -> Result<Self> {
        if consistency && settings.features == Features::Baseline && features.is_none() {
            bail!("features = baseline needs the CE baseline's model");
        }
        Ok(Self {
            teacher,
            features,
            s: settings.clone(),
            first_order,
            consistency,
            initialised: false,
            pending: None,
            seed,
            plain: Sgd::new(0.0, false, 0.0)?,
            meta_loss_sum: 0.0,
            fast_loss_sum: 0.0,
            changed_sum: 0.0,
            meta_steps: 0,
            alpha_last: 0.0,
        })
    }

    /// Whether the teacher has been initialised from the student (a step after `start_iter` ran).
    pub fn teacher_started(&self) -> bool {
        self.initialised
    }
}

impl StepRule for MlntRule {
    fn prepare(&mut self, s: RuleStep<'_>) -> Result<Option<InnerForward>> {
        self.pending = None;
        let Some((alpha, eps)) = schedule_at(&self.s, s.step) else {
            return Ok(None);
        };
        if self.initialised {
            ema_update(self.teacher.store(), s.model.store(), eps)?;
        } else {
            copy_weights(self.teacher.store(), s.model.store())?;
            self.initialised = true;
        }
        if !self.consistency
            || alpha == 0.0
            || !(s.step as usize - self.s.start_iter - 1).is_multiple_of(self.s.meta_every)
        {
            return Ok(None);
        }
        let n = s.labels.dims1()?;
        // Neighbours in the chosen feature space (eval mode, no graph).
        let feats = match &self.features {
            Some(f) => f.features(&f.store().params().detach(), s.images, &mut Ctx::eval())?,
            None => s
                .model
                .features(&s.params.detach(), s.images, &mut Ctx::eval())?,
        };
        let feats: Vec<f32> = feats.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        let nb = nearest_neighbours(&feats, n, self.s.num_neighbor)?;
        let y: Vec<u32> = s.labels.to_vec1()?;
        let mut rng = role_rng(
            self.seed ^ s.step.wrapping_mul(0xd134_2543_de82_ef95),
            "mlnt-transfer",
        );
        let mut synthetic = Vec::with_capacity(self.s.num_fast);
        let mut changed = 0usize;
        for _ in 0..self.s.num_fast {
            let t = neighbour_label_transfer(&y, &nb, self.s.perturb_ratio, &mut rng)?;
            changed += t.labels.iter().zip(&y).filter(|(a, b)| a != b).count();
            synthetic.push(Tensor::from_vec(t.labels, n, s.labels.device())?);
        }
        // The teacher's prediction in training mode (batch statistics, as the authors'
        // `tch_net.train()`), running statistics untouched.
        let tp = self.teacher.store().params().detach();
        let p_tch = candle_nn::ops::softmax(
            &self
                .teacher
                .forward(&tp, s.images, &mut Ctx::train_no_rng(false))?,
            candle_core::D::Minus1,
        )?
        .detach();
        let fast = FastSteps {
            lr: self.s.fast_lr,
            steps: self.s.fast_steps,
            first_order: self.first_order,
        };
        let g = mlnt_meta_gradient(s.model, s.params, s.images, (&synthetic, &p_tch), fast)?;
        check_meta_step(s.monitor, "MLNT", g.meta_loss, g.grads.values())?;
        let mut scaled = BTreeMap::new();
        for (k, t) in g.grads {
            scaled.insert(k, (t * alpha)?);
        }
        match self.s.update {
            Update::Combined => self.pending = Some((s.params.clone(), scaled)),
            Update::Sequential => {
                let gs = to_grad_store(s.model.store(), &scaled)?;
                self.plain.step(s.model.store(), &gs, s.lr)?;
            }
        }
        self.meta_loss_sum += g.meta_loss;
        self.fast_loss_sum += g.fast_loss;
        self.changed_sum += changed as f64 / (n * self.s.num_fast) as f64;
        self.meta_steps += 1;
        self.alpha_last = alpha;
        Ok(None)
    }

    fn loss(&mut self, logits: &Tensor, labels: &Tensor) -> Result<(Tensor, Option<Tensor>)> {
        let mut l = loss::cross_entropy(logits, labels, Reduction::Mean)?;
        if let Some((theta, g)) = self.pending.take() {
            // A term of value 0 whose gradient w.r.t. θ is the meta-gradient: the backward of
            // the real step then carries ∇CE + α∇L_meta into one optimiser step.
            for (k, gk) in &g {
                let t = theta.get(k)?;
                let zero = (t - t.detach())?;
                let term = (zero * gk.to_dtype(t.dtype())?)?
                    .sum_all()?
                    .to_dtype(l.dtype())?;
                l = (l + term)?;
            }
        }
        Ok((l, None))
    }

    fn take_metrics(&mut self, _round_steps: usize) -> Metrics {
        let mut m = Metrics::new();
        if self.meta_steps > 0 {
            let k = self.meta_steps as f64;
            m.insert("meta_loss", self.meta_loss_sum / k);
            m.insert("fast_loss", self.fast_loss_sum / k);
            m.insert("synthetic_changed_frac", self.changed_sum / k);
            m.insert("meta_steps", k);
            m.insert("meta_alpha", self.alpha_last);
        }
        self.meta_loss_sum = 0.0;
        self.fast_loss_sum = 0.0;
        self.changed_sum = 0.0;
        self.meta_steps = 0;
        m
    }

    fn state(&self) -> Result<BTreeMap<String, Tensor>> {
        let mut out = BTreeMap::new();
        for (k, v) in self.teacher.store().state_dict()? {
            out.insert(format!("teacher.{k}"), v);
        }
        out.insert(
            "teacher_started".into(),
            Tensor::new(u8::from(self.initialised) as f32, &candle_core::Device::Cpu)?,
        );
        Ok(out)
    }

    fn restore(&mut self, state: &BTreeMap<String, Tensor>) -> Result<()> {
        let mut net = BTreeMap::new();
        for (k, v) in state {
            if let Some(k) = k.strip_prefix("teacher.") {
                net.insert(k.to_string(), v.clone());
            } else if k == "teacher_started" {
                self.initialised = v.to_dtype(DType::F32)?.to_scalar::<f32>()? > 0.5;
            } else {
                bail!("unexpected tensor {k:?} in an MLNT checkpoint");
            }
        }
        self.teacher.store().load_state_dict(&net)?;
        Ok(())
    }
}
