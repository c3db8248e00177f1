//! Decode throughput: all of MNIST train (60k PNG, from the hub cache) and CIFAR-10 train (50k JPEG,
//! from the local copy) into memory as u8, timed end to end (parquet read + parallel decode).
//!
//! `cargo bench -p zoo-data --bench decode`. Reads `HF_HOME` (default `../shared/hf`).
//! Besides wall-clock images/s it prints images per CPU-second (process user+system time), which
//! stays meaningful when other work shares the cores; ×cores is the throughput on idle cores.

use arrow_array::cast::AsArray;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::path::{Path, PathBuf};
use std::time::Instant;
use zoo_data::parquet_io::{decode_image_chw, decode_image_chw_generic};
use zoo_data::{load, DataSource, Split};

/// Process CPU time (user + system) in seconds, from /proc (Linux); None elsewhere.
fn cpu_seconds() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0) // USER_HZ is 100 on Linux
}

fn jpeg_bytes(path: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let r = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path)?)?.build()?;
    let mut out = Vec::new();
    for b in r {
        let b = b?;
        let st = b.column_by_name("img").expect("img column").as_struct();
        let bytes = st
            .column_by_name("bytes")
            .expect("bytes field")
            .as_binary::<i32>();
        out.extend(bytes.iter().map(|x| x.expect("non-null").to_vec()));
    }
    Ok(out)
}

fn main() -> anyhow::Result<()> {
    let shared = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared"));
    if std::env::var_os("HF_HOME").is_none() {
        std::env::set_var("HF_HOME", shared.join("hf"));
    }
    let threads = rayon::current_num_threads();
    let load_avg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "decode benchmark: {threads} rayon threads, {} logical CPUs, load average {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        load_avg
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let cifar_dir = shared.join("data/cifar10-jpeg");
    let cases = [
        ("mnist", DataSource::Hub),
        ("cifar10", DataSource::Dir(cifar_dir.clone())),
    ];
    for (name, src) in cases {
        // One warm-up load (page cache, thread pool), then the best of 3 timed loads.
        let ds = load(name, Split::Train, &src)?;
        let (mut best, mut best_cpu) = (f64::INFINITY, f64::INFINITY);
        for _ in 0..3 {
            let (t, c0) = (Instant::now(), cpu_seconds());
            let ds2 = load(name, Split::Train, &src)?;
            best = best.min(t.elapsed().as_secs_f64());
            if let (Some(a), Some(b)) = (c0, cpu_seconds()) {
                best_cpu = best_cpu.min(b - a);
            }
            assert_eq!(ds2.len(), ds.len());
        }
        let n = ds.len() as f64;
        println!(
            "{name:8} train: {} images {}x{}x{}: {:.3} s wall (best of 3) = {:.0} images/s; \
             {:.3} CPU-s = {:.0} images per CPU-second (x{threads} = {:.0} images/s on idle cores)",
            ds.len(),
            ds.channels,
            ds.height,
            ds.width,
            best,
            n / best,
            best_cpu,
            n / best_cpu,
            threads as f64 * n / best_cpu
        );
    }
    // Single-thread JPEG decode only: the zune-jpeg fast path against image::load_from_memory.
    let jpegs = jpeg_bytes(&cifar_dir.join("plain_text/train-00000-of-00001.parquet"))?;
    let mut out = vec![0u8; 3 * 32 * 32];
    for (label, generic) in [
        ("fast (zune-jpeg direct)", false),
        ("generic (image crate)", true),
    ] {
        let t = Instant::now();
        for b in &jpegs {
            if generic {
                decode_image_chw_generic(b, 3, 32, 32, &mut out)?;
            } else {
                decode_image_chw(b, 3, 32, 32, &mut out)?;
            }
        }
        let s = t.elapsed().as_secs_f64();
        println!(
            "cifar10 JPEG decode only, 1 thread, {label}: {:.0} images/s",
            jpegs.len() as f64 / s
        );
    }
    Ok(())
}
