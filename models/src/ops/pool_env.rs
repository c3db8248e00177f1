//! Sizes candle's elementwise thread pool for CPU training (environment variables, read once).
//!
//! candle runs its elementwise CPU ops (the `add` of every gradient accumulation in backward,
//! `zeros`, residual sums) on a "barrier pool": the calling thread does a share of the work,
//! then spins until the pool's workers are done, and each worker spins 25,000 times after its
//! share before parking. On a machine with few cores those spins take the cores the gemm threads
//! of the next op need, and the caller's spin waits for a worker that must first be woken.
//! Profiled on ResNet-32 (batch 128, 2 cores): 9 % of a train step was the caller spinning in
//! candle's `BarrierGuard::drop`. Running these memory-bound ops on the calling thread alone was
//! faster on every benchmark net (ResNet-32 507 → 487 ms/step, LeNet 25.5 → 22.1 ms/step, the
//! LeNet L2RW step 3.4 → 2.9× a plain step; `results/bench/train_step.md`).

/// Lowers candle's barrier-pool spin limit (`CANDLE_BARRIER_POOL_SPIN_LIMIT=0`) and, with
/// several training runs side by side (`jobs > 1`) or on a machine with at most 4 cores, gives
/// the pool no workers (`CANDLE_NUM_THREADS=1`: elementwise ops run on the calling thread).
/// Variables the user has set are left alone. [`crate::init()`] calls it; prefer that.
///
/// # Safety
///
/// It sets environment variables, which is sound only while no other thread reads or writes the
/// environment: call it while the process has a single thread (first thing in `main`), before
/// the first tensor op (candle reads these variables once).
pub unsafe fn tame_candle_pool(jobs: usize) {
    if std::env::var_os("CANDLE_BARRIER_POOL_SPIN_LIMIT").is_none() {
        std::env::set_var("CANDLE_BARRIER_POOL_SPIN_LIMIT", "0");
    }
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() && (jobs > 1 || cores <= 4) {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
}
