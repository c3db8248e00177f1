//! Kang et al. (2020), *Decoupling Representation and Classifier for Long-Tailed Recognition*:
//! joint training with instance-balanced, class-balanced, square-root and progressively balanced
//! sampling, then NCM, cRT, τ-norm and LWS on the frozen representation; many/medium/few-shot
//! accuracy; classifier weight norms (Fig. 2) and per-class accuracy against class size.
//!
//! ```text
//! cargo run --release --bin decouple -- --preset cpu      # CIFAR-10 from the hub
//! cargo run --release --bin decouple -- --preset cpu --data-dir ../shared/data/cifar10-jpeg
//! cargo run --release --bin decouple -- --preset smoke --out /tmp/decouple --data-dir DIR
//! cargo run --release --bin decouple -- --preset paper --settings cifar10:100,cifar100:100 --features cuda
//! cargo run --release --bin decouple -- --preset paper --settings imagenet_lt \
//!     --lt-images /data/imagenet --lt-lists /data/ImageNet_LT --features cuda
//! ```
//!
//! Writes `results/decouple/<preset>/`: `config.json`, `summary.md`/`summary.json`, `grid.md`
//! (sampler × classifier), `results.json`, `diagnostics.json`, SVG plots, and per-run logs under
//! `seed_<s>/<setting>/<sampler>/`.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Parser;
use zoo::cli::{CommonArgs, ExperimentConfig};
use zoo::decouple::{DataSpec, DecoupleConfig, Net, Sampling, Setting};
use zoo::plan::PlanArgs;

/// Decoupling representation and classifier for long-tailed recognition (Kang et al. 2020).
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    plan: PlanArgs,
    /// Settings to run instead of the preset's, comma-separated: `cifar10:IF`, `cifar100:IF`
    /// (imbalance factor, e.g. 10, 50, 100, 200), `imagenet_lt`, `places_lt`.
    #[arg(long, value_delimiter = ',')]
    settings: Option<Vec<String>>,
    /// Stage-1 samplers (comma-separated); the first is the representation of the stage-2 rows.
    #[arg(long, value_enum, value_delimiter = ',')]
    samplers: Option<Vec<Sampling>>,
    /// Seeds for the samplers after the first (default: the preset's).
    #[arg(long)]
    other_sampler_seeds: Option<usize>,
    /// Stage-1 epochs.
    #[arg(long)]
    epochs: Option<usize>,
    /// Stage-2 epochs (cRT and LWS).
    #[arg(long)]
    stage2_epochs: Option<usize>,
    /// Directory of the original ImageNet / Places images the split lists refer to.
    #[arg(long, value_name = "DIR")]
    lt_images: Option<PathBuf>,
    /// Directory holding the published split lists (`ImageNet_LT_train.txt`, …).
    #[arg(long, value_name = "DIR")]
    lt_lists: Option<PathBuf>,
}

fn parse_setting(token: &str, template: &DecoupleConfig) -> Result<Setting> {
    let t = token.trim().to_ascii_lowercase();
    if let Some((ds, f)) = t.split_once(':') {
        if ds != "cifar10" && ds != "cifar100" {
            bail!("--settings {token:?}: expected cifar10:IF or cifar100:IF");
        }
        let f: f64 = f
            .parse()
            .ok()
            .filter(|x: &f64| x.is_finite() && *x >= 1.0)
            .ok_or_else(|| {
                anyhow::anyhow!("--settings {token:?}: imbalance factor must be >= 1")
            })?;
        // The preset's CIFAR recipe (network, epochs) with another dataset or factor.
        let mut s = template
            .settings
            .iter()
            .find(|s| matches!(s.data, DataSpec::CifarLt { .. }))
            .cloned()
            .unwrap_or_else(|| Setting::cifar_lt(ds, f));
        let dir = match &s.data {
            DataSpec::CifarLt { data_dir, .. } if ds == "cifar10" => data_dir.clone(),
            _ => None,
        };
        s.data = DataSpec::CifarLt {
            dataset: ds.to_string(),
            imbalance_factor: f,
            data_dir: dir,
        };
        return Ok(s);
    }
    let mut s = Setting::imagenet_lt();
    match t.as_str() {
        "imagenet_lt" => {}
        "places_lt" => {
            if let DataSpec::ListLt { name, .. } = &mut s.data {
                *name = "Places_LT".into();
            }
            s.net = Net::ResNeXt50;
        }
        _ => bail!(
            "--settings {token:?}: expected cifar10:IF, cifar100:IF, imagenet_lt or places_lt"
        ),
    }
    Ok(s)
}

fn apply(cfg: &mut DecoupleConfig, a: &Args) -> Result<()> {
    if let Some(list) = &a.settings {
        let template = cfg.clone();
        cfg.settings = list
            .iter()
            .map(|t| parse_setting(t, &template))
            .collect::<Result<_>>()?;
    }
    for s in &mut cfg.settings {
        if let Some(v) = &a.samplers {
            s.stage1.samplers = v.clone();
        }
        if let Some(v) = a.other_sampler_seeds {
            s.stage1.other_sampler_seeds = Some(v);
        }
        if let Some(v) = a.epochs {
            s.stage1.epochs = v;
            if s.stage1.warmup_epochs >= v {
                s.stage1.warmup_epochs = 0;
            }
        }
        if let Some(v) = a.stage2_epochs {
            s.stage2.epochs = v;
        }
        if let DataSpec::ListLt {
            image_root,
            list_dir,
            ..
        } = &mut s.data
        {
            if let Some(d) = &a.lt_images {
                *image_root = d.clone();
            }
            if let Some(d) = &a.lt_lists {
                *list_dir = d.clone();
            }
        }
    }
    // --data-dir is recorded in the config, so that config.json says which copy was read.
    for s in &mut cfg.settings {
        if let (DataSpec::CifarLt { data_dir, .. }, Some(d)) = (&mut s.data, &a.common.data_dir) {
            *data_dir = Some(d.clone());
        }
    }
    for (flag, d) in [("--lt-images", &a.lt_images), ("--lt-lists", &a.lt_lists)] {
        if let Some(d) = d {
            if !d.is_dir() {
                bail!("{flag} {}: not a directory", d.display());
            }
        }
    }
    Ok(())
}

fn main() -> Result<()> {
    // SAFETY: the first statement of main, before any thread starts.
    unsafe { zoo::init_process() };
    let args = Args::parse();
    let mut cfg = DecoupleConfig::preset(args.common.preset);
    apply(&mut cfg, &args)?;
    if args.plan.list_runs {
        return zoo::plan::list_runs("decouple", &args.common, cfg, zoo::decouple::plan);
    }
    let exp = zoo::plan::setup("decouple", &args.common, cfg, &args.plan)?;
    if let Some(summary) = zoo::decouple::drive(&exp, &args.plan)? {
        println!("{}", summary.table_markdown());
    }
    Ok(())
}
