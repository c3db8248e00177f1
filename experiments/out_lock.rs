//! A lock on an output folder, so that two runs cannot write one `--out` at the same time (they
//! would both finish "successfully" with a `config.json` that matches neither's logs).
//!
//! The lock is `OUT/.lock`, held with the operating system's advisory file lock (released by the
//! kernel when the process dies, even by `kill -9`) and holding the owner's PID for messages. A
//! whole run takes it exclusively; processes doing part of one run (shards of a plan) take it
//! shared, so they can run side by side but never beside a whole run. The file is removed when
//! the lock is dropped; one left by a dead process is taken over with a warning.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// Name of the lock file inside the output folder.
pub const LOCK_FILE: &str = ".lock";

/// How a process uses the folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// The only writer (a whole run).
    Exclusive,
    /// One of several cooperating writers (parts of one run).
    Shared,
}

/// A held lock; released (and its file removed) on drop.
#[derive(Debug)]
pub struct OutLock {
    path: PathBuf,
    file: Option<File>,
    mode: LockMode,
}

impl OutLock {
    /// Locks `dir` (which must exist), or fails naming the process that holds it.
    pub fn acquire(dir: &Path, mode: LockMode) -> Result<Self> {
        let path = dir.join(LOCK_FILE);
        // A holder that is releasing removes the file before unlocking it: retry when the file
        // we locked is no longer the one at `path`.
        for _ in 0..20 {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .with_context(|| format!("opening the lock file {}", path.display()))?;
            let locked = match mode {
                LockMode::Exclusive => file.try_lock(),
                LockMode::Shared => file.try_lock_shared(),
            };
            match locked {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => bail!(
                    "{} is in use by another run ({}); wait for it to finish, or give another \
                     --out (if no such run exists, delete {})",
                    dir.display(),
                    describe_owner(&read_owner(&mut file)),
                    path.display()
                ),
                Err(TryLockError::Error(e)) => {
                    return Err(e).with_context(|| format!("locking {}", path.display()))
                }
            }
            if !same_file(&file, &path) {
                continue;
            }
            let previous = read_owner(&mut file);
            if mode == LockMode::Exclusive {
                if let Some(pid) = previous.trim().parse::<u32>().ok().filter(|&p| p != 0) {
                    tracing::warn!(
                        "{}: taking over the lock left by PID {pid}, which no longer runs",
                        dir.display()
                    );
                }
                file.set_len(0)?;
                file.rewind()?;
                writeln!(file, "{}", std::process::id())
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            return Ok(Self {
                path,
                file: Some(file),
                mode,
            });
        }
        bail!("could not lock {}: it keeps being replaced", path.display())
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for OutLock {
    fn drop(&mut self) {
        // Exclusive: remove, then unlock (closing the file), so that a process waiting on this
        // file sees it replaced and retries. Shared holders leave it to the last one out, which
        // cannot be known without a second lock: they leave the (empty) file.
        if self.mode == LockMode::Exclusive {
            let _ = std::fs::remove_file(&self.path);
        }
        drop(self.file.take());
    }
}

fn read_owner(file: &mut File) -> String {
    let mut s = String::new();
    let _ = file.rewind().and_then(|()| file.read_to_string(&mut s));
    s
}

fn describe_owner(content: &str) -> String {
    match content.trim().parse::<u32>() {
        Ok(pid) => format!("PID {pid}"),
        Err(_) => "parts of a run, or a process that wrote no PID".into(),
    }
}

/// Whether the open `file` is still the file at `path` (same device and inode).
#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_file: &File, path: &Path) -> bool {
    path.exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("zoo-lock-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_second_exclusive_lock_is_refused_naming_the_pid_and_released_on_drop() {
        let d = dir("excl");
        let a = OutLock::acquire(&d, LockMode::Exclusive).unwrap();
        let pid = std::fs::read_to_string(a.path()).unwrap();
        assert_eq!(pid.trim(), std::process::id().to_string());
        let e = OutLock::acquire(&d, LockMode::Exclusive).unwrap_err();
        let msg = format!("{e:#}");
        assert!(
            msg.contains("in use by another run") && msg.contains(pid.trim()),
            "{msg}"
        );
        assert!(OutLock::acquire(&d, LockMode::Shared).is_err());
        drop(a);
        assert!(!d.join(LOCK_FILE).exists());
        let _b = OutLock::acquire(&d, LockMode::Exclusive).unwrap();
    }

    #[test]
    fn shared_locks_coexist_but_exclude_a_whole_run() {
        let d = dir("shared");
        let a = OutLock::acquire(&d, LockMode::Shared).unwrap();
        let b = OutLock::acquire(&d, LockMode::Shared).unwrap();
        assert!(OutLock::acquire(&d, LockMode::Exclusive).is_err());
        drop((a, b));
        let _c = OutLock::acquire(&d, LockMode::Exclusive).unwrap();
    }

    #[test]
    fn a_stale_lock_file_is_taken_over() {
        let d = dir("stale");
        std::fs::write(d.join(LOCK_FILE), "4194999\n").unwrap();
        let a = OutLock::acquire(&d, LockMode::Exclusive).unwrap();
        let pid = std::fs::read_to_string(a.path()).unwrap();
        assert_eq!(pid.trim(), std::process::id().to_string());
    }
}
