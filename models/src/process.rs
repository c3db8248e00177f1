//! Process set-up for training with the zoo: [`init()`] or [`init_with`], first in `main`.
//!
//! Three things are process-wide and must be fixed before the first tensor op, so no library
//! function does them behind the caller's back:
//!
//! 1. **Second-order gradients.** candle detaches every intermediate gradient unless
//!    `CANDLE_GRAD_DO_NOT_DETACH=1`, read once per thread at its first `backward()`; without it
//!    the meta-gradients of L2RW, MWN and MLNT are silently wrong. [`init()`] sets it, after
//!    building rayon's pool with threads that run first-order passes detached (less memory;
//!    [`crate::backprop`]).
//! 2. **Thread pools.** `RAYON_NUM_THREADS` (from [`InitOptions::threads`]), and candle's
//!    elementwise pool without spinning ([`crate::ops::tame_candle_pool`]).
//! 3. **Allocator.** glibc keeps freed tensor buffers mapped ([`crate::ops::keep_freed_memory`]):
//!    a ResNet-32 step spent ~40 % of its time faulting pages back in without it.
//!
//! None of them changes a number: without [`init()`] the ops compute the same values
//! (first-order passes then run on the calling thread, with more memory and time), except that
//! second-order gradients need `CANDLE_GRAD_DO_NOT_DETACH=1` from somewhere (`cargo run` and
//! `cargo test` set it through `.cargo/config.toml`). Check with
//! [`crate::meta::require_second_order`].

/// What [`init_with`] sizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitOptions {
    /// Training runs that go side by side in this process (each gets a backward worker; with
    /// more than one, candle's elementwise pool gets no workers: the runs would queue for it,
    /// measured at 15 % of the CPU). At least 1.
    pub jobs: usize,
    /// CPU threads for rayon and candle (`RAYON_NUM_THREADS`); `None` leaves the environment's
    /// value or one thread per core.
    pub threads: Option<usize>,
}

impl Default for InitOptions {
    fn default() -> Self {
        Self {
            jobs: 1,
            threads: None,
        }
    }
}

/// [`init_with`] with one run and the default thread count.
///
/// As the first statement of `main`:
///
/// ```no_run
/// // SAFETY: first statement of main; no other thread exists yet.
/// unsafe { zoo_models::init() };
/// ```
///
/// # Safety
///
/// As [`init_with`]: call it first in `main`, before any other thread starts.
pub unsafe fn init() {
    init_with(&InitOptions::default())
}

/// Sets up the process for training (see the [module docs](self)): `RAYON_NUM_THREADS`,
/// candle's elementwise pool, the allocator, detached backward threads, and
/// `CANDLE_GRAD_DO_NOT_DETACH=1` last. A second call changes nothing the first one fixed.
///
/// # Safety
///
/// It sets environment variables and allocator parameters, which is sound only while the process
/// has a single thread. Call it as the first statement of `main`, before any thread starts, any
/// tensor op runs or a library that may read the environment on another thread is initialised.
/// Never call it from a test (the test harness runs tests on several threads).
pub unsafe fn init_with(opts: &InitOptions) {
    let jobs = opts.jobs.max(1);
    if let Some(n) = opts.threads.filter(|&n| n > 0) {
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
    // SAFETY (all three): single-threaded by this function's contract.
    unsafe {
        crate::ops::tame_candle_pool(jobs);
        crate::ops::keep_freed_memory();
        // Starts threads, so it comes last; it leaves CANDLE_GRAD_DO_NOT_DETACH=1 set.
        crate::backprop::start_detached_threads(jobs);
    }
}
