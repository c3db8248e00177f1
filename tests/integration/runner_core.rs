//! The runner on a tiny task (logistic regression with momentum SGD on synthetic data):
//! the loss drops, `--resume` after a crash reproduces the uninterrupted run bit for bit, the
//! NaN guard stops with the global step and keeps the last good checkpoint, and no temporary
//! file is left behind.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Result;
use candle_core::{DType, Device, Tensor, Var};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use zoo::results::{ResultsDir, TEMP_PREFIX};
use zoo::runner::{EpochTask, Metrics, NonFinite, RunOutcome, Runner, StepMonitor, TaskState};

fn temp_dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("runner_core_{name}_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Files anywhere under `dir` whose name marks an unfinished atomic write.
fn temp_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(temp_files(&p));
        } else if p
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(TEMP_PREFIX)
        {
            out.push(p);
        }
    }
    out
}

/// Logistic regression y = [x·w* > 0] with 10% label noise, trained by momentum SGD on
/// shuffled minibatches (shuffling from the epoch rng, momentum in the checkpoint).
struct LogReg {
    x: Tensor,
    y: Tensor,
    x_test: Tensor,
    y_test: Tensor,
    w: Var,
    b: Var,
    mom: HashMap<String, Tensor>,
    lr: f64,
    batch: usize,
    /// Simulated crash: fail in this (epoch, step-within-epoch) after updating the weights.
    crash_at: Option<(usize, usize)>,
    /// Simulated divergence: weights become NaN at this global step.
    poison_at_step: Option<u64>,
    /// Weights become NaN after the last step of this epoch (loss stays finite).
    poison_weights_after_epoch: Option<usize>,
}

fn data(seed: u64, n: usize, d: usize) -> (Tensor, Tensor) {
    let mut rng = StdRng::seed_from_u64(seed);
    let w_star: Vec<f64> = (0..d)
        .map(|i| if i % 2 == 0 { 1.0 } else { -0.5 })
        .collect();
    let mut xs = Vec::with_capacity(n * d);
    let mut ys = Vec::with_capacity(n);
    for _ in 0..n {
        let x: Vec<f64> = (0..d).map(|_| rng.random_range(-1.0..1.0)).collect();
        let s: f64 = x.iter().zip(&w_star).map(|(a, b)| a * b).sum();
        let mut y = if s > 0.0 { 1.0 } else { 0.0 };
        if rng.random::<f64>() < 0.1 {
            y = 1.0 - y;
        }
        xs.extend(x);
        ys.push(y);
    }
    (
        Tensor::from_vec(xs, (n, d), &Device::Cpu).unwrap(),
        Tensor::from_vec(ys, n, &Device::Cpu).unwrap(),
    )
}

impl LogReg {
    fn new(seed: u64) -> Self {
        let (x, y) = data(1000 + seed, 512, 8);
        let (x_test, y_test) = data(2000 + seed, 512, 8);
        Self {
            x,
            y,
            x_test,
            y_test,
            w: Var::zeros((8, 1), DType::F64, &Device::Cpu).unwrap(),
            b: Var::zeros(1, DType::F64, &Device::Cpu).unwrap(),
            mom: HashMap::new(),
            lr: 0.5,
            batch: 32,
            crash_at: None,
            poison_at_step: None,
            poison_weights_after_epoch: None,
        }
    }

    fn loss(&self, x: &Tensor, y: &Tensor) -> Result<Tensor> {
        let z = x
            .matmul(self.w.as_tensor())?
            .squeeze(1)?
            .broadcast_add(self.b.as_tensor())?;
        // BCE with logits: log(1 + e^z) − y·z.
        Ok((z.exp()?.affine(1.0, 1.0)?.log()? - (y * &z)?)?.mean_all()?)
    }

    fn weights(&self) -> Vec<f64> {
        let mut v = self
            .w
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        v.extend(self.b.as_tensor().to_vec1::<f64>().unwrap());
        v
    }
}

impl EpochTask for LogReg {
    fn train_epoch(
        &mut self,
        epoch: usize,
        rng: &mut StdRng,
        monitor: &mut StepMonitor,
    ) -> Result<Metrics> {
        let n = self.x.dim(0)?;
        let mut idx: Vec<u32> = (0..n as u32).collect();
        idx.shuffle(rng);
        let mut sum = 0.0;
        let mut steps = 0;
        for (i, chunk) in idx.chunks(self.batch).enumerate() {
            if self.poison_at_step == Some(monitor.global_step()) {
                self.w.set(&(self.w.as_tensor() * f64::NAN)?)?;
            }
            let ids = Tensor::new(chunk, &Device::Cpu)?;
            let loss = self.loss(
                &self.x.index_select(&ids, 0)?,
                &self.y.index_select(&ids, 0)?,
            )?;
            let l = loss.to_scalar::<f64>()?;
            monitor.step(l)?;
            let grads = loss.backward()?;
            for (name, var) in [("w", &self.w), ("b", &self.b)] {
                let g = grads.get(var.as_tensor()).expect("gradient").detach();
                let m = match self.mom.get(name) {
                    Some(m) => ((m * 0.9)? + g)?,
                    None => g,
                };
                var.set(&(var.as_tensor() - (&m * self.lr)?)?)?;
                self.mom.insert(name.to_string(), m);
            }
            sum += l;
            steps += 1;
            if self.crash_at == Some((epoch, i)) {
                anyhow::bail!("simulated crash");
            }
        }
        if self.poison_weights_after_epoch == Some(epoch) {
            self.b.set(&Tensor::new(&[f64::NAN], &Device::Cpu)?)?;
        }
        Ok(Metrics::new().with("loss", sum / steps as f64))
    }

    fn evaluate(&mut self, _epoch: usize) -> Result<Metrics> {
        let z = self
            .x_test
            .matmul(self.w.as_tensor())?
            .squeeze(1)?
            .broadcast_add(self.b.as_tensor())?;
        let pred = z.gt(0.0)?.to_dtype(DType::F64)?;
        let err = pred
            .ne(&self.y_test)?
            .to_dtype(DType::F64)?
            .mean_all()?
            .to_scalar::<f64>()?;
        let nll = self.loss(&self.x_test, &self.y_test)?.to_scalar::<f64>()?;
        Ok(Metrics::new().with("test_error", err).with("test_nll", nll))
    }

    fn state(&self) -> Result<TaskState> {
        let mut tensors = HashMap::new();
        tensors.insert("weight".to_string(), self.w.as_tensor().clone());
        tensors.insert("bias".to_string(), self.b.as_tensor().clone());
        for (k, v) in &self.mom {
            tensors.insert(format!("momentum_buffer.{k}"), v.clone());
        }
        Ok(TaskState {
            tensors,
            json: serde_json::json!({ "lr": self.lr }),
        })
    }

    fn restore(&mut self, mut state: TaskState) -> Result<()> {
        let mut take = |k: &str| {
            state
                .tensors
                .remove(k)
                .ok_or_else(|| anyhow::anyhow!("missing {k}"))
        };
        self.w.set(&take("weight")?)?;
        self.b.set(&take("bias")?)?;
        for k in ["w", "b"] {
            self.mom
                .insert(k.to_string(), take(&format!("momentum_buffer.{k}"))?);
        }
        self.lr = state.json["lr"].as_f64().unwrap();
        Ok(())
    }

    fn steps_in_epoch(&self, _epoch: usize) -> Option<u64> {
        Some(self.x.dim(0).unwrap().div_ceil(self.batch) as u64)
    }

    fn learning_rate(&self, _epoch: usize) -> Option<f64> {
        Some(self.lr)
    }
}

fn without_times(csv: &str) -> String {
    // Drop epoch_s and time_s (columns 4 and 5): wall times differ between runs.
    csv.lines()
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            [&f[..3], &f[5..]].concat().join(",")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn same_numbers(a: &RunOutcome, b: &RunOutcome) {
    assert_eq!(a.seeds.len(), b.seeds.len());
    for (sa, sb) in a.seeds.iter().zip(&b.seeds) {
        assert_eq!(sa.history.len(), sb.history.len());
        for (ra, rb) in sa.history.iter().zip(&sb.history) {
            assert_eq!(
                (ra.epoch, ra.global_step, &ra.train, &ra.eval),
                (rb.epoch, rb.global_step, &rb.train, &rb.eval)
            );
        }
    }
}

#[test]
fn tiny_training_loss_drops_and_files_are_complete() {
    let dir = temp_dir("drops");
    let results = ResultsDir::create(&dir).unwrap();
    let out = Runner::with_dir(&results, &[0, 1], 5)
        .run(|s| Ok(LogReg::new(s)))
        .unwrap();
    for s in &out.seeds {
        let first = s.history[0].train.get("loss").unwrap();
        let last = s.history[4].train.get("loss").unwrap();
        // From ln 2 = 0.693 at w = 0; 10% label noise bounds it below by ~0.33.
        assert!(
            first < 0.69 && last < 0.9 * first,
            "seed {}: loss {first} -> {last}",
            s.seed
        );
        let err = s.history[4].eval.get("test_error").unwrap();
        assert!(err < 0.2, "seed {}: test error {err}", s.seed);
        assert_eq!(s.history[4].global_step, 5 * 16);
        let csv = std::fs::read_to_string(dir.join(format!("seed_{}/log.csv", s.seed))).unwrap();
        assert_eq!(csv.lines().count(), 6);
        assert!(
            csv.starts_with("epoch,global_step,lr,epoch_s,time_s,train_loss,test_error,test_nll\n")
        );
        assert!(dir
            .join(format!("seed_{}/checkpoint/latest.json", s.seed))
            .is_file());
    }
    assert_eq!(out.final_values("test_error").unwrap().len(), 2);
    assert!(out.final_values("nonexistent").is_err());
    assert!(temp_files(&dir).is_empty(), "{:?}", temp_files(&dir));
}

#[test]
fn resume_after_a_crash_reproduces_the_uninterrupted_run() {
    let full_dir = temp_dir("full");
    let full = Runner::with_dir(&ResultsDir::create(&full_dir).unwrap(), &[3], 5)
        .run(|s| Ok(LogReg::new(s)))
        .unwrap();
    let mut full_task = LogReg::new(3);
    // Same run again in another directory, crashing in the middle of epoch 3 (0-based 2) after
    // some weight updates that must not leak into the resumed run.
    let dir = temp_dir("crash");
    let results = ResultsDir::create(&dir).unwrap();
    let e = Runner::with_dir(&results, &[3], 5)
        .run(|s| {
            let mut t = LogReg::new(s);
            t.crash_at = Some((2, 7));
            Ok(t)
        })
        .unwrap_err();
    assert!(format!("{e:#}").contains("simulated crash"));
    let log = std::fs::read_to_string(dir.join("seed_3/log.csv")).unwrap();
    assert_eq!(log.lines().count(), 3, "two completed epochs logged");
    // Resume in a fresh task (as a new process would).
    let mut resumed_task = LogReg::new(3);
    let resumed = Runner::with_dir(&results, &[3], 5)
        .resume(true)
        .run_seed(3, &mut resumed_task)
        .unwrap();
    same_numbers(
        &full,
        &RunOutcome {
            seeds: vec![resumed.clone()],
        },
    );
    Runner::with_dir(&ResultsDir::create(temp_dir("full2")).unwrap(), &[3], 5)
        .run_seed(3, &mut full_task)
        .unwrap();
    assert_eq!(
        full_task.weights(),
        resumed_task.weights(),
        "final weights differ"
    );
    assert_eq!(
        without_times(&std::fs::read_to_string(full_dir.join("seed_3/log.csv")).unwrap()),
        without_times(&std::fs::read_to_string(dir.join("seed_3/log.csv")).unwrap())
    );
    // Resuming a finished run restores the trained task and keeps the history.
    let mut again = LogReg::new(3);
    let done = Runner::with_dir(&results, &[3], 5)
        .resume(true)
        .run_seed(3, &mut again)
        .unwrap();
    assert_eq!(done, resumed);
    assert_eq!(again.weights(), resumed_task.weights());
    // Without --resume the old checkpoint is discarded and the run starts over.
    let fresh = Runner::with_dir(&results, &[3], 5)
        .run(|s| Ok(LogReg::new(s)))
        .unwrap();
    same_numbers(&full, &fresh);
    assert!(temp_files(&dir).is_empty());
}

#[test]
fn nan_guard_stops_with_the_step_and_keeps_the_last_good_checkpoint() {
    let dir = temp_dir("nan");
    let results = ResultsDir::create(&dir).unwrap();
    // 16 steps per epoch: step 37 is in the third epoch (0-based 2), after two checkpoints.
    let mut task = LogReg::new(0);
    task.poison_at_step = Some(37);
    let e = Runner::with_dir(&results, &[0], 5)
        .run_seed(0, &mut task)
        .unwrap_err();
    let nf = e.downcast_ref::<NonFinite>().expect("a NonFinite error");
    assert_eq!((nf.step, nf.epoch, nf.what.as_str()), (37, 2, "loss"));
    assert!(nf.value.is_nan());
    let ckpt = dir.join("seed_0/checkpoint");
    assert_eq!(nf.kept_checkpoint, Some((2, ckpt.clone())));
    let msg = format!("{e}");
    assert!(
        msg.contains("global step 37") && msg.contains("after epoch 2"),
        "{msg}"
    );
    // The kept checkpoint is the one after epoch 2, finite and resumable.
    let mut reference = LogReg::new(0);
    Runner::with_dir(&ResultsDir::create(temp_dir("nan_ref")).unwrap(), &[0], 2)
        .run_seed(0, &mut reference)
        .unwrap();
    let mut restored = LogReg::new(0);
    let run = Runner::with_dir(&results, &[0], 2)
        .resume(true)
        .run_seed(0, &mut restored)
        .unwrap();
    assert_eq!(run.history.len(), 2);
    assert_eq!(restored.weights(), reference.weights());
    assert!(restored.weights().iter().all(|w| w.is_finite()));
    let log = std::fs::read_to_string(dir.join("seed_0/log.csv")).unwrap();
    assert_eq!(log.lines().count(), 3);
    assert!(temp_files(&dir).is_empty());
}

#[test]
fn non_finite_weights_are_never_checkpointed() {
    let dir = temp_dir("nanw");
    let results = ResultsDir::create(&dir).unwrap();
    let mut task = LogReg::new(0);
    task.poison_weights_after_epoch = Some(1);
    let e = Runner::with_dir(&results, &[0], 4)
        .run_seed(0, &mut task)
        .unwrap_err();
    let nf = e.downcast_ref::<NonFinite>().expect("a NonFinite error");
    assert_eq!((nf.step, nf.epoch), (32, 1));
    assert_eq!(nf.what, "tensor bias");
    assert_eq!(nf.kept_checkpoint, Some((1, dir.join("seed_0/checkpoint"))));
    let latest = std::fs::read_to_string(dir.join("seed_0/checkpoint/latest.json")).unwrap();
    assert!(latest.contains("\"epoch\": 1"), "{latest}");
}

#[test]
fn atomic_write_failure_leaves_the_old_file_and_no_temp_file() {
    let dir = temp_dir("atomic");
    let p = dir.join("summary.json");
    zoo::results::atomic_write(&p, b"old").unwrap();
    let r = zoo::results::atomic_write_with(&p, |tmp| {
        std::fs::write(tmp, b"half-writ")?;
        anyhow::bail!("disk full")
    });
    assert!(r.is_err());
    assert_eq!(std::fs::read(&p).unwrap(), b"old");
    assert!(temp_files(&dir).is_empty());
    zoo::results::atomic_write(&p, b"new").unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), b"new");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
}

#[test]
fn second_order_gradients_are_present_under_cargo() {
    // .cargo/config.toml sets CANDLE_GRAD_DO_NOT_DETACH for `cargo test`.
    zoo::second_order_self_test().unwrap();
}
