//! `mlnt --dry-run`: the CIFAR part's runs (setting × seed × method, CE first, each followed by
//! its second iteration when `iterative`), MLNT's steps up to `start_iter` counted as CE steps,
//! and every kind of step timed on synthetic images (one meta step per `meta_every` steps).

use std::fmt;
use std::sync::Arc;

use anyhow::{Context, Result};
use candle_core::Device;
use rand::rngs::StdRng;
use rand::SeedableRng;
use zoo_data::Augment;
use zoo_models::Classifier;

use super::config::{Features, Method, MlntConfig, Part};
use super::task::MlntRule;
use crate::dry_run::{DryRun, PlannedRun};
use crate::reweight::dry_run::{seconds_per_step, Timing};

/// A kind of `mlnt` step: the dataset and network, and the method (`ce`: a CE step, with the
/// EMA teacher's update).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// `cifar10`.
    pub dataset: String,
    /// The network, as printed (`ResNet-8`).
    pub net: String,
    /// The method.
    pub method: Method,
}

impl Step {
    fn key(&self) -> (&str, &str, u8) {
        (&self.dataset, &self.net, self.method as u8)
    }
}

impl PartialOrd for Step {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Step {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.dataset, self.net, self.method)
    }
}

impl DryRun for MlntConfig {
    type Kind = Step;

    fn plan(&self, seeds: &[u64]) -> Result<Vec<PlannedRun<Step>>> {
        let mut runs = Vec::new();
        if !self.parts.contains(&Part::Cifar) {
            return Ok(runs);
        }
        let c = &self.cifar;
        let m = &self.mlnt;
        let mut methods = c.methods.clone();
        methods.sort_by_key(|m| *m != Method::Ce);
        let steps = c.opt.steps;
        for s in &c.settings {
            for &seed in seeds {
                for &method in &methods {
                    let step = |method| Step {
                        dataset: s.dataset.clone(),
                        net: s.net.to_string(),
                        method,
                    };
                    let run_steps = if method == Method::Ce {
                        vec![(step(Method::Ce), steps)]
                    } else {
                        // Steps 0..=start_iter are CE steps (the meta loss starts after them).
                        let ce = (m.start_iter + 1).min(steps);
                        [(step(Method::Ce), ce), (step(method), steps - ce)]
                            .into_iter()
                            .filter(|(_, n)| *n > 0)
                            .collect()
                    };
                    let label = format!("{} {} seed {seed} {method}", s.dataset, s.noise);
                    runs.push(PlannedRun {
                        part: "cifar".into(),
                        label: label.clone(),
                        steps: run_steps.clone(),
                    });
                    if m.iterative && (method != Method::Ce || m.ce_second_round) {
                        runs.push(PlannedRun {
                            part: "cifar".into(),
                            label: format!("{label} round 2"),
                            steps: run_steps,
                        });
                    }
                }
            }
        }
        Ok(runs)
    }

    fn time_steps(&self, s: &Step, device: &Device) -> Result<f64> {
        let c = &self.cifar;
        let setting = c
            .settings
            .iter()
            .find(|x| x.dataset == s.dataset && x.net.to_string() == s.net)
            .context("a planned step of no setting")?;
        let nc = zoo_data::spec(&setting.dataset)?.num_classes();
        let build = |role: u64| -> Result<Arc<dyn Classifier>> {
            let rng = &mut StdRng::seed_from_u64(role);
            Ok(Arc::from(setting.net.build(nc, rng, device)?))
        };
        // The meta loss and the teacher from step 1 (start_iter 0), at full weight.
        let mut settings = self.mlnt.clone();
        settings.start_iter = 0;
        settings.mid_iter = 0;
        let consistency = s.method != Method::Ce;
        // A stand-in for the CE baseline whose features find the neighbours (same network).
        let features = (consistency && settings.features == Features::Baseline)
            .then(|| build(2))
            .transpose()?;
        let first_order = s.method == Method::MlntFo || settings.first_order;
        let rule = MlntRule::new(build(1)?, features, &settings, first_order, consistency, 0)?;
        let timing = Timing {
            dataset: &setting.dataset,
            classes: None,
            meta_rows: nc * setting.val_per_class,
            opt: &c.opt,
            augment: if c.augment {
                Augment::CifarCropFlip
            } else {
                Augment::None
            },
            period: if consistency { settings.meta_every } else { 1 },
        };
        let model = setting
            .net
            .build(nc, &mut StdRng::seed_from_u64(0), device)?;
        seconds_per_step(&timing, model, Box::new(rule), device)
    }

    fn jobs(&self) -> usize {
        self.jobs
    }
}
