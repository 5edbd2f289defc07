//! Putting a node's desired files in place, and taking them back: every change goes through [`atomic_file`] and
//! the [`Ledger`], so files the agent never wrote are never modified or deleted, and a failed change can be undone
//! byte for byte.

use std::path::{Path, PathBuf};

use super::{
    atomic_file::{self, FileError},
    ledger::{Ledger, ManagedFile, Transaction},
};
use crate::api::{HostFile, host_paths};

/// The host as the agent sees it: paths in specs are absolute host paths, found below `root` (`/` in a
/// DaemonSet pod under stage1-fly, a scratch directory in tests).
#[derive(Clone, Debug)]
pub struct Host {
    pub root: PathBuf,
}

/// What a change did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Host paths written or removed by the change (since it began, across agents that stopped half-way).
    pub paths: Vec<String>,
    /// Some file was written or removed by this call itself, not only by an agent before it.
    pub written_now: bool,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// Whether `path` was changed.
    pub fn includes(&self, path: &str) -> bool {
        self.paths.iter().any(|changed| changed == path)
    }

    /// Whether a changed path is below the directory `dir`.
    pub fn touches(&self, dir: &str) -> bool {
        self.paths
            .iter()
            .any(|path| host_paths::is_below(path, dir))
    }
}

impl Host {
    /// Where a host path is on this machine.
    pub fn path(&self, host_path: &str) -> PathBuf {
        self.root.join(host_path.trim_start_matches('/'))
    }

    fn read(&self, host_path: &str) -> Result<Option<String>, FileError> {
        Ok(atomic_file::read(&self.path(host_path))?
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
    }

    /// Starts a change to `desired` (hash `hash`): records what to go back to in `ledger.pending`. A change
    /// already pending (the agent stopped half-way) keeps its original starting point.
    pub fn begin(
        &self,
        ledger: &mut Ledger,
        desired: &[HostFile],
        hash: &str,
    ) -> Result<(), FileError> {
        if let Some(pending) = &mut ledger.pending {
            // The spec changed half-way: the new spec's paths that the change has not touched yet are recorded as
            // they are now, before anything is written to them; the new files take a restart of their own.
            if pending.hash != hash {
                pending.restart_requested_at = None;
            }
            pending.hash = hash.to_owned();
            for file in desired {
                if !pending.contents_before.contains_key(&file.path) {
                    let content = self.read(&file.path)?;
                    pending.contents_before.insert(file.path.clone(), content);
                }
            }
            return Ok(());
        }
        let mut contents_before = std::collections::BTreeMap::new();
        for path in desired
            .iter()
            .map(|file| file.path.as_str())
            .chain(ledger.files.keys().map(String::as_str))
        {
            contents_before.insert(path.to_owned(), self.read(path)?);
        }
        ledger.pending = Some(Transaction {
            hash: hash.to_owned(),
            files_before: ledger.files.clone(),
            contents_before,
            restart_requested_at: None,
            link_before: None,
        });
        Ok(())
    }

    /// Makes the host hold exactly `desired` among the managed files: writes what differs, and lets go of
    /// managed paths no longer desired (restoring what was there before the agent, or removing the file).
    pub fn put(&self, ledger: &mut Ledger, desired: &[HostFile]) -> Result<Changes, FileError> {
        let mut changes = Changes::default();
        for file in desired {
            let on_disk = self.read(&file.path)?;
            // What was there before the agent: for a path it does not manage yet, what the change under way
            // found there when it began. The disk may already hold this change's own write, made before a crash
            // that came ahead of the ledger's save; taking that for the original would keep the file forever.
            let before_change = ledger
                .pending
                .as_ref()
                .and_then(|pending| pending.contents_before.get(&file.path));
            let original = match (ledger.files.get(&file.path), before_change) {
                (Some(managed), _) => managed.original.clone(),
                (None, Some(before)) => before.clone(),
                (None, None) => on_disk.clone(),
            };
            let mode = u32::try_from(file.mode).unwrap_or(0o644);
            let changed_since_begin = before_change
                .is_some_and(|before| before.as_deref() != Some(file.content.as_str()));
            if on_disk.as_deref() != Some(file.content.as_str())
                || self.mode_of(&file.path) != Some(mode)
            {
                atomic_file::write(&self.path(&file.path), file.content.as_bytes(), mode)?;
                changes.paths.push(file.path.clone());
                changes.written_now = true;
            } else if changed_since_begin {
                // The change under way wrote this already (an agent was stopped before it restarted the rkt API
                // service): it is still a change, which the service has not read yet.
                changes.paths.push(file.path.clone());
            }
            ledger.files.insert(
                file.path.clone(),
                ManagedFile {
                    content: file.content.clone(),
                    mode,
                    original,
                },
            );
        }
        let stale: Vec<String> = ledger
            .files
            .keys()
            .filter(|path| !desired.iter().any(|file| &file.path == *path))
            .cloned()
            .collect();
        for path in stale {
            if let Some(managed) = ledger.files.remove(&path) {
                changes.written_now |= self.read(&path)? != managed.original;
                self.let_go(&path, &managed)?;
                changes.paths.push(path);
            }
        }
        Ok(changes)
    }

    /// Undoes the pending change: every touched path gets its content from before, byte for byte.
    pub fn roll_back(&self, ledger: &mut Ledger) -> Result<Changes, FileError> {
        let mut changes = Changes::default();
        if let Some(pending) = ledger.pending.take() {
            for (path, before) in &pending.contents_before {
                let target = self.path(path);
                let now = self.read(path)?;
                if now == *before {
                    continue;
                }
                match before {
                    Some(content) => {
                        let mode = pending
                            .files_before
                            .get(path)
                            .map_or(0o644, |managed| managed.mode);
                        atomic_file::write(&target, content.as_bytes(), mode)?;
                    }
                    None => atomic_file::remove(&target)?,
                }
                changes.paths.push(path.clone());
            }
            ledger.files = pending.files_before;
        }
        Ok(changes)
    }

    /// Managed files whose content or mode differs from what the ledger says: drift.
    pub fn drifted(&self, ledger: &Ledger) -> Result<Vec<String>, FileError> {
        let mut drifted = Vec::new();
        for (path, managed) in &ledger.files {
            if self.read(path)?.as_deref() != Some(managed.content.as_str())
                || self.mode_of(path) != Some(managed.mode)
            {
                drifted.push(path.clone());
            }
        }
        Ok(drifted)
    }

    /// Rewrites drifted files from the ledger.
    pub fn repair(&self, ledger: &Ledger, paths: &[String]) -> Result<(), FileError> {
        for path in paths {
            if let Some(managed) = ledger.files.get(path) {
                atomic_file::write(&self.path(path), managed.content.as_bytes(), managed.mode)?;
            }
        }
        Ok(())
    }

    /// The name and content of each file in the host directory `dir` (none when it does not exist).
    pub fn files_in(&self, dir: &str) -> Result<Vec<(String, String)>, FileError> {
        let directory = self.path(dir);
        let entries = match std::fs::read_dir(&directory) {
            Ok(entries) => entries,
            Err(source) if source.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(FileError {
                    action: "list",
                    path: directory,
                    source,
                });
            }
        };
        let mut files = Vec::new();
        for entry in entries.flatten().filter(|entry| entry.path().is_file()) {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(content) = atomic_file::read(&entry.path())? {
                files.push((name, String::from_utf8_lossy(&content).into_owned()));
            }
        }
        Ok(files)
    }

    fn let_go(&self, path: &str, managed: &ManagedFile) -> Result<(), FileError> {
        match &managed.original {
            Some(original) => atomic_file::write(&self.path(path), original.as_bytes(), 0o644),
            None => atomic_file::remove(&self.path(path)),
        }
    }

    fn mode_of(&self, host_path: &str) -> Option<u32> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(self.path(host_path))
            .ok()
            .map(|meta| meta.permissions().mode() & 0o7777)
    }

    /// The directory of a host path, on this machine.
    pub fn directory(&self, host_path: &str) -> PathBuf {
        self.path(host_path)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.root.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str) -> Host {
        let root =
            std::env::temp_dir().join(format!("rktnetes-host-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        Host { root }
    }

    fn file(path: &str, content: &str) -> HostFile {
        HostFile {
            path: path.into(),
            content: content.into(),
            mode: 0o644,
        }
    }

    const NET: &str = "/etc/rkt/net.d/00-rktnetes.conf";
    const STAGE1: &str = "/etc/rkt/stage1.d/rktnetes.json";
    const FOREIGN: &str = "/etc/rkt/net.d/50-admin.conf";

    #[test]
    fn puts_files_and_removes_only_its_own() {
        let host = host("put");
        std::fs::create_dir_all(host.path("/etc/rkt/net.d")).unwrap();
        std::fs::write(host.path(FOREIGN), "admin's").unwrap();
        let mut ledger = Ledger::default();
        let changes = host
            .put(&mut ledger, &[file(NET, "a"), file(STAGE1, "s")])
            .unwrap();
        assert_eq!(changes.paths.len(), 2);
        assert!(
            host.put(&mut ledger, &[file(NET, "a"), file(STAGE1, "s")])
                .unwrap()
                .is_empty(),
            "nothing to do"
        );
        let changes = host.put(&mut ledger, &[]).unwrap();
        assert_eq!(changes.paths.len(), 2);
        assert!(!host.path(NET).exists() && !host.path(STAGE1).exists());
        assert_eq!(
            std::fs::read_to_string(host.path(FOREIGN)).unwrap(),
            "admin's",
            "a foreign file is untouched"
        );
    }

    #[test]
    fn a_path_it_took_over_gets_its_original_back() {
        let host = host("original");
        std::fs::create_dir_all(host.path("/etc/rkt/net.d")).unwrap();
        std::fs::write(host.path(NET), "hand-made").unwrap();
        let mut ledger = Ledger::default();
        host.put(&mut ledger, &[file(NET, "ours")]).unwrap();
        host.put(&mut ledger, &[]).unwrap();
        assert_eq!(
            std::fs::read_to_string(host.path(NET)).unwrap(),
            "hand-made"
        );
    }

    #[test]
    fn a_write_the_ledger_did_not_record_is_not_taken_for_the_original() {
        // The agent began a change, wrote a new file and was killed before saving the ledger that names it.
        let host = host("crash-before-save");
        let mut ledger = Ledger::default();
        host.put(&mut ledger, &[file(NET, "old net")]).unwrap();
        let new = [file(NET, "new net"), file(STAGE1, "new stage1")];
        host.begin(&mut ledger, &new, "h2").unwrap();
        let saved = ledger.clone();
        host.put(&mut ledger, &new).unwrap();
        // The next agent starts from the saved ledger, with the file already on disk.
        let mut ledger = saved;
        host.put(&mut ledger, &new).unwrap();
        assert_eq!(ledger.files[STAGE1].original, None);
        host.put(&mut ledger, &[file(NET, "old net")]).unwrap();
        assert!(
            !host.path(STAGE1).exists(),
            "the agent's own file was kept as the original"
        );
    }

    #[test]
    fn a_write_made_before_a_crash_still_counts_as_a_change() {
        // Killed after writing the new file and saving the ledger, before restarting the rkt API service: the
        // next agent finds the file in place but must still restart the service for it.
        let host = host("crash-before-restart");
        let mut ledger = Ledger::default();
        host.put(&mut ledger, &[file(NET, "old net")]).unwrap();
        let new = [file(NET, "new net")];
        host.begin(&mut ledger, &new, "h2").unwrap();
        host.put(&mut ledger, &new).unwrap();
        let changes = host.put(&mut ledger, &new).unwrap();
        assert_eq!(changes.paths, [NET]);
        assert!(!changes.written_now, "the file was in place already");
        ledger.applied("h2");
        assert!(
            host.put(&mut ledger, &new).unwrap().is_empty(),
            "once committed, nothing changes"
        );
    }

    #[test]
    fn a_spec_changed_half_way_records_its_new_paths_before_writing_them() {
        let host = host("changed-half-way");
        let mut ledger = Ledger::default();
        host.put(&mut ledger, &[file(NET, "old net")]).unwrap();
        host.begin(&mut ledger, &[file(NET, "net 2")], "h2")
            .unwrap();
        host.put(&mut ledger, &[file(NET, "net 2")]).unwrap();
        let newer = [file(NET, "net 3"), file(STAGE1, "stage1 3")];
        host.begin(&mut ledger, &newer, "h3").unwrap();
        let saved = ledger.clone();
        host.put(&mut ledger, &newer).unwrap();
        let mut ledger = saved;
        host.put(&mut ledger, &newer).unwrap();
        host.roll_back(&mut ledger).unwrap();
        assert_eq!(std::fs::read_to_string(host.path(NET)).unwrap(), "old net");
        assert!(!host.path(STAGE1).exists());
    }

    #[test]
    fn roll_back_restores_every_byte() {
        let host = host("rollback");
        let mut ledger = Ledger::default();
        host.put(&mut ledger, &[file(NET, "old net")]).unwrap();
        let before = ledger.clone();
        let new = [file(NET, "new net"), file(STAGE1, "new stage1")];
        host.begin(&mut ledger, &new, "h2").unwrap();
        host.put(&mut ledger, &new).unwrap();
        assert_eq!(std::fs::read_to_string(host.path(NET)).unwrap(), "new net");
        let changes = host.roll_back(&mut ledger).unwrap();
        assert_eq!(changes.paths.len(), 2);
        assert_eq!(std::fs::read_to_string(host.path(NET)).unwrap(), "old net");
        assert!(!host.path(STAGE1).exists());
        assert_eq!(ledger.files, before.files);
        assert!(ledger.pending.is_none());
    }

    #[test]
    fn drift_is_found_and_repaired() {
        let host = host("drift");
        let mut ledger = Ledger::default();
        host.put(&mut ledger, &[file(NET, "ours")]).unwrap();
        assert!(host.drifted(&ledger).unwrap().is_empty());
        std::fs::write(host.path(NET), "edited by hand").unwrap();
        let drifted = host.drifted(&ledger).unwrap();
        assert_eq!(drifted, [NET]);
        host.repair(&ledger, &drifted).unwrap();
        assert_eq!(std::fs::read_to_string(host.path(NET)).unwrap(), "ours");
    }
}
