//! First-order backward passes on a thread where candle detaches gradients.
//!
//! The meta-step needs `CANDLE_GRAD_DO_NOT_DETACH=1` for its *inner* backward (its gradient is
//! differentiated again), but candle reads the variable once per thread, so with it set every
//! other backward of that thread also keeps the graph of every intermediate gradient alive until
//! the pass ends. For the outer backward of an L2RW step on ResNet-32 (batch 128) that was a
//! 15.8 GB peak, and page faults on it were a third of the step's time.
//!
//! [`start_detached_threads`] starts, while the process is still single-threaded, workers whose
//! thread-local copy of the setting is off; [`backward`] then runs first-order passes there (the
//! tensors are shared, nothing is copied) and gives back the same gradients, detached. Without the
//! worker, [`backward`] is `t.backward()` on the calling thread: same numbers, more memory.

use candle_core::{backprop::GradStore, Result, Tensor, Var};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Mutex, OnceLock};

type Job = Box<dyn FnOnce() + Send>;

/// One channel per worker; a caller holds a worker's lock for the whole pass.
static WORKERS: OnceLock<Vec<Mutex<Sender<Job>>>> = OnceLock::new();

/// Starts `n` detached-backward workers (one per training run that goes side by side; at least
/// one) and leaves `CANDLE_GRAD_DO_NOT_DETACH=1` set for every thread that starts afterwards.
/// Call it first thing in `main`, while the process has one thread (it changes the
/// environment); later calls do nothing.
pub fn start_detached_threads(n: usize) {
    if WORKERS.get().is_some() {
        return;
    }
    std::env::set_var("CANDLE_GRAD_DO_NOT_DETACH", "0");
    let mut senders = Vec::new();
    for i in 0..n.max(1) {
        let (tx, rx) = channel::<Job>();
        let (ready_tx, ready_rx) = channel::<()>();
        let spawned = std::thread::Builder::new()
            .name(format!("zoo-backward-{i}"))
            // Double-backward graphs are deep and candle walks them recursively.
            .stack_size(256 << 20)
            .spawn(move || {
                // The first backward of this thread fixes its setting to "detach".
                let _ = Var::new(1f32, &candle_core::Device::Cpu)
                    .and_then(|v| v.as_tensor().sqr()?.backward());
                let _ = ready_tx.send(());
                while let Ok(job) = rx.recv() {
                    job();
                }
            });
        if spawned.is_ok() && ready_rx.recv().is_ok() {
            senders.push(Mutex::new(tx));
        }
    }
    if !senders.is_empty() {
        let _ = WORKERS.set(senders);
    }
    std::env::set_var("CANDLE_GRAD_DO_NOT_DETACH", "1");
}

/// `t.backward()` for a gradient that will not be differentiated again (a training step's or
/// the meta loss's), on an idle detached worker when they run, else on this thread.
pub fn backward(t: &Tensor) -> Result<GradStore> {
    let Some(workers) = WORKERS.get() else {
        return t.backward();
    };
    // An idle worker if there is one, else wait for the first.
    let held = workers
        .iter()
        .find_map(|w| w.try_lock().ok())
        .or_else(|| workers.first().and_then(|w| w.lock().ok()));
    let Some(worker) = held else {
        return t.backward();
    };
    let (tx, rx) = channel();
    let job_t = t.clone();
    let job: Job = Box::new(move || {
        let _ = tx.send(job_t.backward());
    });
    if worker.send(job).is_err() {
        return t.backward();
    }
    rx.recv()
        .map_err(|_| candle_core::Error::Msg("backward worker stopped".into()))?
}
