//! A state directory the harness owns (the control plane's, the machines'): one `up` or `down` at a time, through a
//! lock file beside it, and only in a directory that is ours. A marker file says so, so that a mistyped
//! `RKTNETES_CACHE` or `RKTNETES_CLUSTER_DIR` can never make `down` delete something else.

use std::{
    ffi::OsString,
    fs::{self, File, OpenOptions, TryLockError},
    path::PathBuf,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

/// How long to wait for another `up` or `down` (a first machines `up` builds the Debian root, about a minute).
const WAIT: Duration = Duration::from_secs(600);

/// A directory of the harness's, known by its marker file.
#[derive(Clone, Debug)]
pub struct OwnedDir {
    pub path: PathBuf,
    /// The marker's file name, e.g. `.rktnetes-nodes`.
    marker: &'static str,
    /// What it holds, for messages: "nodes dir", "cluster state dir".
    what: &'static str,
}

/// Held while the directory changes; released when dropped (or when the process ends, however it ends).
pub struct DirLock {
    _file: File,
}

impl OwnedDir {
    pub fn new(path: PathBuf, marker: &'static str, what: &'static str) -> Self {
        Self { path, marker, what }
    }

    /// Takes the lock beside the directory (`<dir>.lock`, the one the shell scripts always took).
    pub fn lock(&self) -> anyhow::Result<DirLock> {
        let mut lock_path = OsString::from(self.path.as_os_str());
        lock_path.push(".lock");
        let lock_path = PathBuf::from(lock_path);
        if let Some(parent) = lock_path.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("opening {}", lock_path.display()))?;
        let deadline = Instant::now() + WAIT;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(DirLock { _file: file }),
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(200));
                }
                Err(TryLockError::WouldBlock) => bail!(
                    "another `up` or `down` has held {} for {} minutes",
                    lock_path.display(),
                    WAIT.as_secs() / 60
                ),
                Err(TryLockError::Error(error)) => {
                    return Err(error).with_context(|| format!("locking {}", lock_path.display()));
                }
            }
        }
    }

    /// Creates the directory if needed and marks it as ours, unless it holds something and no marker.
    pub fn claim(&self) -> anyhow::Result<()> {
        fs::create_dir_all(&self.path)
            .with_context(|| format!("creating {}", self.path.display()))?;
        self.refuse_foreign()?;
        let marker = self.path.join(self.marker);
        File::create(&marker).with_context(|| format!("creating {}", marker.display()))?;
        Ok(())
    }

    /// Deletes the directory (never crossing into another file system), but only if it is ours or empty.
    pub fn wipe(&self) -> anyhow::Result<()> {
        if !self.path.exists() {
            return Ok(());
        }
        self.refuse_foreign()?;
        fs::remove_dir_all(&self.path).with_context(|| format!("deleting {}", self.path.display()))
    }

    fn refuse_foreign(&self) -> anyhow::Result<()> {
        if self.path.join(self.marker).exists() {
            return Ok(());
        }
        let mut entries =
            fs::read_dir(&self.path).with_context(|| format!("reading {}", self.path.display()))?;
        if entries.next().is_some() {
            bail!(
                "{} exists and is not a {} (no {}); refusing to touch it",
                self.path.display(),
                self.what,
                self.marker
            );
        }
        Ok(())
    }
}

/// Takes the lock of `dir`, then claims it: what `up` and `down` do first.
pub fn acquire(dir: &OwnedDir) -> anyhow::Result<DirLock> {
    let lock = dir.lock()?;
    dir.claim()?;
    Ok(lock)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(path: PathBuf) -> OwnedDir {
        OwnedDir::new(path, ".rktnetes-test", "test dir")
    }

    #[test]
    fn a_directory_that_holds_something_unmarked_is_refused() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let nodes = owned(dir.path().join("nodes"));
        drop(acquire(&nodes).expect("a new directory is claimed"));
        drop(acquire(&nodes).expect("a marked one is ours"));
        let foreign = owned(dir.path().join("photos"));
        fs::create_dir(&foreign.path).expect("a directory");
        fs::write(foreign.path.join("cat.jpg"), "meow").expect("a file");
        let error = acquire(&foreign).err().expect("refused");
        assert!(
            error.to_string().contains("refusing to touch it"),
            "{error}"
        );
        assert!(foreign.wipe().is_err());
        assert!(foreign.path.join("cat.jpg").exists());
        nodes.wipe().expect("ours is deleted");
        assert!(!nodes.path.exists());
    }

    #[test]
    fn the_lock_is_held_until_dropped() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let nodes = owned(dir.path().join("nodes"));
        let held = acquire(&nodes).expect("locked");
        let lock_file = dir.path().join("nodes.lock");
        let other = File::open(&lock_file).expect("the lock file");
        assert!(matches!(other.try_lock(), Err(TryLockError::WouldBlock)));
        drop(held);
        other.try_lock().expect("free again");
    }
}
