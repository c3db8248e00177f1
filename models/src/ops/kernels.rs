//! Shared CPU plumbing for the fast ops: dtype dispatch, contiguous slices, thread count, and a
//! thin wrapper over the `gemm` crate (the one candle itself uses for CPU matmul).

use candle_core::{CpuStorage, Layout, Result, Shape, WithDType};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Element types the fast kernels run on (f32 for training, f64 for the exactness tests).
pub(crate) trait Real: WithDType {
    fn slice(s: &CpuStorage) -> Option<&[Self]>;
    fn slice_mut(s: &mut CpuStorage) -> Option<&mut [Self]>;
}

impl Real for f32 {
    fn slice(s: &CpuStorage) -> Option<&[Self]> {
        match s {
            CpuStorage::F32(v) => Some(v),
            _ => None,
        }
    }
    fn slice_mut(s: &mut CpuStorage) -> Option<&mut [Self]> {
        match s {
            CpuStorage::F32(v) => Some(v),
            _ => None,
        }
    }
}

impl Real for f64 {
    fn slice(s: &CpuStorage) -> Option<&[Self]> {
        match s {
            CpuStorage::F64(v) => Some(v),
            _ => None,
        }
    }
    fn slice_mut(s: &mut CpuStorage) -> Option<&mut [Self]> {
        match s {
            CpuStorage::F64(v) => Some(v),
            _ => None,
        }
    }
}

/// Rejects two inputs of an elementwise op whose shapes differ.
pub(crate) fn same_shape(op: &str, l1: &Layout, l2: &Layout) -> Result<()> {
    if l1.shape() != l2.shape() {
        candle_core::bail!("{op}: shapes {:?} and {:?} differ", l1.shape(), l2.shape());
    }
    Ok(())
}

/// The contiguous data of `s` under `l` (the op wrappers make their inputs contiguous first).
pub(crate) fn contiguous<'a, T: Real>(
    s: &'a CpuStorage,
    l: &Layout,
    op: &'static str,
) -> Result<&'a [T]> {
    let data = T::slice(s)
        .ok_or_else(|| candle_core::Error::Msg(format!("{op}: expected {:?} storage", T::DTYPE)))?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!(
            "{op}: input must be contiguous, got strides {:?}",
            l.stride()
        ),
    }
}

pub(crate) fn u32_contiguous<'a>(
    s: &'a CpuStorage,
    l: &Layout,
    op: &'static str,
) -> Result<&'a [u32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::U32(v), Some((a, b))) => Ok(&v[a..b]),
        _ => candle_core::bail!("{op}: expected contiguous u32 indices"),
    }
}

/// Run `$body` with `$T` bound to the float type of `$dtype` (f32 or f64).
macro_rules! with_float {
    ($dtype:expr, $op:expr, |$T:ident| $body:expr) => {
        match $dtype {
            candle_core::DType::F32 => {
                type $T = f32;
                $body
            }
            candle_core::DType::F64 => {
                type $T = f64;
                $body
            }
            d => candle_core::bail!("{}: unsupported dtype {:?} (f32/f64 only)", $op, d),
        }
    };
}
pub(crate) use with_float;

/// Number of worker threads (rayon's pool, which candle's CPU backend also uses).
pub(crate) fn threads() -> usize {
    rayon::current_num_threads().max(1)
}

/// `with_min_len` for a parallel iterator over `n` items that should run as one piece per
/// thread (one scratch initialisation each): rayon splits a piece only while half of it still
/// has `min_len` items, so `n / threads` (not `⌈n / threads⌉`, which left an odd `n` in a
/// single piece on 2 threads, i.e. serial) gives `threads` pieces.
pub(crate) fn one_piece_per_thread(n: usize) -> usize {
    (n / threads()).max(1)
}

/// Runs `f(index, chunk, scratch, parallel)` for every `per`-element chunk of `out` (the last
/// may be shorter). With at least as many chunks as threads: in parallel, one piece per thread
/// and one `scratch()` each (rayon's adaptive splitting would call the initialiser once per
/// piece), `parallel` false so each chunk's gemms run single-threaded; else in order on this
/// thread with one scratch and `parallel` true.
pub(crate) fn per_chunk<O, S, I, F>(out: &mut [O], per: usize, scratch: I, f: F)
where
    O: Send,
    I: Fn() -> S + Sync + Send,
    F: Fn(usize, &mut [O], &mut S, bool) + Sync + Send,
{
    if out.is_empty() || per == 0 {
        return;
    }
    let n = out.len().div_ceil(per);
    if n >= threads() && threads() > 1 {
        out.par_chunks_mut(per)
            .with_min_len(one_piece_per_thread(n))
            .enumerate()
            .for_each_init(scratch, |s, (i, o)| f(i, o, s, false));
    } else {
        let mut s = scratch();
        for (i, o) in out.chunks_mut(per).enumerate() {
            f(i, o, &mut s, true)
        }
    }
}

/// `n` rounded up to a multiple of 16, the f32 lanes of an AVX-512 register: `gemm` copies
/// ("packs") an operand whose extent along its vector dimension is not a multiple before
/// multiplying, so the zoo's kernels pad such matrices with columns of their own instead.
pub(crate) fn lane_padded(n: usize) -> usize {
    n.next_multiple_of(16)
}

/// `Σ` over threads of `f(range, false)`, `0..n` split into one contiguous range per thread and
/// the per-thread results (vectors of `len`) added elementwise: for reductions such as a
/// weight gradient, where each thread accumulates its own items into its own buffer. With fewer
/// items than threads, `f(0..n, true)` runs here alone (`true`: its gemms may go parallel).
pub(crate) fn sum_per_thread<T: Real, F>(n: usize, len: usize, f: F) -> Vec<T>
where
    F: Fn(std::ops::Range<usize>, bool) -> Vec<T> + Sync,
{
    let nt = threads();
    let mut parts: Vec<Vec<T>> = if n >= nt && nt > 1 {
        (0..nt)
            .into_par_iter()
            .map(|t| f(t * n / nt..(t + 1) * n / nt, false))
            .collect()
    } else {
        vec![f(0..n, true)]
    };
    let mut sum = parts.pop().unwrap_or_else(|| vec![T::from_f64(0.0); len]);
    for p in parts {
        for (a, b) in sum.iter_mut().zip(p) {
            *a += b;
        }
    }
    sum
}

/// A row-major matrix view for [`gemm`]: base pointer, row stride and column stride.
#[derive(Clone, Copy)]
pub(crate) struct Mat<T> {
    pub ptr: *const T,
    pub rs: isize,
    pub cs: isize,
}

impl<T> Mat<T> {
    /// A contiguous row-major `(rows, cols)` matrix.
    pub fn rows(data: &[T], cols: usize) -> Self {
        Mat {
            ptr: data.as_ptr(),
            rs: cols as isize,
            cs: 1,
        }
    }
    /// The transpose of a contiguous row-major `(rows, cols)` matrix, seen as `(cols, rows)`.
    pub fn rows_t(data: &[T], cols: usize) -> Self {
        Mat {
            ptr: data.as_ptr(),
            rs: 1,
            cs: cols as isize,
        }
    }
}

/// `dst (m×n, row-major contiguous) (+)= a (m×k) · b (k×n)`.
///
/// Slices are bounds-checked against the extents the strides imply before calling into `gemm`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm<T: Real>(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [T],
    accumulate: bool,
    a: Mat<T>,
    a_len: usize,
    b: Mat<T>,
    b_len: usize,
    parallel: bool,
) {
    assert!(dst.len() >= m * n, "gemm: dst too small");
    // SAFETY: dst is a distinct &mut slice of at least m*n initialised elements.
    unsafe {
        gemm_raw(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            accumulate,
            a,
            a_len,
            b,
            b_len,
            parallel,
        )
    }
}

/// [`gemm`] into uninitialised memory: `dst = a · b`, every element of `dst[..m·n]` written
/// (so the caller need not zero it first).
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_uninit<T: Real>(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [MaybeUninit<T>],
    a: Mat<T>,
    a_len: usize,
    b: Mat<T>,
    b_len: usize,
    parallel: bool,
) {
    assert!(dst.len() >= m * n, "gemm: dst too small");
    // SAFETY: dst is a distinct &mut slice of at least m*n elements; with `accumulate` false
    // it is only written (k = 0 included: `gemm_raw` fills it with zeros).
    unsafe {
        gemm_raw(
            m,
            n,
            k,
            dst.as_mut_ptr().cast(),
            false,
            a,
            a_len,
            b,
            b_len,
            parallel,
        )
    }
}

/// # Safety
/// `dst` must be valid for writes of `m·n` elements (and for reads if `accumulate`), and not
/// alias `a` or `b`.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_raw<T: Real>(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut T,
    accumulate: bool,
    a: Mat<T>,
    a_len: usize,
    b: Mat<T>,
    b_len: usize,
    parallel: bool,
) {
    let extent = |mat: &Mat<T>, r: usize, c: usize| -> usize {
        if r == 0 || c == 0 {
            0
        } else {
            ((r - 1) as isize * mat.rs + (c - 1) as isize * mat.cs) as usize + 1
        }
    };
    assert!(extent(&a, m, k) <= a_len, "gemm: lhs out of bounds");
    assert!(extent(&b, k, n) <= b_len, "gemm: rhs out of bounds");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m * n {
                dst.add(i).write(T::from_f64(0.0));
            }
        }
        return;
    }
    let par = if parallel && threads() > 1 {
        gemm::Parallelism::Rayon(threads())
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: operand extents checked above; dst as the caller guarantees. With `accumulate`
    // false gemm overwrites dst without reading it.
    gemm::gemm(
        m,
        n,
        k,
        dst,
        1,
        n as isize,
        accumulate,
        a.ptr,
        a.cs,
        a.rs,
        b.ptr,
        b.cs,
        b.rs,
        T::from_f64(1.0),
        T::from_f64(1.0),
        false,
        false,
        false,
        par,
    )
}

/// Wrap a finished buffer as CPU storage with its shape.
pub(crate) fn storage<T: Real>(v: Vec<T>, shape: impl Into<Shape>) -> (CpuStorage, Shape) {
    (T::to_cpu_storage_owned(v), shape.into())
}

/// A `len`-element vector filled in parallel, `chunk` elements per task: `f(start, out)` must
/// write every element of `out`, the output's elements `start..start + out.len()`. The vector
/// starts as uninitialised capacity: a zero fill first would be a pass over memory of its own,
/// and collecting a parallel iterator into a vector (rayon's `collect`) does not vectorise.
pub(crate) fn par_fill<T: Send, F>(len: usize, chunk: usize, f: F) -> Vec<T>
where
    F: Fn(usize, &mut [MaybeUninit<T>]) + Sync,
{
    let chunk = chunk.max(1);
    let mut out: Vec<T> = Vec::with_capacity(len);
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(chunk)
        .enumerate()
        .for_each(|(i, o)| f(i * chunk, o));
    // SAFETY: the chunks cover `0..len` and `f` writes every element of the chunk it is given.
    unsafe { out.set_len(len) };
    out
}

/// [`par_fill`] for kernels that accumulate: each chunk is zeroed (in parallel, while it is in
/// cache) before `f(start, chunk)` adds into it.
pub(crate) fn par_zeroed<T: Real, F>(len: usize, chunk: usize, f: F) -> Vec<T>
where
    F: Fn(usize, &mut [T]) + Sync,
{
    par_fill(len, chunk, |start, out| {
        for v in out.iter_mut() {
            v.write(T::from_f64(0.0));
        }
        // SAFETY: every element of `out` was initialised just above.
        let init = unsafe { &mut *(out as *mut [MaybeUninit<T>] as *mut [T]) };
        f(start, init)
    })
}
