//! Where dataset files come from: the Hugging Face cache (downloading only when missing and online)
//! or a local directory with the same relative layout.

use anyhow::{anyhow, bail, Result};
use hf_hub::{Cache, Repo, RepoType};
use std::path::{Path, PathBuf};

/// Where `load` reads parquet files from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataSource {
    /// The hub through the local cache (`HF_HOME`, default `~/.cache/huggingface`): a cached file
    /// is read with no network; a missing one is downloaded unless `HF_HUB_OFFLINE` is set.
    Hub,
    /// A directory holding the repo's files under the same relative paths
    /// (e.g. `DIR/plain_text/train-00000-of-00001.parquet`).
    Dir(PathBuf),
}

impl DataSource {
    /// `--data-dir` given → that directory, else the hub.
    pub fn from_option(dir: Option<PathBuf>) -> Self {
        match dir {
            Some(d) => DataSource::Dir(d),
            None => DataSource::Hub,
        }
    }
}

/// Where a dataset was read from (for `datasets info`, results' config.json).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SourceInfo {
    /// `"hub"` or `"dir"`.
    pub kind: String,
    /// Hub repo id (for a directory source: the repo whose layout it mirrors).
    pub repo: String,
    /// Requested revision (`main`), and for the hub the commit it resolved to.
    pub revision: String,
    pub commit: Option<String>,
    /// Files relative to the repo root.
    pub files: Vec<String>,
    /// The files actually read.
    pub paths: Vec<PathBuf>,
}

/// True when `HF_HUB_OFFLINE` asks for no network (`1`, `true`, `yes`, `on`).
pub fn hub_offline() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .map(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        })
        .unwrap_or(false)
}

fn fetch_hint(repo: &str, revision: &str, file: &str, cache: &Path) -> String {
    format!(
        "dataset file not in the Hugging Face cache: repo '{repo}' (dataset), revision '{revision}', \
         file '{file}' (cache: {}). Fetch it with `huggingface-cli download --repo-type dataset \
         --revision {revision} {repo} {file}`, or set HF_HOME to a cache that holds it \
         (e.g. HF_HOME=../shared/hf), or pass --data-dir DIR with DIR/{file}",
        cache.display()
    )
}

/// Resolves a branch/tag through `refs/<revision>`; a 40-hex revision is already a commit.
fn cached_commit(cache: &Cache, repo: &Repo) -> Option<String> {
    let refs = cache
        .path()
        .join(repo.folder_name())
        .join("refs")
        .join(repo.revision());
    match std::fs::read_to_string(refs) {
        Ok(s) => Some(s.trim().to_string()),
        Err(_) => {
            let r = repo.revision();
            (r.len() == 40 && r.bytes().all(|b| b.is_ascii_hexdigit())).then(|| r.to_string())
        }
    }
}

/// Path of `file` of dataset repo `repo` at `revision`: from the cache when present (never
/// touching the cache folder), else downloaded unless offline. Returns the path and the commit.
pub fn hub_file(repo_id: &str, revision: &str, file: &str) -> Result<(PathBuf, Option<String>)> {
    let cache = Cache::from_env();
    let repo = Repo::with_revision(repo_id.to_string(), RepoType::Dataset, revision.to_string());
    let commit = cached_commit(&cache, &repo);
    if let Some(p) = cache.repo(repo.clone()).get(file) {
        return Ok((p, commit));
    }
    // hf-hub only looks through refs/; a pinned commit has its snapshot folder directly.
    if let Some(c) = &commit {
        let p = cache
            .path()
            .join(repo.folder_name())
            .join("snapshots")
            .join(c)
            .join(file);
        if p.is_file() {
            return Ok((p, commit));
        }
    }
    let hint = fetch_hint(repo_id, revision, file, cache.path());
    if hub_offline() {
        bail!("{hint}; not downloading because HF_HUB_OFFLINE is set");
    }
    let api = hf_hub::api::sync::ApiBuilder::from_env()
        .with_progress(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .build()
        .map_err(|e| anyhow!("{hint}; could not start the hub client: {e}"))?;
    let path = api
        .repo(repo.clone())
        .download(file)
        .map_err(|e| anyhow!("{hint}; download failed: {e}"))?;
    let commit = cached_commit(&cache, &repo);
    Ok((path, commit))
}

/// Resolves the files of one split from `src`; errors name the repo/revision/file or the path.
pub fn resolve_files(
    repo: &str,
    revision: &str,
    files: &[&str],
    src: &DataSource,
) -> Result<SourceInfo> {
    let mut paths = Vec::with_capacity(files.len());
    let mut commit = None;
    for f in files {
        match src {
            DataSource::Hub => {
                let (p, c) = hub_file(repo, revision, f)?;
                commit = c;
                paths.push(p);
            }
            DataSource::Dir(dir) => {
                let p = dir.join(f);
                if !p.is_file() {
                    bail!(
                        "dataset file not found: {} (the --data-dir layout mirrors hub repo '{repo}': \
                         DIR/{f})",
                        p.display()
                    );
                }
                paths.push(p);
            }
        }
    }
    Ok(SourceInfo {
        kind: match src {
            DataSource::Hub => "hub".into(),
            DataSource::Dir(_) => "dir".into(),
        },
        repo: repo.to_string(),
        revision: revision.to_string(),
        commit,
        files: files.iter().map(|s| s.to_string()).collect(),
        paths,
    })
}
