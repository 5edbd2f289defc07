//! The agent's record of what it manages on the host, kept on disk so a restarted agent knows which files are
//! its own (and may be changed or removed) and which are not (and are never touched).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::atomic_file::{self, FileError};
use crate::api::RktServiceSpec;

/// A file the agent manages.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ManagedFile {
    /// What the file must contain; anything else on disk is drift, repaired by rewriting this.
    pub content: String,
    pub mode: u32,
    /// What was at this path before the agent first wrote it; put back when the agent lets go of the path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<String>,
}

/// A change under way: what to go back to if it fails, kept until it succeeds or is rolled back.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Transaction {
    /// The spec hash being applied.
    pub hash: String,
    /// The managed files before the change began.
    pub files_before: BTreeMap<String, ManagedFile>,
    /// Every touched path's content before the change (`None`: it did not exist).
    pub contents_before: BTreeMap<String, Option<String>>,
    /// When the agent asked systemd to restart the rkt API service for this change (microseconds since the
    /// epoch, systemd's clock): a service started later already runs on the new files, so an agent that stopped
    /// before committing does not restart it a second time. Cleared before a rollback touches the files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_requested_at: Option<u64>,
    /// Where `/opt/rkt/current` pointed before the change, when the change installs a rkt release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_before: Option<LinkBefore>,
}

/// The installed release the node ran before a change switched it.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LinkBefore {
    /// The link's target (`releases/v1.29.0-…`); `None`: there was no link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// What proved a spec's network on the node.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NetworkProof {
    /// The spec hash.
    pub hash: String,
    /// What the proof showed, for the reports.
    pub proof: String,
}

/// Everything the agent remembers, in one JSON file written atomically.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Ledger {
    /// Managed files by absolute host path.
    pub files: BTreeMap<String, ManagedFile>,
    /// The spec hash whose files are in place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_hash: Option<String>,
    /// A spec hash that broke the rkt API service and was rolled back: not tried again until the spec changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_hash: Option<String>,
    /// Why `failed_hash` was rolled back, reported for as long as that spec stays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_reason: Option<String>,
    /// The rkt API service the managed files belong to, to restart it after letting go of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_service: Option<RktServiceSpec>,
    /// The last proof that the network of a spec works on the node, so a restarted agent does not prove it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_proven: Option<NetworkProof>,
    /// The rkt releases the node was switched to, the latest last; the last two are kept, for rollback.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub releases: Vec<String>,
    /// A change that had begun when the agent last stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Transaction>,
}

impl Ledger {
    /// No spec is in play any more (no config selects the node): nothing applied, failed or under way.
    pub fn forget_spec(&mut self) {
        self.applied_hash = None;
        self.failed_hash = None;
        self.failed_reason = None;
        self.network_proven = None;
        self.pending = None;
    }

    /// Every managed file was let go of: no spec is in play, and the rkt API service they belonged to (returned,
    /// to restart it without them) is no longer the agent's concern.
    pub fn let_go(&mut self) -> Option<RktServiceSpec> {
        self.forget_spec();
        self.api_service.take()
    }

    /// The spec `hash` is in place: the change is over, and an earlier failure no longer holds.
    pub fn applied(&mut self, hash: &str) {
        self.pending = None;
        self.applied_hash = Some(hash.to_owned());
        self.failed_hash = None;
        self.failed_reason = None;
    }

    /// The spec `hash` broke the rkt API service and was rolled back: not to be tried again until the spec
    /// changes. The reason follows once the rollback is over ([`Ledger::rollback_explained`]).
    pub fn rolled_back(&mut self, hash: &str) {
        self.failed_hash = Some(hash.to_owned());
    }

    /// Why the failed spec was rolled back, reported for as long as that spec stays.
    pub fn rollback_explained(&mut self, reason: &str) {
        self.failed_reason = Some(reason.to_owned());
    }
}

impl Ledger {
    /// The node now runs the release `name`; returns the releases to keep (it and the one before it).
    pub fn switched_to(&mut self, name: &str) -> Vec<String> {
        self.releases.retain(|release| release != name);
        self.releases.push(name.to_owned());
        let keep_from = self.releases.len().saturating_sub(RELEASES_KEPT);
        self.releases.drain(..keep_from);
        self.releases.clone()
    }
}

/// How many installed releases stay on the node: the one it runs and the one before, to roll back to.
const RELEASES_KEPT: usize = 2;

/// Where the ledger lives and how it is read and saved.
pub struct LedgerFile {
    path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{path} is not a valid ledger ({source}); move it away to let the agent start afresh")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// A ledger from the bytes of the file at `path`.
pub(crate) fn parse(path: &Path, bytes: &[u8]) -> Result<Ledger, LedgerError> {
    serde_json::from_slice(bytes).map_err(|source| LedgerError::Corrupt {
        path: path.to_owned(),
        source,
    })
}

impl LedgerFile {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            path: state_dir.join("ledger.json"),
        }
    }

    /// The saved ledger, or an empty one on a first start.
    pub fn load(&self) -> Result<Ledger, LedgerError> {
        match atomic_file::read(&self.path)? {
            None => Ok(Ledger::default()),
            Some(bytes) => parse(&self.path, &bytes),
        }
    }

    pub fn save(&self, ledger: &Ledger) -> Result<(), LedgerError> {
        let bytes = serde_json::to_vec_pretty(ledger).map_err(|source| LedgerError::Corrupt {
            path: self.path.clone(),
            source,
        })?;
        atomic_file::write(&self.path, &bytes, 0o600)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger() -> Ledger {
        Ledger {
            applied_hash: Some("old".into()),
            pending: Some(Transaction {
                hash: "new".into(),
                ..Transaction::default()
            }),
            ..Ledger::default()
        }
    }

    #[test]
    fn a_rollback_keeps_the_failed_hash_and_its_reason_until_a_spec_applies() {
        let mut ledger = ledger();
        ledger.rolled_back("new");
        ledger.rollback_explained("GetInfo failed");
        assert_eq!(ledger.failed_hash.as_deref(), Some("new"));
        assert_eq!(ledger.failed_reason.as_deref(), Some("GetInfo failed"));
        ledger.applied("newer");
        assert_eq!(ledger.applied_hash.as_deref(), Some("newer"));
        assert_eq!(
            (ledger.failed_hash, ledger.failed_reason, ledger.pending),
            (None, None, None)
        );
    }

    #[test]
    fn forgetting_the_spec_keeps_the_managed_files() {
        let mut ledger = ledger();
        ledger
            .files
            .insert("/etc/rkt/net.d/x.conf".into(), ManagedFile::default());
        ledger.rolled_back("new");
        ledger.forget_spec();
        assert_eq!(
            ledger.files.len(),
            1,
            "the files are let go of by Host::put, not here"
        );
        assert_eq!(
            (ledger.applied_hash, ledger.failed_hash, ledger.pending),
            (None, None, None)
        );
    }
}
