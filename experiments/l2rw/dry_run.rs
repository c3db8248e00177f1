//! `l2rw --dry-run`: the runs of both parts (proportion or noise setting × seed × method), each
//! L2RW run's warm-up counted as plain steps, and every kind of step timed on synthetic images.

use std::fmt;

use anyhow::Result;
use candle_core::Device;
use rand::rngs::StdRng;
use rand::SeedableRng;
use zoo_data::Augment;
use zoo_models::models::{LeNet, LeNetConfig};
use zoo_models::Classifier;

use super::config::{L2rwConfig, Method, Part};
use crate::dry_run::{DryRun, PlannedRun};
use crate::reweight::dry_run::{seconds_per_step, split_warmup, Timing};
use crate::reweight::OptConfig;

/// A kind of `l2rw` step: the part, its network and batch, and the method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// MNIST (LeNet) or CIFAR (the configured network).
    pub part: Part,
    /// The step's rule (`plain` during a warm-up).
    pub method: Method,
    /// The part's network and batch, for the report.
    pub net: String,
}

impl Step {
    fn key(&self) -> (bool, &str, u8) {
        (self.part == Part::Cifar, &self.net, self.method as u8)
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
        write!(f, "{}: {}", self.net, self.method)
    }
}

impl L2rwConfig {
    fn part_opt(&self, part: Part) -> &OptConfig {
        match part {
            Part::Mnist => &self.mnist.opt,
            Part::Cifar => &self.cifar.opt,
        }
    }

    /// The steps of one run of `method` in `part`: the warm-up as plain steps for the rules
    /// that do not act in it.
    fn run_steps(&self, part: Part, method: Method) -> Vec<(Step, usize)> {
        let opt = self.part_opt(part);
        let net = match part {
            Part::Mnist => format!("MNIST 4-vs-9 LeNet, batch {}", opt.batch_size),
            Part::Cifar => format!(
                "{} {}, batch {}",
                self.cifar.dataset, self.cifar.net, opt.batch_size
            ),
        };
        let acts = method.rule(self.all_zero, &[1, 1]).in_warmup();
        let step = |method| Step {
            part,
            method,
            net: net.clone(),
        };
        split_warmup(
            step(Method::Plain),
            step(method),
            opt.steps,
            opt.warmup_steps,
            acts,
        )
    }
}

impl DryRun for L2rwConfig {
    type Kind = Step;

    fn plan(&self, seeds: &[u64]) -> Result<Vec<PlannedRun<Step>>> {
        let mut runs = Vec::new();
        let mut add = |part: Part, setting: &str, methods: &[Method]| {
            for &seed in seeds {
                for &m in methods {
                    runs.push(PlannedRun {
                        part: match part {
                            Part::Mnist => "mnist",
                            Part::Cifar => "cifar",
                        }
                        .into(),
                        label: format!("{setting} seed {seed} {m}"),
                        steps: self.run_steps(part, m),
                    });
                }
            }
        };
        if self.parts.contains(&Part::Mnist) {
            for p in &self.mnist.proportions {
                add(Part::Mnist, &format!("p={p}"), &self.mnist.methods);
            }
        }
        if self.parts.contains(&Part::Cifar) {
            for s in &self.cifar.settings {
                add(Part::Cifar, &s.noise, &self.cifar.methods);
            }
        }
        Ok(runs)
    }

    fn time_steps(&self, s: &Step, device: &Device) -> Result<f64> {
        let rng = &mut StdRng::seed_from_u64(0);
        let (timing, model): (Timing, Box<dyn Classifier>) = match s.part {
            Part::Mnist => (
                Timing {
                    dataset: "mnist",
                    classes: Some(2),
                    meta_rows: 2 * self.mnist.meta_per_class,
                    opt: &self.mnist.opt,
                    augment: Augment::None,
                    period: 1,
                },
                Box::new(LeNet::new(LeNetConfig::mnist(2), rng, device)?),
            ),
            Part::Cifar => {
                let nc = zoo_data::spec(&self.cifar.dataset)?.num_classes();
                let meta = self.cifar.settings.iter().map(|s| s.meta_per_class);
                (
                    Timing {
                        dataset: &self.cifar.dataset,
                        classes: None,
                        meta_rows: nc * meta.max().unwrap_or(1),
                        opt: &self.cifar.opt,
                        augment: if self.cifar.augment {
                            Augment::CifarCropFlip
                        } else {
                            Augment::None
                        },
                        period: 1,
                    },
                    self.cifar.net.build(nc, rng, device)?,
                )
            }
        };
        let nc = match s.part {
            Part::Mnist => 2,
            Part::Cifar => zoo_data::spec(&self.cifar.dataset)?.num_classes(),
        };
        let counts = vec![timing.opt.batch_size; nc];
        let rule = s.method.rule(self.all_zero, &counts);
        seconds_per_step(&timing, model, rule, device)
    }

    fn jobs(&self) -> usize {
        self.jobs
    }
}
