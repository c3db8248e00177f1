//! Keeps freed tensor buffers inside the process (glibc `malloc` tuning, Linux only).
//!
//! A training step allocates and frees the same few hundred buffers of 0.1–10 MB every step. By
//! default glibc serves blocks above 128 KiB with `mmap` and unmaps them on `free`, and trims the
//! heap top back to the OS, so every step faults its pages in again (zeroed by the kernel) and
//! pays TLB shoot-downs on unmap. Profiled on ResNet-32 (batch 128, 2 threads) this was ~40 % of
//! the step. Raising the mmap threshold to its maximum (32 MiB on 64-bit) and the trim threshold
//! to 2 GiB (`i32::MAX`) keeps those pages mapped and reused; the cost is that the process keeps its peak
//! heap until exit, which is what a training run wants.

use std::sync::Once;

static ONCE: Once = Once::new();

/// Applies the tuning once per process (later calls do nothing); a no-op off glibc.
/// [`crate::init()`] calls it; prefer that.
///
/// # Safety
///
/// glibc documents `mallopt` as MT-Unsafe (`const:mallopt`: `malloc` reads the parameters it
/// changes without a lock). Call it while the process has a single thread, first thing in
/// `main`, before any other thread can allocate.
pub unsafe fn keep_freed_memory() {
    ONCE.call_once(|| {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: single-threaded by this function's contract; mallopt only changes allocator
        // parameters.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
            libc::mallopt(libc::M_TOP_PAD, 64 << 20);
        }
    });
}
