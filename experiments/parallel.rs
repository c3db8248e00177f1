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
    // Each run trains with the caller's ops backend (a per-thread value).
    let backend = zoo_models::ops::backend();
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
                .spawn_scoped(scope, move || {
                    let _backend = zoo_models::ops::BackendScope::new(backend);
                    loop {
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

/// [`run_indexed`], handing out first the indices for which `first(i)` holds (the long runs, so
/// that runs side by side end close together); results still in index order.
pub fn run_indexed_first<T, F>(
    jobs: usize,
    n: usize,
    first: impl Fn(usize) -> bool,
    f: F,
) -> Result<Vec<T>>
where
    T: Send,
    F: Fn(usize) -> Result<T> + Sync,
{
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| !first(i));
    let mut out = run_indexed(jobs, n, |j| Ok((order[j], f(order[j])?)))?;
    out.sort_by_key(|&(i, _)| i);
    Ok(out.into_iter().map(|(_, v)| v).collect())
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

    #[test]
    fn runs_side_by_side_keep_the_callers_backend() {
        use zoo_models::ops::{backend, with_backend, Backend};
        let seen = with_backend(Backend::Candle, || run_indexed(2, 4, |_| Ok(backend())));
        assert_eq!(seen.unwrap(), vec![Backend::Candle; 4]);
    }

    #[test]
    fn first_runs_go_out_first_and_results_keep_index_order() {
        let started = Mutex::new(Vec::new());
        let v = run_indexed_first(
            1,
            6,
            |i| i % 3 == 2,
            |i| {
                started.lock().unwrap().push(i);
                Ok(10 * i)
            },
        )
        .unwrap();
        assert_eq!(v, vec![0, 10, 20, 30, 40, 50]);
        assert_eq!(started.into_inner().unwrap(), vec![2, 5, 0, 1, 3, 4]);
    }
}
