//! `--dry-run` (every binary, through [`CommonArgs`](crate::CommonArgs)): the resolved
//! configuration, the training runs and steps it makes, and its projected wall time on this
//! device from a few timed steps of each kind of step on synthetic inputs of the dataset's shape.
//! Nothing is trained or written, no dataset is read: it answers "how long would the paper
//! preset take on this GPU?" in seconds.
//!
//! A binary gets it by implementing [`DryRun`] for its config and returning
//! [`report`] from [`ExperimentConfig::dry_run`](crate::ExperimentConfig::dry_run);
//! [`Experiment::setup`](crate::Experiment::setup) prints it and ends the process before any
//! work.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Instant;

use anyhow::Result;
use candle_core::Device;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use zoo_data::{ImageDataset, SourceInfo};

/// One training run of an invocation: its steps, by kind of step (a kind is timed once).
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedRun<K> {
    /// The part of the experiment it belongs to (`mnist`, `noise`, …), for `--parts` filters.
    pub part: String,
    /// What it is, e.g. `p=0.995 seed 0 l2rw`.
    pub label: String,
    /// Its steps: `(kind, count)`; e.g. a plain warm-up, then the weighted steps.
    pub steps: Vec<(K, usize)>,
}

impl<K> PlannedRun<K> {
    /// Every optimisation step of the run.
    pub fn total_steps(&self) -> usize {
        self.steps.iter().map(|(_, n)| n).sum()
    }
}

/// What a binary's configuration tells a dry run.
pub trait DryRun {
    /// A kind of training step (a network, a batch, a method): steps of one kind cost the same.
    type Kind: Ord + Clone + fmt::Display;
    /// Every training run the configuration makes with `seeds`, in order.
    fn plan(&self, seeds: &[u64]) -> Result<Vec<PlannedRun<Self::Kind>>>;
    /// Seconds per step of `kind` on `device`, timed on synthetic inputs (see [`time_rounds`]).
    fn time_steps(&self, kind: &Self::Kind, device: &Device) -> Result<f64>;
    /// Runs trained side by side (`--jobs`).
    fn jobs(&self) -> usize {
        1
    }
}

/// What [`ExperimentConfig::dry_run`](crate::ExperimentConfig::dry_run) is given.
#[derive(Debug, Clone)]
pub struct DryRunArgs<'a> {
    /// The seeds that would run.
    pub seeds: &'a [u64],
    /// Where the steps are timed.
    pub device: &'a Device,
    /// The parts this invocation runs, for binaries whose parts are a flag outside the
    /// configuration (`mwn --parts`); `None`: every part the plan lists.
    pub parts: Option<&'a [String]>,
}

/// The dry run's report: one line per kind of step (its time per step here), per part the runs
/// and steps, and the projected wall time (training steps only; evaluation is not counted).
pub fn report<D: DryRun + ?Sized>(d: &D, args: &DryRunArgs) -> Result<String> {
    let runs = d.plan(args.seeds)?;
    let runs: Vec<_> = match args.parts {
        Some(parts) => runs
            .into_iter()
            .filter(|r| parts.contains(&r.part))
            .collect(),
        None => runs,
    };
    let mut per_kind: BTreeMap<D::Kind, usize> = BTreeMap::new();
    for r in &runs {
        for (k, n) in &r.steps {
            *per_kind.entry(k.clone()).or_default() += n;
        }
    }
    let mut s = format!(
        "Dry run on {:?} ({} backend): nothing is trained or written.\n\nstep times (timed here \
         on synthetic inputs of the datasets' shapes):\n",
        args.device,
        zoo_models::ops::backend()
    );
    let mut secs: BTreeMap<D::Kind, f64> = BTreeMap::new();
    for (k, n) in &per_kind {
        let t = d.time_steps(k, args.device)?;
        s.push_str(&format!(
            "  {k}: {:.1} ms/step × {n} steps = {}\n",
            1e3 * t,
            hms(t * *n as f64)
        ));
        secs.insert(k.clone(), t);
    }
    let mut parts: Vec<&str> = Vec::new();
    for r in &runs {
        if !parts.contains(&r.part.as_str()) {
            parts.push(&r.part);
        }
    }
    let run_secs =
        |r: &PlannedRun<D::Kind>| -> f64 { r.steps.iter().map(|(k, n)| secs[k] * *n as f64).sum() };
    s.push_str("\nruns:\n");
    let mut total = 0.0;
    for part in parts {
        let mine: Vec<_> = runs.iter().filter(|r| r.part == part).collect();
        let steps: usize = mine.iter().map(|r| r.total_steps()).sum();
        let t: f64 = mine.iter().map(|r| run_secs(r)).sum();
        s.push_str(&format!(
            "  {part}: {} runs, {steps} steps, {}\n",
            mine.len(),
            hms(t)
        ));
        for r in mine {
            s.push_str(&format!(
                "    {}: {} steps, {}\n",
                r.label,
                r.total_steps(),
                hms(run_secs(r))
            ));
        }
        total += t;
    }
    let steps: usize = runs.iter().map(|r| r.total_steps()).sum();
    s.push_str(&format!(
        "\n{} runs, {steps} steps: projected wall time {} one run at a time (training steps \
         only; evaluation not counted)",
        runs.len(),
        hms(total)
    ));
    let jobs = d.jobs();
    if jobs > 1 {
        s.push_str(&format!(
            "; with --jobs {jobs} at best {} when the device has room for {jobs} runs",
            hms(total / jobs as f64)
        ));
    }
    s.push('\n');
    Ok(s)
}

/// Seconds per step: `round` (which trains some steps and returns how many) once to warm up
/// (allocations, kernels, autotuning), then timed rounds until about a second has passed
/// (at least one, at most five rounds).
pub fn time_rounds(mut round: impl FnMut() -> Result<usize>, device: &Device) -> Result<f64> {
    round()?;
    device.synchronize()?;
    let start = Instant::now();
    let (mut steps, mut rounds) = (0usize, 0usize);
    while rounds == 0 || (rounds < 5 && start.elapsed().as_secs_f64() < 1.0) {
        steps += round()?;
        device.synchronize()?;
        rounds += 1;
    }
    Ok(start.elapsed().as_secs_f64() / steps.max(1) as f64)
}

/// `n` random images of registered dataset `dataset`'s shape (no file is read), labels cycling
/// through `classes` (the dataset's classes when `None`).
pub fn synthetic_images(
    dataset: &str,
    n: usize,
    classes: Option<usize>,
    seed: u64,
) -> Result<ImageDataset> {
    let spec = zoo_data::spec(dataset)?;
    let nc = classes.unwrap_or(spec.num_classes()).max(1);
    let mut rng = StdRng::seed_from_u64(seed);
    Ok(ImageDataset {
        name: dataset.to_string(),
        images: (0..n * spec.channels * spec.height * spec.width)
            .map(|_| rng.random())
            .collect(),
        labels: (0..n).map(|i| (i % nc) as u32).collect(),
        channels: spec.channels,
        height: spec.height,
        width: spec.width,
        num_classes: nc,
        class_names: (0..nc).map(|c| c.to_string()).collect(),
        source: SourceInfo {
            kind: "synthetic".into(),
            repo: spec.repo.into(),
            revision: String::new(),
            commit: None,
            files: Vec::new(),
            paths: Vec::new(),
        },
    })
}

/// `1 h 02 min`, `3 min 05 s`, `12 s`, `0.4 s`.
pub fn hms(seconds: f64) -> String {
    if seconds < 10.0 {
        return format!("{seconds:.1} s");
    }
    let s = seconds.round() as u64;
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, sec) => format!("{sec} s"),
        (0, m, sec) => format!("{m} min {sec:02} s"),
        (h, m, _) => format!("{h} h {m:02} min"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Two;

    impl DryRun for Two {
        type Kind = &'static str;
        fn plan(&self, seeds: &[u64]) -> Result<Vec<PlannedRun<&'static str>>> {
            Ok(seeds
                .iter()
                .flat_map(|s| {
                    [
                        PlannedRun {
                            part: "a".into(),
                            label: format!("seed {s} plain"),
                            steps: vec![("plain", 10)],
                        },
                        PlannedRun {
                            part: "b".into(),
                            label: format!("seed {s} meta"),
                            steps: vec![("plain", 5), ("meta", 5)],
                        },
                    ]
                })
                .collect())
        }
        fn time_steps(&self, kind: &&'static str, _: &Device) -> Result<f64> {
            Ok(if *kind == "meta" { 3.0 } else { 1.0 })
        }
    }

    #[test]
    fn the_report_adds_up_steps_and_time_per_part() {
        let args = DryRunArgs {
            seeds: &[0, 1],
            device: &Device::Cpu,
            parts: None,
        };
        let r = report(&Two, &args).unwrap();
        assert!(r.contains("plain: 1000.0 ms/step × 30 steps = 30 s"), "{r}");
        assert!(r.contains("meta: 3000.0 ms/step × 10 steps = 30 s"), "{r}");
        assert!(r.contains("a: 2 runs, 20 steps, 20 s"), "{r}");
        assert!(r.contains("b: 2 runs, 20 steps, 40 s"), "{r}");
        assert!(
            r.contains("4 runs, 40 steps: projected wall time 1 min 00 s"),
            "{r}"
        );
        let only_b = ["b".to_string()];
        let r = report(
            &Two,
            &DryRunArgs {
                parts: Some(&only_b),
                ..args
            },
        )
        .unwrap();
        assert!(
            r.contains("2 runs, 20 steps: projected wall time 40 s"),
            "{r}"
        );
        assert!(
            !r.contains("\n  a: ") && r.contains("plain: 1000.0 ms/step × 10 steps"),
            "{r}"
        );
    }

    #[test]
    fn hms_formats() {
        assert_eq!(hms(0.42), "0.4 s");
        assert_eq!(hms(12.4), "12 s");
        assert_eq!(hms(185.0), "3 min 05 s");
        assert_eq!(hms(3720.0), "1 h 02 min");
    }

    #[test]
    fn synthetic_images_have_the_datasets_shape() {
        let d = synthetic_images("mnist", 7, Some(2), 0).unwrap();
        assert_eq!((d.len(), d.channels, d.height, d.width), (7, 1, 28, 28));
        assert_eq!(d.images.len(), 7 * 784);
        assert_eq!(d.class_counts(), vec![4, 3]);
        assert!(synthetic_images("nope", 1, None, 0).is_err());
    }
}
