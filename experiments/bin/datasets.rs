//! `datasets`: inspect what an experiment will train on.
//!
//! `datasets info NAME [--json]` prints rows, classes, per-class counts, image shape and where the
//! files were read from; `datasets preview NAME --out grid.png` writes a labelled image grid. Both
//! apply `--imbalance` then `--noise` (the order the experiments use) with one rng seeded by `--seed`.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use zoo_data::corrupt::{Corrupted, ImbalanceSpec, NoiseSpec};
use zoo_data::{load, spec, DataSource, ImageDataset, Split};

#[derive(Parser)]
#[command(
    name = "datasets",
    about = "Inspect the zoo's datasets, with label noise and imbalance applied"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Rows, classes, per-class counts, image shape and source.
    Info {
        #[command(flatten)]
        common: Common,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Write a PNG grid of the first images with their labels (noisy label red, clean one green).
    Preview {
        #[command(flatten)]
        common: Common,
        /// Output PNG file (written atomically).
        #[arg(long)]
        out: PathBuf,
        /// Number of images.
        #[arg(long, default_value_t = 64)]
        count: usize,
        /// Images per grid row.
        #[arg(long, default_value_t = 8)]
        cols: usize,
        /// Magnification.
        #[arg(long, default_value_t = 3)]
        scale: usize,
    },
}

#[derive(Args)]
struct Common {
    /// mnist, fashion_mnist, cifar10, cifar100 or cifar100_coarse.
    name: String,
    /// train or test.
    #[arg(long, default_value = "train")]
    split: Split,
    /// Label noise: none, uniform:R, uniform_any:R, pair:R, background:R (or background:R:CLASS), asym:R.
    #[arg(long, default_value = "none")]
    noise: NoiseSpec,
    /// Class imbalance: none, longtail:IF, step:RHO.
    #[arg(long, default_value = "none")]
    imbalance: ImbalanceSpec,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Read parquet files from DIR/(the repo-relative path) instead of the hub cache.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Hugging Face cache root (sets HF_HOME).
    #[arg(long)]
    hf_home: Option<PathBuf>,
}

struct Prepared {
    ds: ImageDataset,
    /// Labels before noise, for the rows kept after imbalance.
    clean: Vec<u32>,
    noise: Corrupted,
    full_rows: usize,
}

fn prepare(c: &Common) -> Result<Prepared> {
    // Validate everything before reading any file.
    let sp = spec(&c.name)?;
    c.noise.validate_for_dataset(sp.name, sp.num_classes())?;
    if let Some(h) = &c.hf_home {
        std::env::set_var("HF_HOME", h);
    }
    let ds = load(
        &c.name,
        c.split,
        &DataSource::from_option(c.data_dir.clone()),
    )?;
    let full_rows = ds.len();
    let mut rng = StdRng::seed_from_u64(c.seed);
    let ds = match c.imbalance {
        ImbalanceSpec::None => ds,
        ref imb => {
            let idx = imb.indices(&ds.labels, ds.num_classes, &mut rng)?;
            ds.subset(&idx)
        }
    };
    let clean = ds.labels.clone();
    let noise = c.noise.apply(&clean, ds.num_classes, &mut rng)?;
    let ds = ds.with_labels(noise.labels.clone());
    Ok(Prepared {
        ds,
        clean,
        noise,
        full_rows,
    })
}

fn info(c: &Common, json: bool) -> Result<()> {
    let p = prepare(c)?;
    let ds = &p.ds;
    let counts = ds.class_counts();
    let clean_counts = zoo_data::class_counts(&p.clean, ds.num_classes);
    if json {
        let classes: Vec<_> = (0..ds.num_classes)
            .map(|k| serde_json::json!({"label": k, "name": ds.class_names[k], "count": counts[k], "clean_count": clean_counts[k]}))
            .collect();
        let v = serde_json::json!({
            "dataset": ds.name, "split": c.split, "rows": ds.len(), "rows_before_imbalance": p.full_rows,
            "num_classes": ds.num_classes, "image_shape": [ds.channels, ds.height, ds.width],
            "source": ds.source, "seed": c.seed,
            "imbalance": c.imbalance.to_string(), "noise": c.noise.to_string(),
            "noisy_labels": p.noise.num_changed(), "realised_noise_rate": p.noise.realised_rate(),
            "classes": classes,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let s = &ds.source;
    println!("dataset    {} ({})", ds.name, c.split);
    match s.kind.as_str() {
        "hub" => println!(
            "source     hub dataset {} @ {}{}",
            s.repo,
            s.revision,
            s.commit
                .as_ref()
                .map(|c| format!(" (commit {c})"))
                .unwrap_or_default()
        ),
        _ => println!(
            "source     local directory in the layout of hub dataset {}",
            s.repo
        ),
    }
    for (f, path) in s.files.iter().zip(&s.paths) {
        println!("file       {f} -> {}", path.display());
    }
    println!(
        "image      {}x{}x{} (C x H x W), u8, RGB channel order",
        ds.channels, ds.height, ds.width
    );
    println!("classes    {}", ds.num_classes);
    if c.imbalance != ImbalanceSpec::None {
        println!(
            "imbalance  {} (seed {}): {} of {} rows kept",
            c.imbalance,
            c.seed,
            ds.len(),
            p.full_rows
        );
    }
    println!("rows       {}", ds.len());
    if c.noise != NoiseSpec::None {
        println!(
            "noise      {} (seed {}): {} of {} labels changed, realised noise rate {:.4}",
            c.noise,
            c.seed,
            p.noise.num_changed(),
            ds.len(),
            p.noise.realised_rate()
        );
    }
    let noisy = c.noise != NoiseSpec::None;
    println!(
        "per-class counts{}:",
        if noisy {
            " (noisy labels; clean in brackets)"
        } else {
            ""
        }
    );
    for k in 0..ds.num_classes {
        let extra = if noisy {
            format!(" [{}]", clean_counts[k])
        } else {
            String::new()
        };
        println!("  {k:>3} {:<32} {:>6}{extra}", ds.class_names[k], counts[k]);
    }
    Ok(())
}

fn preview(c: &Common, out: &Path, count: usize, cols: usize, scale: usize) -> Result<()> {
    if count == 0 || cols == 0 || scale == 0 || scale > 16 {
        bail!("--count and --cols must be positive and --scale in 1..=16");
    }
    if out
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.eq_ignore_ascii_case("png"))
        != Some(true)
    {
        bail!("--out {} must name a .png file", out.display());
    }
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.is_dir() {
            bail!(
                "--out {}: folder {} does not exist",
                out.display(),
                dir.display()
            );
        }
    }
    let p = prepare(c)?;
    let idx: Vec<usize> = (0..count.min(p.ds.len())).collect();
    let png = zoo_data::preview::grid_png(&p.ds, &idx, Some(&p.clean), cols, scale)?;
    zoo_data::preview::write_atomic(out, &png)
        .with_context(|| format!("writing {}", out.display()))?;
    println!(
        "wrote {} ({} images of {} {}, {cols} per row; label under each image, red = noisy label with the clean one in green)",
        out.display(),
        idx.len(),
        p.ds.name,
        c.split
    );
    for row in idx.chunks(cols) {
        let cells: Vec<String> = row
            .iter()
            .map(|&i| {
                let l = p.ds.labels[i] as usize;
                if p.noise.changed[i] {
                    format!("{l}:{}(clean {})", p.ds.class_names[l], p.clean[i])
                } else {
                    format!("{l}:{}", p.ds.class_names[l])
                }
            })
            .collect();
        println!("  {}", cells.join("  "));
    }
    if c.noise != NoiseSpec::None {
        println!(
            "realised noise rate {:.4} ({} of {} labels changed)",
            p.noise.realised_rate(),
            p.noise.num_changed(),
            p.ds.len()
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let res = match &cli.cmd {
        Cmd::Info { common, json } => info(common, *json),
        Cmd::Preview {
            common,
            out,
            count,
            cols,
            scale,
        } => preview(common, out, *count, *cols, *scale),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
