//! First-order backward passes on threads where candle detaches gradients.
//!
//! The meta-step needs `CANDLE_GRAD_DO_NOT_DETACH=1` for its *inner* backward (its gradient is
//! differentiated again), but candle reads the variable once per thread, so with it set every
//! other backward of that thread also keeps the graph of every intermediate gradient alive until
//! the pass ends. For the outer backward of an L2RW step on ResNet-32 (batch 128) that was a
//! 15.8 GB peak, and page faults on it were a third of the step's time.
//!
//! [`start_detached_threads`] runs, while the process is still single-threaded (the variable
//! off), one first backward on every thread of rayon's global pool, which it builds with stacks
//! deep enough for candle's recursive graph walk, and on `n` dedicated workers. [`backward`]
//! then runs first-order passes on the pool (the tensors are shared, nothing is copied) and gives
//! back the same gradients, detached. On the pool, the pass's parallel ops start on the worker
//! that runs it instead of being injected from outside and waking a sleeping worker each time:
//! from a dedicated thread, the 2-core machine sat idle 18 % of a ResNet-32 step (1.63 CPUs
//! busy), and the step ran 7–15 % slower. When the pool was built by someone else (its stacks
//! unknown), the dedicated workers run the passes instead; without either, [`backward`] is
//! `t.backward()` on the calling thread: same numbers, more memory.
//!
//! A consequence: rayon's pool threads detach, so a meta-gradient (whose inner backward must not)
//! cannot run on them; `meta` checks for this and returns an error rather than a wrong gradient.

use candle_core::{backprop::GradStore, Result, Tensor, Var};
use std::cell::RefCell;
use std::sync::mpsc::{channel, Sender};
use std::sync::{Mutex, OnceLock};

type Job = Box<dyn FnOnce() + Send>;

/// One channel per worker; a caller holds a worker's lock for the whole pass.
static WORKERS: OnceLock<Vec<Mutex<Sender<Job>>>> = OnceLock::new();

/// Builds rayon's global pool (if nobody has yet) with every thread detaching, starts `n`
/// dedicated detached workers (one per training run that goes side by side; at least one) for
/// when the pool was built elsewhere, and leaves `CANDLE_GRAD_DO_NOT_DETACH=1` set for every
/// thread that starts afterwards. Later calls do nothing. The pool's size is rayon's default
/// (`RAYON_NUM_THREADS`, else one thread per core). [`crate::init()`] calls it; prefer that.
///
/// Why the variable is toggled: candle reads it once per thread, at the thread's first
/// `backward()`. It is set to `0` while the new threads run their first backward (so they
/// detach: first-order passes that free each intermediate gradient), then to `1`, so that the
/// calling thread and every thread started later keep second-order gradients.
///
/// # Safety
///
/// It sets environment variables, which is sound only while no other thread reads or writes the
/// environment: call it while the process has a single thread (first thing in `main`), before
/// any backward pass of the calling thread. The threads it starts have finished their first
/// backward (the only time they read the environment) before the variable is set again.
pub unsafe fn start_detached_threads(n: usize) {
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
            .stack_size(STACK)
            .spawn(move || {
                let _ = first_backward_detaches();
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
    let built = rayon::ThreadPoolBuilder::new()
        .stack_size(STACK)
        .thread_name(|i| format!("zoo-rayon-{i}"))
        .build_global()
        .is_ok();
    let detached = built
        && rayon::broadcast(|_| first_backward_detaches())
            .iter()
            .all(|ok| *ok);
    let _ = POOL_DETACHED.set(detached);
    std::env::set_var("CANDLE_GRAD_DO_NOT_DETACH", "1");
}

/// Stack of every thread that runs backward passes: double-backward graphs are deep and candle
/// walks them recursively (address space only; pages are touched as the recursion needs them).
const STACK: usize = 256 << 20;

/// Whether rayon's global pool was built by [`start_detached_threads`] and all its threads
/// detach: first-order passes then run on it.
static POOL_DETACHED: OnceLock<bool> = OnceLock::new();

/// The first backward of a thread fixes candle's per-thread setting; run while the variable is
/// off, it makes the thread detach.
fn first_backward_detaches() -> bool {
    Var::new(1f32, &candle_core::Device::Cpu)
        .and_then(|v| v.as_tensor().sqr()?.backward())
        .is_ok()
}

/// `t.backward()` for a gradient that will not be differentiated again (a training step's or
/// the meta loss's): on rayon's pool when [`start_detached_threads`] built it, else on an idle
/// dedicated worker when they run, else on this thread.
pub fn backward(t: &Tensor) -> Result<GradStore> {
    if POOL_DETACHED.get() == Some(&true) {
        // On a pool thread already (e.g. runs inside a parallel loop): runs right here.
        return rayon::scope(|_| backward_here(t));
    }
    let Some(workers) = WORKERS.get() else {
        return backward_here(t);
    };
    // An idle worker if there is one, else wait for the first.
    let held = workers
        .iter()
        .find_map(|w| w.try_lock().ok())
        .or_else(|| workers.first().and_then(|w| w.lock().ok()));
    let Some(worker) = held else {
        return backward_here(t);
    };
    let (tx, rx) = channel();
    let job_t = t.clone();
    let job: Job = Box::new(move || {
        let _ = tx.send(backward_here(&job_t));
    });
    if worker.send(job).is_err() {
        return backward_here(t);
    }
    rx.recv()
        .map_err(|_| candle_core::Error::Msg("backward worker stopped".into()))?
}

thread_local! {
    /// The parameter gradients that ops handed to the [`backward`] pass running on this thread
    /// ([`param_grad`]); `None` outside such a pass.
    static HANDED_OVER: RefCell<Option<Vec<(Tensor, Tensor)>>> = const { RefCell::new(None) };
}

/// For an op's backward: the gradient `g` of its input `p`, to return to candle, or `None`
/// when `p` is a variable and a [`backward`] pass runs on this thread: the pass then puts `g`
/// in the gradients itself. candle starts the gradient of every input as `zeros` and adds each
/// contribution to it (single-threaded): for the MLP's 2.4 M weights that was three sweeps of
/// 10 MB per step, ~2 ms of an 11 ms step. Other passes (a meta-step's differentiable inner
/// backward, a user's `loss.backward()`) get `Some(g)`, as before.
pub(crate) fn param_grad(p: &Tensor, g: Tensor) -> Option<Tensor> {
    if !p.is_variable() {
        return Some(g);
    }
    HANDED_OVER.with(|h| match h.borrow_mut().as_mut() {
        Some(list) => {
            list.push((p.clone(), g));
            None
        }
        None => Some(g),
    })
}

/// `t.backward()` on this thread, with the gradients handed over by [`param_grad`] added to
/// what candle computed (a sum where candle has a gradient for the same variable from another
/// op). A pass that starts on this thread while this one waits (rayon work stealing) keeps its
/// own list: the previous one is restored at the end.
fn backward_here(t: &Tensor) -> Result<GradStore> {
    struct Restore(Option<Vec<(Tensor, Tensor)>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let prev = self.0.take();
            HANDED_OVER.with(|h| *h.borrow_mut() = prev);
        }
    }
    let _restore = Restore(HANDED_OVER.with(|h| h.borrow_mut().replace(Vec::new())));
    let mut grads = t.backward()?;
    let handed = HANDED_OVER
        .with(|h| h.borrow_mut().take())
        .unwrap_or_default();
    for (p, g) in handed {
        let sum = match grads.get(&p) {
            Some(prev) => prev.add(&g)?,
            None => g,
        };
        grads.insert(&p, sum);
    }
    Ok(grads)
}
