//! Every data source of a run resolved before any training, so that a missing file fails the run
//! in its first second instead of after hours of training on the other datasets.
//!
//! A config lists what it reads ([`ExperimentConfig::data_needs`](crate::ExperimentConfig::data_needs));
//! [`Experiment::setup`](crate::Experiment::setup) checks each need before it creates the output
//! folder. Hub files are looked up in the cache (and downloaded when missing and online, as the
//! loaders would do), so offline the error names the repo, revision and file to fetch.

use std::path::PathBuf;

use anyhow::{Context, Result};
use zoo_data::{DataSource, Split};

/// One input of an experiment.
#[derive(Debug, Clone, PartialEq)]
pub enum DataNeed {
    /// Both splits of a dataset of the registry (`mnist`, `cifar10`, …), from `source`, or from
    /// the run's default (`--data-dir`, else the hub) when `None`.
    Dataset {
        /// Registry name.
        name: String,
        /// Where it is read from, when not the run's default.
        source: Option<DataSource>,
    },
    /// A file or folder read directly (split lists, image roots).
    Path {
        /// What it is, for the message ("ImageNet_LT image root").
        what: String,
        /// The path.
        path: PathBuf,
    },
}

impl DataNeed {
    /// A registry dataset from the run's default source.
    pub fn dataset(name: impl Into<String>) -> Self {
        DataNeed::Dataset {
            name: name.into(),
            source: None,
        }
    }

    /// A registry dataset from a given folder (`None`: the run's default source).
    pub fn dataset_in(name: impl Into<String>, dir: Option<PathBuf>) -> Self {
        DataNeed::Dataset {
            name: name.into(),
            source: dir.map(DataSource::Dir),
        }
    }
}

/// Resolves every need, in order; the first failure names the binary, the dataset, and (from
/// `zoo_data`) the repo, revision and file or the missing path.
pub fn check(
    binary: &str,
    needs: &[DataNeed],
    default: &DataSource,
    overrides: &dyn Fn(&str) -> Option<DataSource>,
) -> Result<()> {
    let mut seen: Vec<(String, DataSource)> = Vec::new();
    for need in needs {
        match need {
            DataNeed::Dataset { name, source } => {
                let src = source
                    .clone()
                    .or_else(|| overrides(name))
                    .unwrap_or_else(|| default.clone());
                if seen.iter().any(|(n, s)| n == name && *s == src) {
                    continue;
                }
                let spec = zoo_data::spec(name)?;
                for split in [Split::Train, Split::Test] {
                    zoo_data::source::resolve_files(
                        spec.repo,
                        spec.revision,
                        spec.files(split),
                        &src,
                    )
                    .with_context(|| {
                        format!(
                            "{binary}: checking the data before any training: {name} ({split}) \
                             is not available{}",
                            where_from(&src)
                        )
                    })?;
                }
                seen.push((name.clone(), src));
            }
            DataNeed::Path { what, path } => {
                anyhow::ensure!(
                    path.exists(),
                    "{binary}: checking the data before any training: {what} {} does not exist",
                    path.display()
                );
            }
        }
    }
    Ok(())
}

fn where_from(src: &DataSource) -> String {
    match src {
        DataSource::Hub => " from the Hugging Face hub cache".into(),
        DataSource::Dir(d) => format!(" in {}", d.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_local_dataset_fails_naming_it_and_the_file() {
        let dir = std::env::temp_dir().join(format!("zoo-preflight-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let needs = [DataNeed::dataset_in("cifar10", Some(dir.clone()))];
        let e = check("toy", &needs, &DataSource::Hub, &|_| None).unwrap_err();
        let msg = format!("{e:#}");
        assert!(
            msg.contains("cifar10 (train)")
                && msg.contains("uoft-cs/cifar10")
                && msg.contains("plain_text/train-00000-of-00001.parquet"),
            "{msg}"
        );
        let needs = [DataNeed::Path {
            what: "split lists".into(),
            path: dir.join("nope"),
        }];
        let msg = format!(
            "{:#}",
            check("toy", &needs, &DataSource::Hub, &|_| None).unwrap_err()
        );
        assert!(msg.contains("split lists") && msg.contains("nope"), "{msg}");
        assert!(check("toy", &[], &DataSource::Hub, &|_| None).is_ok());
    }
}
