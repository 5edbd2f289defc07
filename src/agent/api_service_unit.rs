//! Whose the rkt API service's unit file is: the agent writes it (through the ledger, like every file of its own)
//! where no other unit provides the service, and leaves one written by hand or shipped by a package alone unless
//! `spec.rkt.apiServiceUnitPolicy` says `Replace`.

use super::{host_files::Host, ledger::Ledger, systemd::Systemd};
use crate::{
    api::{HostFile, RktServiceSpec, UnitPolicy, host_paths::api_service_unit_path},
    render::api_service_unit,
};

/// How many differing lines a report names at most.
const DIFFERENCE_LINES: usize = 12;

/// Who provides the rkt API service's unit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UnitFinding {
    /// The agent does: this file is among the files it puts on the node.
    Agent(HostFile),
    /// Another unit file does (written by hand, or shipped by a package), and is left as it is.
    LeftAlone {
        /// Where that unit file is.
        file: String,
        /// Its lines that the agent's would not have (`-`) and the agent's lines it lacks (`+`).
        difference: Vec<String>,
    },
    /// `apiServiceUnitPolicy: Leave`: the administrator provides it.
    NotManaged,
}

impl UnitFinding {
    /// The unit file the agent puts on the node, if any.
    pub fn file(&self) -> Option<&HostFile> {
        match self {
            Self::Agent(file) => Some(file),
            Self::LeftAlone { .. } | Self::NotManaged => None,
        }
    }
}

/// Who provides `rkt`'s API service unit on this node, and so whether the agent writes it: its own (in the
/// ledger) it keeps writing; another, at the agent's path or wherever systemd loaded the unit from, it leaves
/// unless told to replace it.
pub async fn find(
    host: &Host,
    ledger: &Ledger,
    systemd: Option<&Systemd>,
    rkt: &RktServiceSpec,
) -> UnitFinding {
    let ours = api_service_unit::render(rkt);
    match rkt.api_service_unit_policy {
        UnitPolicy::Leave => return UnitFinding::NotManaged,
        UnitPolicy::Replace => return UnitFinding::Agent(ours),
        UnitPolicy::Create if ledger.files.contains_key(&ours.path) => {
            return UnitFinding::Agent(ours);
        }
        UnitPolicy::Create => {}
    }
    let path = api_service_unit_path(&rkt.api_service_unit);
    let elsewhere = match systemd {
        Some(systemd) => match systemd.unit_state(&rkt.api_service_unit).await {
            Ok(state) => Some(state.fragment_path).filter(|fragment| !fragment.is_empty()),
            Err(error) => {
                tracing::warn!(%error, "cannot ask systemd where the rkt API service's unit is");
                None
            }
        },
        None => None,
    };
    for file in [Some(path), elsewhere].into_iter().flatten() {
        match std::fs::read_to_string(host.path(&file)) {
            Ok(theirs) => {
                return UnitFinding::LeftAlone {
                    difference: difference(&theirs, &ours.content),
                    file,
                };
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                // Something is there that the agent cannot read: not the agent's to overwrite.
                return UnitFinding::LeftAlone {
                    difference: vec![format!("(cannot read it: {error})")],
                    file,
                };
            }
        }
    }
    UnitFinding::Agent(ours)
}

/// The directive lines of `theirs` that `ours` lacks (`-`), then those of `ours` that `theirs` lacks (`+`);
/// comments and blank lines do not count. At most [`DIFFERENCE_LINES`], and a last line saying how many more.
pub fn difference(theirs: &str, ours: &str) -> Vec<String> {
    let directives = |text: &str| -> Vec<String> {
        text.lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#') && !line.starts_with(';'))
            .map(str::to_owned)
            .collect()
    };
    let (theirs, ours) = (directives(theirs), directives(ours));
    let mut lines: Vec<String> = theirs
        .iter()
        .filter(|line| !ours.contains(line))
        .map(|line| format!("-{line}"))
        .chain(
            ours.iter()
                .filter(|line| !theirs.contains(line))
                .map(|line| format!("+{line}")),
        )
        .collect();
    if lines.len() > DIFFERENCE_LINES {
        let more = lines.len() - DIFFERENCE_LINES;
        lines.truncate(DIFFERENCE_LINES);
        lines.push(format!("(and {more} more)"));
    }
    lines
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::agent::ledger::ManagedFile;

    fn rkt(policy: UnitPolicy) -> RktServiceSpec {
        RktServiceSpec {
            version: "1.30.0".into(),
            api_endpoint: "localhost:15441".into(),
            api_service_unit: "rkt-api.service".into(),
            api_service_unit_policy: policy,
            path: None,
            install: None,
        }
    }

    fn host() -> (tempfile::TempDir, Host) {
        let dir = tempfile::tempdir().unwrap();
        let host = Host {
            root: dir.path().to_owned(),
        };
        (dir, host)
    }

    const HAND_WRITTEN: &str =
        "[Unit]\nDescription=rkt API service\n\n[Service]\nExecStart=/usr/bin/rkt api-service\n";

    fn hand_written(host: &Host) {
        let path = host.path("/etc/systemd/system/rkt-api.service");
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, HAND_WRITTEN).unwrap();
    }

    #[tokio::test]
    async fn a_missing_unit_is_the_agents_to_write() {
        let (_dir, host) = host();
        let finding = find(&host, &Ledger::default(), None, &rkt(UnitPolicy::Create)).await;
        let file = finding.file().expect("the agent writes it");
        assert_eq!(file.path, "/etc/systemd/system/rkt-api.service");
    }

    #[tokio::test]
    async fn a_hand_written_unit_is_left_alone_with_its_difference_unless_replaced() {
        let (_dir, host) = host();
        hand_written(&host);
        let finding = find(&host, &Ledger::default(), None, &rkt(UnitPolicy::Create)).await;
        let UnitFinding::LeftAlone { file, difference } = finding else {
            panic!("{finding:?}")
        };
        assert_eq!(file, "/etc/systemd/system/rkt-api.service");
        assert!(
            difference.contains(&"-ExecStart=/usr/bin/rkt api-service".to_owned())
                && difference.contains(
                    &"+ExecStart=/usr/bin/rkt api-service --listen=localhost:15441".to_owned()
                ),
            "{difference:?}"
        );
        assert!(
            !difference.iter().any(|line| line.contains("Description")),
            "{difference:?}"
        );

        let replaced = find(&host, &Ledger::default(), None, &rkt(UnitPolicy::Replace)).await;
        assert!(replaced.file().is_some());
        let left = find(&host, &Ledger::default(), None, &rkt(UnitPolicy::Leave)).await;
        assert_eq!(left, UnitFinding::NotManaged);
    }

    #[tokio::test]
    async fn the_agents_own_unit_stays_its_own() {
        let (_dir, host) = host();
        hand_written(&host); // An edit of the agent's unit: drift, repaired, not a hand-written unit.
        let mut ledger = Ledger::default();
        ledger.files.insert(
            "/etc/systemd/system/rkt-api.service".into(),
            ManagedFile::default(),
        );
        let finding = find(&host, &ledger, None, &rkt(UnitPolicy::Create)).await;
        assert!(finding.file().is_some(), "{finding:?}");
    }

    #[test]
    fn a_long_difference_is_cut_short_and_says_so() {
        let theirs: String = (0..20).map(|n| format!("Environment=N{n}=1\n")).collect();
        let lines = difference(&theirs, "");
        assert_eq!(lines.len(), DIFFERENCE_LINES + 1);
        assert_eq!(lines.last().map(String::as_str), Some("(and 8 more)"));
    }
}
