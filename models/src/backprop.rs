//! First-order backward passes on a thread where candle detaches gradients.
//!
//! The meta-step needs `CANDLE_GRAD_DO_NOT_DETACH=1` for its *inner* backward (its gradient is
//! differentiated again), but candle reads the variable once per thread, so with it set every
//! other backward of that thread also keeps the graph of every intermediate gradient alive until
//! the pass ends. For the outer backward of an L2RW step on ResNet-32 (batch 128) that was a
//! 15.8 GB peak, and page faults on it were a third of the step's time.
//!
//! [`start_detached_thread`] starts, while the process is still single-threaded, one worker whose
//! thread-local copy of the setting is off; [`backward`] then runs first-order passes there (the
//! tensors are shared, nothing is copied) and gives back the same gradients, detached. Without the
//! worker, [`backward`] is `t.backward()` on the calling thread: same numbers, more memory.

use candle_core::{backprop::GradStore, Result, Tensor, Var};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Mutex, OnceLock};

type Job = Box<dyn FnOnce() + Send>;

static WORKER: OnceLock<Mutex<Sender<Job>>> = OnceLock::new();

/// Starts the detached-backward worker and leaves `CANDLE_GRAD_DO_NOT_DETACH=1` set for every
/// thread that starts afterwards. Call it first thing in `main`, while the process has one
/// thread (it changes the environment); later calls do nothing.
pub fn start_detached_thread() {
    if WORKER.get().is_some() {
        return;
    }
    std::env::set_var("CANDLE_GRAD_DO_NOT_DETACH", "0");
    let (tx, rx) = channel::<Job>();
    let (ready_tx, ready_rx) = channel::<()>();
    let spawned = std::thread::Builder::new()
        .name("zoo-backward".into())
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
        let _ = WORKER.set(Mutex::new(tx));
    }
    std::env::set_var("CANDLE_GRAD_DO_NOT_DETACH", "1");
}

/// `t.backward()` for a gradient that will not be differentiated again (a training step's or
/// the meta loss's), on the detached worker when it runs, else on this thread.
pub fn backward(t: &Tensor) -> Result<GradStore> {
    let Some(worker) = WORKER.get() else {
        return t.backward();
    };
    let (tx, rx) = channel();
    let job_t = t.clone();
    let job: Job = Box::new(move || {
        let _ = tx.send(job_t.backward());
    });
    let sent = worker.lock().map(|w| w.send(job).is_ok()).unwrap_or(false);
    if !sent {
        return t.backward();
    }
    rx.recv()
        .map_err(|_| candle_core::Error::Msg("backward worker stopped".into()))?
}
