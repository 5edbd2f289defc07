//! One `up` or `down` at a time, and only in a directory that is ours: a marker file says so, so that a mistyped
//! `RKTNETES_CACHE` can never make `down` delete something else.

use std::{
    ffi::OsString,
    fs::{self, File, OpenOptions, TryLockError},
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

/// Marks a nodes directory as ours.
const MARKER: &str = ".rktnetes-nodes";
/// How long to wait for another `up` or `down` (a first `up` builds the Debian root, about a minute).
const WAIT: Duration = Duration::from_secs(600);

/// Held while the machines change; released when dropped (or when the process ends, however it ends).
pub struct NodesLock {
    _file: File,
}

/// Takes the lock beside `nodes_dir` (`nodes.lock`, the one `e2e/nodes.sh` always took), then makes sure
/// `nodes_dir` is ours: new, empty, or marked.
pub fn acquire(nodes_dir: &Path) -> anyhow::Result<NodesLock> {
    fs::create_dir_all(nodes_dir).with_context(|| format!("creating {}", nodes_dir.display()))?;
    let mut lock_path = OsString::from(nodes_dir.as_os_str());
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("opening {}", lock_path.display()))?;
    let deadline = Instant::now() + WAIT;
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(200));
            }
            Err(TryLockError::WouldBlock) => bail!(
                "another `nodes up` or `nodes down` has held {} for {} minutes",
                lock_path.display(),
                WAIT.as_secs() / 60
            ),
            Err(TryLockError::Error(error)) => {
                return Err(error).with_context(|| format!("locking {}", lock_path.display()));
            }
        }
    }
    claim(nodes_dir)?;
    Ok(NodesLock { _file: file })
}

/// Marks `nodes_dir` as ours, unless it holds something and no marker.
fn claim(nodes_dir: &Path) -> anyhow::Result<()> {
    let marker = nodes_dir.join(MARKER);
    if !marker.exists() {
        let mut entries =
            fs::read_dir(nodes_dir).with_context(|| format!("reading {}", nodes_dir.display()))?;
        if entries.next().is_some() {
            bail!(
                "{} exists and is not a nodes dir (no {MARKER}); refusing to touch it",
                nodes_dir.display()
            );
        }
    }
    File::create(&marker).with_context(|| format!("creating {}", marker.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_that_holds_something_unmarked_is_refused() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let nodes = dir.path().join("nodes");
        drop(acquire(&nodes).expect("a new directory is claimed"));
        drop(acquire(&nodes).expect("a marked one is ours"));
        let foreign = dir.path().join("photos");
        fs::create_dir(&foreign).expect("a directory");
        fs::write(foreign.join("cat.jpg"), "meow").expect("a file");
        let error = acquire(&foreign).err().expect("refused");
        assert!(
            error.to_string().contains("refusing to touch it"),
            "{error}"
        );
        assert!(foreign.join("cat.jpg").exists());
    }

    #[test]
    fn the_lock_is_held_until_dropped() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let nodes = dir.path().join("nodes");
        let held = acquire(&nodes).expect("locked");
        let lock_file = dir.path().join("nodes.lock");
        let other = File::open(&lock_file).expect("the lock file");
        assert!(matches!(other.try_lock(), Err(TryLockError::WouldBlock)));
        drop(held);
        other.try_lock().expect("free again");
    }
}
