//! Process start-up (environment, logging, second-order self-test) and device choice. The
//! validated experiment set-up every binary goes through is in [`crate::experiment`].

use std::io::{IsTerminal, Write};
use std::sync::OnceLock;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Var};
use indicatif::MultiProgress;

/// Pick the device: CUDA if compiled in and present, else Metal if compiled in and present, else
/// the CPU. `cpu = true` (the `--cpu` flag) forces the CPU. As in candle-examples.
pub fn device(cpu: bool) -> Result<Device> {
    if cpu {
        return Ok(Device::Cpu);
    }
    if candle_core::utils::cuda_is_available() {
        return Device::new_cuda(0).context("CUDA is compiled in but device 0 could not be opened");
    }
    if candle_core::utils::metal_is_available() {
        return Device::new_metal(0)
            .context("Metal is compiled in but device 0 could not be opened");
    }
    #[cfg(all(target_os = "macos", target_arch = "aarch64"))]
    tracing::info!("running on CPU; build with `--features metal` to use the GPU");
    #[cfg(not(all(target_os = "macos", target_arch = "aarch64")))]
    tracing::info!("running on CPU; build with `--features cuda` to use an NVIDIA GPU");
    Ok(Device::Cpu)
}

/// The progress bars of this process; log lines are printed "through" it so that they do not
/// tear the bars (see [`init_process`]).
pub(crate) fn progress() -> &'static MultiProgress {
    static P: OnceLock<MultiProgress> = OnceLock::new();
    P.get_or_init(MultiProgress::new)
}

/// Log writer that hides the progress bars while a line is printed.
struct SuspendingStderr;

impl Write for SuspendingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        progress().suspend(|| std::io::stderr().write_all(buf))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Value of `--flag V` or `--flag=V` in the raw process arguments.
fn peek_flag(args: &[String], flag: &str) -> Option<String> {
    let eq = format!("{flag}=");
    args.iter().enumerate().find_map(|(i, a)| {
        if a == flag {
            args.get(i + 1).cloned()
        } else {
            a.strip_prefix(&eq).map(str::to_owned)
        }
    })
}

/// Process start-up. **Call it as the first statement of `main`**, before parsing arguments,
/// spawning threads or touching a tensor.
///
/// 1. Reads `--jobs N`, `--threads N` and `--hf-home DIR` from the raw arguments (thread pools
///    are sized once, at first use, so this cannot wait for clap; clap still parses and
///    validates the flags), exports `HF_HOME`, then calls [`zoo_models::init_with`]: it exports
///    `RAYON_NUM_THREADS` (candle's pools follow it), sizes candle's elementwise pool (no
///    spinning, and no workers with `--jobs N`, N > 1, or on at most 4 cores), keeps freed
///    buffers mapped, builds rayon's pool with threads that run first-order backward passes
///    without keeping gradient graphs (and fallback workers, one per `--jobs`), and sets
///    `CANDLE_GRAD_DO_NOT_DETACH=1`, without which every second-order gradient (L2RW, MWN,
///    MLNT meta-steps) is silently wrong. Setting environment variables is only sound while the
///    process has a single thread, hence "first statement".
/// 2. Installs the tracing subscriber (`RUST_LOG`, default `info`) writing to stderr without
///    tearing progress bars, in colour only when stderr is a terminal.
/// 3. Runs [`second_order_self_test`]; on failure prints the reason and exits with status 2, since
///    training on would produce wrong numbers without any error.
///
/// # Safety
///
/// It sets environment variables (`std::env::set_var`), which is sound only while no other thread
/// can read or write the environment: call it as the first statement of `main`, before anything
/// starts a thread.
pub unsafe fn init_process() {
    let args: Vec<String> = std::env::args().collect();
    let jobs = peek_flag(&args, "--jobs")
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(1)
        .clamp(1, 64);
    let threads = peek_flag(&args, "--threads").and_then(|n| n.parse::<usize>().ok());
    if let Some(dir) = peek_flag(&args, "--hf-home") {
        std::env::set_var("HF_HOME", dir);
    }
    // SAFETY: our caller guarantees the process still has a single thread (see # Safety).
    unsafe { zoo_models::init_with(&zoo_models::InitOptions { jobs, threads }) };
    // Fix the recorded git revision to the code this process started from.
    let _ = crate::results::git_revision();
    let filter = tracing_subscriber::EnvFilter::builder()
        .with_default_directive(tracing_subscriber::filter::LevelFilter::INFO.into())
        .from_env_lossy();
    // A second call (tests) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| SuspendingStderr)
        // Colour only on a terminal: logs redirected to a file must be plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
    if let Err(e) = second_order_self_test() {
        eprintln!("error: {e:#}");
        std::process::exit(2);
    }
}

/// Checks that candle keeps second-order gradients on this thread: d²(x⁴)/dx² at x = 1 must be
/// 12 (d/dx = 4x³ = 4, d² = 12x² = 12). With gradients detached the second backward finds no path
/// to x (or a wrong value), which would make every meta-gradient silently wrong.
pub fn second_order_self_test() -> Result<()> {
    let x = Var::new(&[1.0f64], &Device::Cpu)?;
    let x2 = x.as_tensor().sqr()?;
    let y = x2.sqr()?.sum_all()?;
    let g = y.backward()?;
    let dx = g
        .get(x.as_tensor())
        .context("self-test: no first-order gradient")?
        .sum_all()?;
    let d1 = dx.to_scalar::<f64>()?;
    let dd = dx.backward()?;
    let d2 = match dd.get(x.as_tensor()) {
        Some(t) => t.sum_all()?.to_scalar::<f64>()?,
        None => f64::NAN,
    };
    if (d1 - 4.0).abs() > 1e-12 || (d2 - 12.0).abs() > 1e-12 {
        bail!(
            "second-order gradients are missing (d/dx x^4 at 1 = {d1}, expected 4; d2/dx2 = {d2}, \
             expected 12). CANDLE_GRAD_DO_NOT_DETACH=1 must be set before this thread's first \
             backward pass: call zoo::init_process() first in main, or run through cargo, whose \
             .cargo/config.toml sets it"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peeks_flags() {
        let a: Vec<String> = ["b", "--threads", "3", "--hf-home=/x"]
            .map(String::from)
            .to_vec();
        assert_eq!(peek_flag(&a, "--threads").as_deref(), Some("3"));
        assert_eq!(peek_flag(&a, "--hf-home").as_deref(), Some("/x"));
        assert_eq!(peek_flag(&a, "--cpu"), None);
    }

    #[test]
    fn cpu_flag_forces_cpu() {
        assert!(device(true).unwrap().is_cpu());
    }
}
