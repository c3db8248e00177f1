//! `mwn --dry-run`: the runs of both parts (setting × seed × method), each weighted run's
//! warm-up counted as CE steps, and every kind of step timed on synthetic images (MWN's with
//! one meta step per `meta_every` steps).

use std::fmt;
use std::sync::Arc;

use anyhow::{Context, Result};
use candle_core::Device;
use rand::rngs::StdRng;
use rand::SeedableRng;
use zoo_data::Augment;
use zoo_models::loss;
use zoo_models::models::VNet;

use super::config::{Method, MwnConfig, Part, PartConfig};
use super::task::MwnRule;
use crate::dry_run::{DryRun, PlannedRun};
use crate::reweight::dry_run::{seconds_per_step, split_warmup, Timing};
use crate::reweight::rules::{self, ClassBalancedCe, Focal};
use crate::reweight::{NetSpec, StepRule};

/// A kind of `mwn` step: the part, the dataset and network, and the method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Noise or long tail (their optimisers and batches may differ).
    pub part: Part,
    /// `cifar10` / `cifar100`.
    pub dataset: String,
    /// The network, as printed (`ResNet-8`).
    pub net: String,
    /// The step's rule (`ce` during a warm-up).
    pub method: Method,
}

impl Step {
    fn key(&self) -> (bool, &str, &str, u8) {
        let long_tail = self.part == Part::LongTail;
        (long_tail, &self.dataset, &self.net, self.method as u8)
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
        write!(
            f,
            "{} {} {}: {}",
            self.part.as_str(),
            self.dataset,
            self.net,
            self.method
        )
    }
}

/// One setting of a part, as the plan sees it.
struct Row<'a> {
    dataset: &'a str,
    name: String,
    net: &'a NetSpec,
    meta_per_class: usize,
}

impl MwnConfig {
    fn rows(&self, part: Part) -> Vec<Row<'_>> {
        match part {
            Part::Noise => self
                .noise
                .settings
                .iter()
                .map(|s| Row {
                    dataset: &s.dataset,
                    name: s.noise.clone(),
                    net: &s.net,
                    meta_per_class: s.meta_per_class,
                })
                .collect(),
            Part::LongTail => self
                .long_tail
                .settings
                .iter()
                .map(|s| Row {
                    dataset: &s.dataset,
                    name: format!("IF={}", s.imbalance_factor),
                    net: &s.net,
                    meta_per_class: s.meta_per_class,
                })
                .collect(),
        }
    }

    fn part_config(&self, part: Part) -> (&[Method], &crate::reweight::OptConfig, bool) {
        fn of<S>(p: &PartConfig<S>) -> (&[Method], &crate::reweight::OptConfig, bool) {
            (&p.methods, &p.opt, p.augment)
        }
        match part {
            Part::Noise => of(&self.noise),
            Part::LongTail => of(&self.long_tail),
        }
    }

    /// The rule of `method` for timing (class counts of a balanced batch: only the cost
    /// matters).
    fn timing_rule(&self, method: Method, nc: usize, device: &Device) -> Result<Box<dyn StepRule>> {
        Ok(match method {
            Method::Ce => Box::new(rules::Plain),
            Method::L2rw => Box::new(rules::L2rw::new(self.l2rw_all_zero)),
            Method::Focal => Box::new(Focal(self.focal_gamma)),
            Method::ClassBalanced => Box::new(ClassBalancedCe(
                loss::class_balanced_weights(&vec![100; nc], self.cb_beta)
                    .context("class-balanced weights")?,
            )),
            Method::Mwn => {
                let rng = &mut StdRng::seed_from_u64(0);
                let v = Arc::new(VNet::new(self.mwn.hidden, rng, device)?);
                Box::new(MwnRule::new(v, &self.mwn)?)
            }
        })
    }
}

impl DryRun for MwnConfig {
    type Kind = Step;

    fn plan(&self, seeds: &[u64]) -> Result<Vec<PlannedRun<Step>>> {
        let mut runs = Vec::new();
        for part in [Part::Noise, Part::LongTail] {
            let (methods, opt, _) = self.part_config(part);
            for row in self.rows(part) {
                for &seed in seeds {
                    for &m in methods {
                        let step = |method| Step {
                            part,
                            dataset: row.dataset.to_string(),
                            net: row.net.to_string(),
                            method,
                        };
                        let acts = self.timing_rule(m, 2, &Device::Cpu)?.in_warmup();
                        runs.push(PlannedRun {
                            part: part.as_str().into(),
                            label: format!("{} {} seed {seed} {m}", row.dataset, row.name),
                            steps: split_warmup(
                                step(Method::Ce),
                                step(m),
                                opt.steps,
                                opt.warmup_steps,
                                acts,
                            ),
                        });
                    }
                }
            }
        }
        Ok(runs)
    }

    fn time_steps(&self, s: &Step, device: &Device) -> Result<f64> {
        let (_, opt, augment) = self.part_config(s.part);
        let rows = self.rows(s.part);
        let row = rows
            .iter()
            .find(|r| r.dataset == s.dataset && r.net.to_string() == s.net)
            .context("a planned step of no setting")?;
        let nc = zoo_data::spec(row.dataset)?.num_classes();
        let timing = Timing {
            dataset: row.dataset,
            classes: None,
            meta_rows: nc * row.meta_per_class,
            opt,
            augment: if augment {
                Augment::CifarCropFlip
            } else {
                Augment::None
            },
            period: if s.method == Method::Mwn {
                self.mwn.meta_every
            } else {
                1
            },
        };
        let model = row.net.build(nc, &mut StdRng::seed_from_u64(0), device)?;
        let rule = self.timing_rule(s.method, nc, device)?;
        seconds_per_step(&timing, model, rule, device)
    }

    fn jobs(&self) -> usize {
        self.jobs
    }
}
