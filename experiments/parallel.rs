//! Independent training runs side by side on a few OS threads.
//!
//! On a small CPU much of a candle train step is serial (graph bookkeeping, elementwise ops), so
//! two runs on two threads finish in little more than the time of one. Every run owns its seeded
//! generators, so the numbers do not depend on how the runs are scheduled; only wall times do.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::{anyhow, Result};

/// Stack of each worker thread: candle's backward walks the graph recursively, and the graph of a
/// second-order meta-step through a deep network is deeper than a default 2 MiB stack allows.
const STACK_BYTES: usize = 256 << 20;

/// `f(0), …, f(n−1)` on up to `jobs` threads, results in index order. The first error stops the
/// hand-out of further runs and is returned (runs already started finish first). `jobs <= 1`
/// runs everything on the calling thread.
pub fn run_indexed<T, F>(jobs: usize, n: usize, f: F) -> Result<Vec<T>>
where
    T: Send,
    F: Fn(usize) -> Result<T> + Sync,
{
    if jobs <= 1 || n <= 1 {
        return (0..n).map(&f).collect();
    }
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let slots: Mutex<Vec<Option<Result<T>>>> = Mutex::new((0..n).map(|_| None).collect());
    std::thread::scope(|scope| -> Result<()> {
        let mut handles = Vec::new();
        for w in 0..jobs.min(n) {
            let (next, failed, slots, f) = (&next, &failed, &slots, &f);
            let h = std::thread::Builder::new()
                .name(format!("run-{w}"))
                .stack_size(STACK_BYTES)
                .spawn_scoped(scope, move || loop {
                    if failed.load(Ordering::SeqCst) {
                        break;
                    }
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= n {
                        break;
                    }
                    let r = f(i);
                    if r.is_err() {
                        failed.store(true, Ordering::SeqCst);
                    }
                    if let Ok(mut s) = slots.lock() {
                        s[i] = Some(r);
                    }
                })?;
            handles.push(h);
        }
        for h in handles {
            h.join()
                .map_err(|_| anyhow!("a training thread panicked"))?;
        }
        Ok(())
    })?;
    let slots = slots
        .into_inner()
        .map_err(|_| anyhow!("a training thread panicked"))?;
    let mut out = Vec::with_capacity(n);
    let mut first_err = None;
    for s in slots {
        match s {
            Some(Ok(v)) => out.push(v),
            Some(Err(e)) => {
                first_err.get_or_insert(e);
            }
            None => {}
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_index_order_and_reports_errors() {
        let v = run_indexed(3, 10, |i| Ok(i * i)).unwrap();
        assert_eq!(v, (0..10).map(|i| i * i).collect::<Vec<_>>());
        let e = run_indexed(2, 10, |i| {
            if i == 4 {
                anyhow::bail!("run {i} failed")
            }
            Ok(i)
        });
        assert_eq!(e.unwrap_err().to_string(), "run 4 failed");
        assert_eq!(run_indexed(1, 3, Ok).unwrap(), vec![0, 1, 2]);
    }
}
