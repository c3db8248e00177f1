//! Which implementation the ops use: a value scoped to a thread, not a process-wide switch.
//!
//! Two trainings in one process (two tests, or a test comparing the paths) each choose their own
//! backend: [`with_backend`] (or a [`BackendScope`]) sets it for the calling thread until the
//! scope ends. Threads that run a training's work on its behalf must be given the value (the
//! experiment runner's side-by-side jobs do; backward passes need not, see [`Backend`]).

use candle_core::Device;
use serde::{Deserialize, Serialize};
use std::cell::Cell;
use std::fmt;
use std::str::FromStr;

/// An implementation of the ops.
///
/// `Candle` is what a CUDA or Metal device always runs (the fast path is CPU-only), so running it
/// on the CPU tests the exact op sequence a GPU runs. A backward pass needs no backend: each
/// path's graph holds its own ops, whichever thread walks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// candle's own ops (with exact max pooling and PyTorch's ReLU gradient at 0); the only
    /// implementation on CUDA and Metal.
    Candle,
    /// im2col/gemm/Winograd custom ops with differentiable backwards (CPU tensors only; other
    /// devices fall back to `Candle`).
    #[default]
    Fast,
}

impl Backend {
    /// Both backends, fast first.
    pub const ALL: [Backend; 2] = [Backend::Fast, Backend::Candle];

    /// The default for tensors on `device`: the fast path on the CPU, candle's ops elsewhere.
    pub fn default_for(device: &Device) -> Self {
        if device.is_cpu() {
            Backend::Fast
        } else {
            Backend::Candle
        }
    }

    /// What actually runs on `device` when this backend is selected (`Fast` is CPU-only).
    pub fn effective_on(self, device: &Device) -> Self {
        if device.is_cpu() {
            self
        } else {
            Backend::Candle
        }
    }

    /// The lowercase name used by `--backend` and in `config.json`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Candle => "candle",
            Backend::Fast => "fast",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "fast" => Ok(Backend::Fast),
            "candle" => Ok(Backend::Candle),
            _ => Err(format!("unknown backend {s:?} (expected fast or candle)")),
        }
    }
}

thread_local! {
    static CURRENT: Cell<Backend> = const { Cell::new(Backend::Fast) };
}

/// The backend selected on this thread ([`Backend::Fast`] unless a scope says otherwise).
pub fn backend() -> Backend {
    CURRENT.with(|c| c.get())
}

/// Selects `b` on this thread until it is changed again. Prefer [`with_backend`] or
/// [`BackendScope`], which restore the previous value.
pub fn set_backend(b: Backend) {
    CURRENT.with(|c| c.set(b));
}

/// While alive, the ops on this thread use the given backend; the previous one comes back on
/// drop.
#[must_use = "the backend reverts when the scope is dropped"]
pub struct BackendScope(Backend);

impl BackendScope {
    /// Selects `b` on this thread for the scope's lifetime.
    pub fn new(b: Backend) -> Self {
        Self(CURRENT.with(|c| c.replace(b)))
    }
}

impl Drop for BackendScope {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.0));
    }
}

/// `f()` with the ops on this thread using `b`.
pub fn with_backend<R>(b: Backend, f: impl FnOnce() -> R) -> R {
    let _scope = BackendScope::new(b);
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_nest_restore_and_stay_on_their_thread() {
        assert_eq!(backend(), Backend::Fast);
        with_backend(Backend::Candle, || {
            assert_eq!(backend(), Backend::Candle);
            // Another thread keeps its own (default) value.
            let other = std::thread::spawn(backend).join().unwrap();
            assert_eq!(other, Backend::Fast);
            with_backend(Backend::Fast, || assert_eq!(backend(), Backend::Fast));
            assert_eq!(backend(), Backend::Candle);
        });
        assert_eq!(backend(), Backend::Fast);
    }

    #[test]
    fn names_parse_and_devices_choose() {
        for b in Backend::ALL {
            assert_eq!(b.name().parse::<Backend>().unwrap(), b);
            assert_eq!(
                serde_json::to_value(b).unwrap(),
                serde_json::json!(b.name())
            );
        }
        assert!("gpu".parse::<Backend>().is_err());
        assert_eq!(Backend::default_for(&Device::Cpu), Backend::Fast);
        assert_eq!(Backend::Candle.effective_on(&Device::Cpu), Backend::Candle);
    }
}
