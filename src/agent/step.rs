//! The agent's decisions, pure: from what it knows (the desired spec, its ledger, what it saw on the host) and how
//! far the current reconcile got, the one next step. There are two directions: toward a spec ([`next_apply_step`])
//! and toward nothing of the agent's on the node ([`next_clean_step`]). The loop in `reconciler` performs each step
//! and feeds its result back as progress; it decides nothing itself. Every branch is unit-tested here, without a
//! host.

use super::{
    atomic_file::FileError, checks::Outcome, host_files::Changes, ledger::Ledger,
    rkt_service::RestartError,
};
use crate::api::{
    HostFile, RktNodeState, RktNodeStateSpec, RktServiceSpec,
    host_paths::{
        self, RKT_CURRENT_LINK, RKT_LOCAL_CONFIG_DIR, RKT_NET_DIR, api_service_unit_path,
    },
};

/// The next step, or the end of the reconcile.
#[derive(Debug, PartialEq, Eq)]
pub enum Next<S> {
    Do(S),
    /// The reconcile is over; `retry` when something failed that only trying again mends.
    Done {
        retry: bool,
    },
}

/// What the node should hold, from the watch of its RktNodeState.
#[derive(Clone, Copy, Debug)]
pub enum Desired<'a> {
    /// The files and rkt API service of this state's spec.
    Spec(&'a RktNodeState),
    /// Nothing of the agent's: no RktNodeConfig selects the node, or (`deleting`) its RktNodeState is being
    /// deleted and its cleanup finalizer is released once the node is clean.
    Nothing { deleting: Option<&'a RktNodeState> },
}

impl<'a> Desired<'a> {
    pub fn of(state: Option<&'a RktNodeState>) -> Self {
        match state {
            None => Self::Nothing { deleting: None },
            Some(state) if state.metadata.deletion_timestamp.is_some() => Self::Nothing {
                deleting: Some(state),
            },
            Some(state) => Self::Spec(state),
        }
    }
}

/// What the agent knows when it applies a spec.
#[derive(Clone, Copy, Debug)]
pub struct ApplyKnowledge<'a> {
    pub spec: &'a RktNodeStateSpec,
    /// The files the node must hold: the spec's, and the rkt API service's unit when the agent writes it.
    pub files: &'a [HostFile],
    /// The rkt API service's unit is loaded and stopped (`inactive` or `failed`): its state.
    pub stopped: Option<&'a str>,
    pub ledger: &'a Ledger,
    /// Managed files whose content or mode on the host differs from the ledger's, read before the reconcile.
    pub drifted: &'a [String],
    /// The spec hash the agent last reported `Applying` for.
    pub announced: Option<&'a str>,
    /// systemd started the rkt API service after the restart this change asked for (an agent stopped between
    /// asking and committing): the service already runs on the new files.
    pub restarted_since_request: bool,
    /// The release of `spec.rkt.install` on the node; `None` without an install source.
    pub release: Option<ReleaseOnNode<'a>>,
}

/// Where the release the spec installs is on the node.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReleaseOnNode<'a> {
    /// Downloaded, verified and unpacked in `/opt/rkt/releases`.
    pub ready: bool,
    /// `/opt/rkt/current` points at it: the node runs it.
    pub current: bool,
    /// Why installing it failed in a way that the same archive would fail again: not tried until the spec changes.
    pub refused: Option<&'a str>,
}

/// Why a change did not take: what the rollback answers.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error("writing the files failed: {0}")]
    Write(#[source] FileError),
    #[error(transparent)]
    Restart(#[from] RestartError),
}

/// How far applying a spec got: the result of the last step performed.
#[derive(Debug)]
pub enum ApplyProgress {
    /// Nothing done yet.
    Start,
    /// The release of `spec.rkt.install` was made ready on the node (nothing the node runs changed), or not: why.
    Installed(Result<(), String>),
    /// The configuration rkt would start with after the change was checked: `Err` holds why rkt would refuse it.
    Checked(Result<(), String>),
    /// Drifted files were rewritten, or rewriting them failed (and was reported).
    Repaired,
    /// `Applying` was reported for the spec.
    Announced,
    /// The change was recorded in the ledger, so it can be undone.
    Begun(Result<(), FileError>),
    /// The spec's files were written.
    Written(Result<Changes, FileError>),
    /// The rkt API service was restarted after `changes` and checked.
    Restarted {
        changes: Changes,
        result: Result<(), RestartError>,
    },
    /// The network of the change's contained-network file was proven on the node, or not: `Err` holds why the
    /// configuration does not work (a plugin that is missing, or flannel not running, is not the change's fault and
    /// is not an error here).
    Proven {
        changes: Changes,
        result: Result<(), String>,
    },
    /// The change is over and recorded as applied.
    Committed,
    /// The files from before the change, which failed for `cause`, were put back.
    Restored {
        cause: String,
        result: Result<Changes, FileError>,
    },
    /// After the restore, the rkt API service was restarted and checked.
    RestartedAfterRollback {
        cause: String,
        restored: Changes,
        result: Result<(), RestartError>,
    },
    /// The rollback's outcome was recorded in the ledger and announced.
    Explained(Outcome),
    /// The stopped rkt API service was started, or starting it failed (announced either way; the report says
    /// whether it answers now); then this outcome is to be reported.
    Started(Outcome),
    /// Status and conditions were reported.
    Reported,
}

/// What to do next toward a spec.
#[derive(Debug, PartialEq, Eq)]
pub enum ApplyStep {
    /// Rewrite these drifted managed files from the ledger.
    Repair(Vec<String>),
    /// Download, verify and unpack the release of `spec.rkt.install` beside the one the node runs.
    Install,
    /// Check the configuration rkt would start with after the change, before anything is written.
    Check,
    /// Report the spec as `Applying` (once per spec).
    Announce,
    /// Record the change in the ledger: what to go back to.
    Begin,
    /// Write the spec's files, and switch `/opt/rkt/current` to the spec's release.
    Write,
    /// Restart the spec's rkt API service and wait for GetInfo.
    Restart { changes: Changes },
    /// Wait for GetInfo from the rkt API service that an earlier agent restarted for this change.
    CheckHealth { changes: Changes },
    /// Prove the network of the spec's contained-network file, which the change wrote, on the node.
    ProveNetwork { changes: Changes },
    /// Record the spec as applied; `restarted` says whether the service was restarted for it.
    Commit { changes: Changes, restarted: bool },
    /// Put back the files from before the change, which failed for `cause`.
    RollBack { cause: String },
    /// Restart the spec's rkt API service on the files restored after `cause`.
    RestartAfterRollback { cause: String, restored: Changes },
    /// Record and announce how the rollback ended.
    Explain(Outcome),
    /// Start the rkt API service, found stopped (`was`: `inactive` or `failed`), then report `outcome`.
    StartService { outcome: Outcome, was: String },
    /// Observe the rkt API service, the versions and net.d, and report this outcome.
    Report(Outcome),
}

/// The one next step toward the spec.
pub fn next_apply_step(knowledge: &ApplyKnowledge<'_>, progress: ApplyProgress) -> Next<ApplyStep> {
    let spec = knowledge.spec;
    Next::Do(match progress {
        ApplyProgress::Start => match settled(knowledge) {
            Some(_) if !knowledge.drifted.is_empty() => {
                ApplyStep::Repair(knowledge.drifted.to_vec())
            }
            Some(outcome) => report(knowledge, outcome),
            None => first_change_step(knowledge),
        },
        ApplyProgress::Repaired => match settled(knowledge) {
            Some(outcome) => report(knowledge, outcome),
            None => first_change_step(knowledge),
        },
        ApplyProgress::Installed(Ok(())) => ApplyStep::Check,
        // Nothing the node runs was touched.
        ApplyProgress::Installed(Err(reason)) => report(knowledge, Outcome::Failed(reason)),
        ApplyProgress::Checked(Ok(())) if knowledge.announced == Some(spec.hash.as_str()) => {
            ApplyStep::Begin
        }
        ApplyProgress::Checked(Ok(())) => ApplyStep::Announce,
        // Nothing was written and the running service was not touched; checked again on every reconcile, so a
        // foreign file that made rkt refuse the change can be removed without touching the config.
        ApplyProgress::Checked(Err(reason)) => report(knowledge, Outcome::Refused(reason)),
        ApplyProgress::Announced => ApplyStep::Begin,
        ApplyProgress::Begun(Ok(())) => ApplyStep::Write,
        ApplyProgress::Begun(Err(error)) => ApplyStep::Report(Outcome::Failed(format!(
            "recording the change in the ledger failed: {error}"
        ))),
        ApplyProgress::Written(Ok(changes)) if restart_needed(spec, &changes) => {
            // Only if this agent wrote nothing itself: a file it (re)wrote is newer than that restart.
            if knowledge.restarted_since_request && !changes.written_now {
                ApplyStep::CheckHealth { changes }
            } else {
                ApplyStep::Restart { changes }
            }
        }
        ApplyProgress::Written(Ok(changes)) => ApplyStep::Commit {
            changes,
            restarted: false,
        },
        ApplyProgress::Written(Err(error)) => ApplyStep::RollBack {
            cause: ChangeError::Write(error).to_string(),
        },
        ApplyProgress::Restarted {
            changes,
            result: Ok(()),
        } if changes.touches(RKT_NET_DIR) && has_contained_network(spec) => {
            ApplyStep::ProveNetwork { changes }
        }
        ApplyProgress::Restarted {
            changes,
            result: Ok(()),
        }
        | ApplyProgress::Proven {
            changes,
            result: Ok(()),
        } => ApplyStep::Commit {
            changes,
            restarted: true,
        },
        ApplyProgress::Proven {
            result: Err(error), ..
        } => ApplyStep::RollBack {
            cause: format!("the network config does not work on this node: {error}"),
        },
        ApplyProgress::Restarted {
            result: Err(error), ..
        } => ApplyStep::RollBack {
            cause: ChangeError::Restart(error).to_string(),
        },
        ApplyProgress::Committed => ApplyStep::Report(Outcome::Applied),
        ApplyProgress::Restored {
            cause,
            result: Err(error),
        } => ApplyStep::Explain(Outcome::Failed(format!(
            "{cause}; restoring the previous files failed too: {error}"
        ))),
        ApplyProgress::Restored {
            cause,
            result: Ok(restored),
        } => ApplyStep::RestartAfterRollback { cause, restored },
        ApplyProgress::RestartedAfterRollback {
            cause,
            restored,
            result: Ok(()),
        } => ApplyStep::Explain(Outcome::RolledBack(format!(
            "{cause}; restored the previous {} and restarted {}",
            restored.paths.join(", "),
            spec.rkt.api_service_unit
        ))),
        ApplyProgress::RestartedAfterRollback {
            cause,
            result: Err(error),
            ..
        } => ApplyStep::Explain(Outcome::Failed(format!(
            "{cause}; restored the previous files, but the service is still unhealthy: {error}"
        ))),
        ApplyProgress::Explained(outcome) => ApplyStep::Report(outcome),
        ApplyProgress::Started(outcome) => ApplyStep::Report(outcome),
        ApplyProgress::Reported => return Next::Done { retry: false },
    })
}

/// The first step of a change: installing its release when it is not on the node yet, else checking it.
fn first_change_step(knowledge: &ApplyKnowledge<'_>) -> ApplyStep {
    match knowledge.release {
        Some(ReleaseOnNode {
            ready: false,
            refused: Some(reason),
            ..
        }) => report(knowledge, Outcome::Failed(reason.to_owned())),
        Some(ReleaseOnNode { ready: false, .. }) => ApplyStep::Install,
        _ => ApplyStep::Check,
    }
}

/// Reporting `outcome` of a reconcile that restarted nothing: a stopped rkt API service is started first (a
/// reconcile that restarted it has just seen it answer).
fn report(knowledge: &ApplyKnowledge<'_>, outcome: Outcome) -> ApplyStep {
    match knowledge.stopped {
        Some(was) => ApplyStep::StartService {
            outcome,
            was: was.to_owned(),
        },
        None => ApplyStep::Report(outcome),
    }
}

/// What to report for the spec when nothing is to be done: it is applied (and the agent's files are the ones it
/// holds: a unit file it may now write, say, is not yet), or it broke the service before and is not tried again
/// until the spec changes. `None` when it is still to be applied.
fn settled(knowledge: &ApplyKnowledge<'_>) -> Option<Outcome> {
    let (ledger, hash) = (knowledge.ledger, knowledge.spec.hash.as_str());
    let holds_the_files = ledger.files.len() == knowledge.files.len()
        && knowledge
            .files
            .iter()
            .all(|file| ledger.files.contains_key(&file.path));
    let runs_the_release = knowledge.release.is_none_or(|release| release.current);
    if ledger.applied_hash.as_deref() == Some(hash)
        && ledger.pending.is_none()
        && holds_the_files
        && runs_the_release
    {
        Some(Outcome::Applied)
    } else if ledger.failed_hash.as_deref() == Some(hash) {
        Some(Outcome::RolledBack(
            ledger
                .failed_reason
                .clone()
                .unwrap_or_else(|| "this configuration broke the rkt API service".to_owned()),
        ))
    } else {
        None
    }
}

/// Whether the spec writes a contained-network configuration (a file in rkt's net.d).
pub fn has_contained_network(spec: &RktNodeStateSpec) -> bool {
    spec.files
        .iter()
        .any(|file| host_paths::is_below(&file.path, RKT_NET_DIR))
}

/// rkt reads its local configuration when the API service starts, systemd its unit, and a new release runs only
/// once restarted; other files (the kubelet's) take a restart only when the spec asks for one.
fn restart_needed(spec: &RktNodeStateSpec, changes: &Changes) -> bool {
    changes.touches(RKT_LOCAL_CONFIG_DIR)
        || changes.includes(RKT_CURRENT_LINK)
        || changes.includes(&api_service_unit_path(&spec.rkt.api_service_unit))
        || (spec.restart_api_service && !changes.is_empty())
}

/// What a change did to the rkt API service's unit file, which systemd must reload before the service is
/// (re)started or stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnitChange {
    Unchanged,
    /// Written or put back: it is there.
    Written,
    /// Removed: no unit file is there any more.
    Removed,
}

/// What the agent knows when nothing of its own should be on the node.
#[derive(Clone, Copy, Debug)]
pub struct CleanKnowledge<'a> {
    pub ledger: &'a Ledger,
    /// The RktNodeState is being deleted: its finalizer is released once the node is clean.
    pub deleting: bool,
}

/// How far cleaning the node got.
// One value at a time, passed from step to step: its size does not matter, and boxing would only add noise.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum CleanProgress {
    Start,
    /// Every managed file was let go of (restored or removed); `service` is the rkt API service they belonged to.
    LetGo {
        result: Result<Changes, FileError>,
        service: Option<RktServiceSpec>,
        /// Whether the service's unit file was among the files let go of, and is now gone.
        unit: UnitChange,
    },
    /// That rkt API service was restarted without the files (a failure is logged: a service that does not come
    /// back without our files is not ours to mend).
    ServiceRestarted,
    /// The agent's Node conditions were taken away.
    ConditionsCleared,
    /// The RktNodeState's cleanup finalizer was removed, or removing it failed.
    Released {
        released: bool,
    },
}

/// What to do next toward a clean node.
#[derive(Debug, PartialEq, Eq)]
pub enum CleanStep {
    /// Let go of every managed file.
    LetGo,
    /// Restart this rkt API service, whose configuration (or unit file) was let go of; systemd reloads its unit
    /// files first when `unit` changed.
    RestartService {
        service: RktServiceSpec,
        unit: UnitChange,
    },
    /// Stop and disable this rkt API service, whose unit file the agent wrote and has removed.
    StopService(RktServiceSpec),
    /// Take the agent's Node conditions away.
    ClearConditions,
    /// Remove the RktNodeState's cleanup finalizer.
    Release,
}

/// The one next step toward a clean node.
pub fn next_clean_step(knowledge: &CleanKnowledge<'_>, progress: CleanProgress) -> Next<CleanStep> {
    let clean = if knowledge.deleting {
        Next::Do(CleanStep::Release)
    } else {
        Next::Done { retry: false }
    };
    match progress {
        CleanProgress::Start if knowledge.ledger.files.is_empty() => clean,
        CleanProgress::Start => Next::Do(CleanStep::LetGo),
        CleanProgress::LetGo { result: Err(_), .. } => Next::Done { retry: true },
        CleanProgress::LetGo {
            result: Ok(_),
            service: Some(service),
            unit: UnitChange::Removed,
        } => Next::Do(CleanStep::StopService(service)),
        CleanProgress::LetGo {
            result: Ok(changes),
            service: Some(service),
            unit,
        } if changes.touches(RKT_LOCAL_CONFIG_DIR) || unit == UnitChange::Written => {
            Next::Do(CleanStep::RestartService { service, unit })
        }
        CleanProgress::LetGo { result: Ok(_), .. } | CleanProgress::ServiceRestarted => {
            Next::Do(CleanStep::ClearConditions)
        }
        CleanProgress::ConditionsCleared => clean,
        CleanProgress::Released { released } => Next::Done { retry: !released },
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Next::Do, *};
    use crate::{
        agent::{ledger::ManagedFile, ledger::Transaction, rkt_service::HealthError},
        api::UnitPolicy,
        rkt::client::RktApiError,
    };

    const NET: &str = "/etc/rkt/net.d/00-rktnetes.conf";
    const KUBELET: &str = "/etc/systemd/system/kubelet.service.d/10-rkt.conf";
    const UNIT: &str = "/etc/systemd/system/rkt-api.service";

    fn spec(hash: &str) -> RktNodeStateSpec {
        RktNodeStateSpec {
            config_name: "pool".to_owned(),
            files: vec![HostFile {
                path: NET.to_owned(),
                content: "{}".to_owned(),
                mode: 0o644,
            }],
            hash: hash.to_owned(),
            rkt: RktServiceSpec {
                version: "1.30.0".to_owned(),
                api_endpoint: "127.0.0.1:15441".to_owned(),
                api_service_unit: "rkt-api.service".to_owned(),
                api_service_unit_policy: UnitPolicy::Create,
                path: None,
                install: None,
            },
            restart_api_service: false,
        }
    }

    fn applied(hash: &str) -> Ledger {
        let mut ledger = Ledger::default();
        ledger.files.insert(NET.to_owned(), ManagedFile::default());
        ledger.applied(hash);
        ledger.api_service = Some(spec(hash).rkt);
        ledger
    }

    fn changes(paths: &[&str]) -> Changes {
        Changes {
            paths: paths.iter().map(|path| (*path).to_owned()).collect(),
            written_now: false,
        }
    }

    fn unhealthy() -> RestartError {
        let endpoint = "127.0.0.1:15441".to_owned();
        let timeout = Duration::from_secs(30);
        RestartError::Unhealthy(HealthError {
            endpoint: endpoint.clone(),
            timeout,
            last_error: RktApiError::Timeout { endpoint, timeout },
        })
    }

    fn io_error() -> FileError {
        FileError {
            action: "write",
            path: NET.into(),
            source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        }
    }

    fn knowing<'a>(spec: &'a RktNodeStateSpec, ledger: &'a Ledger) -> ApplyKnowledge<'a> {
        ApplyKnowledge {
            spec,
            files: &spec.files,
            stopped: None,
            ledger,
            drifted: &[],
            announced: None,
            restarted_since_request: false,
            release: None,
        }
    }

    #[test]
    fn a_new_spec_is_checked_announced_begun_written_restarted_and_committed() {
        let spec = spec("new");
        let ledger = applied("old");
        let knowledge = knowing(&spec, &ledger);
        let next = |progress| next_apply_step(&knowledge, progress);
        assert_eq!(next(ApplyProgress::Start), Do(ApplyStep::Check));
        assert_eq!(
            next(ApplyProgress::Checked(Ok(()))),
            Do(ApplyStep::Announce)
        );
        assert_eq!(next(ApplyProgress::Announced), Do(ApplyStep::Begin));
        assert_eq!(next(ApplyProgress::Begun(Ok(()))), Do(ApplyStep::Write));
        assert_eq!(
            next(ApplyProgress::Written(Ok(changes(&[NET])))),
            Do(ApplyStep::Restart {
                changes: changes(&[NET])
            }),
            "rkt reads /etc/rkt when its API service starts"
        );
        assert_eq!(
            next(ApplyProgress::Restarted {
                changes: changes(&[NET]),
                result: Ok(())
            }),
            Do(ApplyStep::ProveNetwork {
                changes: changes(&[NET])
            }),
            "a new contained network is proven on the node"
        );
        assert_eq!(
            next(ApplyProgress::Proven {
                changes: changes(&[NET]),
                result: Ok(())
            }),
            Do(ApplyStep::Commit {
                changes: changes(&[NET]),
                restarted: true
            })
        );
        assert_eq!(
            next(ApplyProgress::Committed),
            Do(ApplyStep::Report(Outcome::Applied))
        );
        assert_eq!(next(ApplyProgress::Reported), Next::Done { retry: false });
    }

    fn installing(hash: &str) -> RktNodeStateSpec {
        let mut spec = spec(hash);
        spec.rkt.install = Some(crate::api::RktInstall {
            url: "https://releases.example/rkt-v1.30.0.tar.gz".to_owned(),
            sha512: "ab".repeat(64),
            size_limit: None,
            signature_url: None,
        });
        spec
    }

    #[test]
    fn a_release_not_on_the_node_is_installed_first_and_a_failure_touches_nothing() {
        let spec = installing("new");
        let ledger = applied("old");
        let mut knowledge = knowing(&spec, &ledger);
        knowledge.release = Some(ReleaseOnNode::default());
        let next = |progress| next_apply_step(&knowledge, progress);
        assert_eq!(next(ApplyProgress::Start), Do(ApplyStep::Install));
        assert_eq!(next(ApplyProgress::Installed(Ok(()))), Do(ApplyStep::Check));
        assert_eq!(
            next(ApplyProgress::Installed(Err("digests differ".to_owned()))),
            Do(ApplyStep::Report(Outcome::Failed(
                "digests differ".to_owned()
            ))),
            "nothing was written, switched or restarted"
        );
        knowledge.release = Some(ReleaseOnNode {
            refused: Some("digests differ"),
            ..ReleaseOnNode::default()
        });
        assert_eq!(
            next_apply_step(&knowledge, ApplyProgress::Start),
            Do(ApplyStep::Report(Outcome::Failed(
                "digests differ".to_owned()
            ))),
            "the same archive is not fetched again until the spec changes"
        );
        knowledge.release = Some(ReleaseOnNode {
            ready: true,
            ..ReleaseOnNode::default()
        });
        assert_eq!(
            next_apply_step(&knowledge, ApplyProgress::Start),
            Do(ApplyStep::Check),
            "a release already unpacked is not fetched again"
        );
    }

    #[test]
    fn switching_the_release_takes_a_restart_and_an_applied_spec_must_run_it() {
        let spec = installing("new");
        let ledger = applied("new");
        let mut knowledge = knowing(&spec, &ledger);
        knowledge.release = Some(ReleaseOnNode {
            ready: true,
            current: true,
            refused: None,
        });
        assert_eq!(
            next_apply_step(&knowledge, ApplyProgress::Start),
            Do(ApplyStep::Report(Outcome::Applied))
        );
        knowledge.release = Some(ReleaseOnNode {
            ready: true,
            current: false,
            refused: None,
        });
        assert_eq!(
            next_apply_step(&knowledge, ApplyProgress::Start),
            Do(ApplyStep::Check),
            "a node switched away from the spec's release by hand is switched back"
        );
        let link = changes(&[RKT_CURRENT_LINK]);
        assert_eq!(
            next_apply_step(&knowledge, ApplyProgress::Written(Ok(link.clone()))),
            Do(ApplyStep::Restart { changes: link })
        );
    }

    #[test]
    fn a_network_that_does_not_work_is_rolled_back_with_the_plugins_error() {
        let spec = spec("new");
        let ledger = applied("old");
        let step = next_apply_step(
            &knowing(&spec, &ledger),
            ApplyProgress::Proven {
                changes: changes(&[NET]),
                result: Err("/usr/lib/cni/bridge ADD: failed to set bridge addr".to_owned()),
            },
        );
        assert!(
            matches!(&step, Do(ApplyStep::RollBack { cause }) if cause.contains("failed to set bridge addr")),
            "{step:?}"
        );
        let kubelet_only = changes(&[KUBELET]);
        assert_eq!(
            next_apply_step(
                &knowing(&spec, &ledger),
                ApplyProgress::Restarted {
                    changes: kubelet_only.clone(),
                    result: Ok(())
                }
            ),
            Do(ApplyStep::Commit {
                changes: kubelet_only,
                restarted: true
            }),
            "a change that leaves net.d alone proves nothing"
        );
    }

    #[test]
    fn a_service_restarted_for_the_change_before_the_agent_stopped_is_only_checked() {
        let spec = spec("new");
        let ledger = applied("old");
        let knowledge = ApplyKnowledge {
            restarted_since_request: true,
            ..knowing(&spec, &ledger)
        };
        assert_eq!(
            next_apply_step(&knowledge, ApplyProgress::Written(Ok(changes(&[NET])))),
            Do(ApplyStep::CheckHealth {
                changes: changes(&[NET])
            })
        );
        // A file this agent wrote (drift repaired while no agent ran, say) is newer than that restart.
        let rewritten = Changes {
            written_now: true,
            ..changes(&[NET])
        };
        assert_eq!(
            next_apply_step(&knowledge, ApplyProgress::Written(Ok(rewritten.clone()))),
            Do(ApplyStep::Restart { changes: rewritten })
        );
    }

    #[test]
    fn applying_is_announced_once_per_spec() {
        let spec = spec("new");
        let ledger = applied("old");
        let knowledge = ApplyKnowledge {
            announced: Some("new"),
            ..knowing(&spec, &ledger)
        };
        assert_eq!(
            next_apply_step(&knowledge, ApplyProgress::Checked(Ok(()))),
            Do(ApplyStep::Begin)
        );
    }

    #[test]
    fn a_stopped_service_is_started_before_the_report_when_nothing_else_restarted_it() {
        let spec = spec("h");
        let ledger = applied("h");
        let knowledge = ApplyKnowledge {
            stopped: Some("failed"),
            ..knowing(&spec, &ledger)
        };
        assert_eq!(
            next_apply_step(&knowledge, ApplyProgress::Start),
            Do(ApplyStep::StartService {
                outcome: Outcome::Applied,
                was: "failed".to_owned()
            })
        );
        assert_eq!(
            next_apply_step(&knowledge, ApplyProgress::Started(Outcome::Applied)),
            Do(ApplyStep::Report(Outcome::Applied))
        );
        assert_eq!(
            next_apply_step(&knowledge, ApplyProgress::Committed),
            Do(ApplyStep::Report(Outcome::Applied)),
            "a change that restarted the service has just seen it answer"
        );
    }

    #[test]
    fn a_unit_file_the_agent_may_now_write_is_written_and_restarts_the_service() {
        let spec = spec("h");
        let ledger = applied("h");
        let mut files = spec.files.clone();
        files.push(HostFile {
            path: UNIT.to_owned(),
            content: "[Service]\n".to_owned(),
            mode: 0o644,
        });
        let knowledge = ApplyKnowledge {
            files: &files,
            ..knowing(&spec, &ledger)
        };
        assert_eq!(
            next_apply_step(&knowledge, ApplyProgress::Start),
            Do(ApplyStep::Check),
            "the hand-written unit was removed: the applied spec is not settled"
        );
        assert_eq!(
            next_apply_step(&knowledge, ApplyProgress::Written(Ok(changes(&[UNIT])))),
            Do(ApplyStep::Restart {
                changes: changes(&[UNIT])
            })
        );
    }

    #[test]
    fn a_change_rkt_would_refuse_is_reported_without_touching_anything() {
        let spec = spec("new");
        let ledger = applied("old");
        let knowledge = knowing(&spec, &ledger);
        let reason = "rkt would refuse its configuration and not start: both ... define".to_owned();
        assert_eq!(
            next_apply_step(&knowledge, ApplyProgress::Checked(Err(reason.clone()))),
            Do(ApplyStep::Report(Outcome::Refused(reason))),
            "not announced, begun, written or restarted"
        );
    }

    #[test]
    fn files_outside_rkt_take_a_restart_only_when_the_spec_asks() {
        let mut spec = spec("new");
        let ledger = Ledger::default();
        let written = |paths: &[&str]| ApplyProgress::Written(Ok(changes(paths)));
        assert_eq!(
            next_apply_step(&knowing(&spec, &ledger), written(&[KUBELET])),
            Do(ApplyStep::Commit {
                changes: changes(&[KUBELET]),
                restarted: false
            })
        );
        spec.restart_api_service = true;
        assert_eq!(
            next_apply_step(&knowing(&spec, &ledger), written(&[KUBELET])),
            Do(ApplyStep::Restart {
                changes: changes(&[KUBELET])
            })
        );
        assert_eq!(
            next_apply_step(&knowing(&spec, &ledger), written(&[])),
            Do(ApplyStep::Commit {
                changes: changes(&[]),
                restarted: false
            }),
            "nothing written, nothing to restart"
        );
    }

    #[test]
    fn an_applied_spec_is_skipped() {
        let spec = spec("h");
        let ledger = applied("h");
        assert_eq!(
            next_apply_step(&knowing(&spec, &ledger), ApplyProgress::Start),
            Do(ApplyStep::Report(Outcome::Applied))
        );
    }

    #[test]
    fn drift_of_an_applied_spec_is_repaired_and_a_change_overwrites_it() {
        let spec = spec("h");
        let ledger = applied("h");
        let drifted = [NET.to_owned()];
        let knowledge = ApplyKnowledge {
            drifted: &drifted,
            ..knowing(&spec, &ledger)
        };
        assert_eq!(
            next_apply_step(&knowledge, ApplyProgress::Start),
            Do(ApplyStep::Repair(vec![NET.to_owned()]))
        );
        assert_eq!(
            next_apply_step(&knowledge, ApplyProgress::Repaired),
            Do(ApplyStep::Report(Outcome::Applied))
        );
        let newer = super::tests::spec("newer");
        assert_eq!(
            next_apply_step(
                &ApplyKnowledge {
                    spec: &newer,
                    ..knowledge
                },
                ApplyProgress::Start
            ),
            Do(ApplyStep::Check),
            "a change overwrites the drifted files anyway"
        );
    }

    #[test]
    fn a_change_cut_short_is_finished_even_when_its_hash_was_applied_before() {
        let spec = spec("h");
        let mut ledger = applied("h");
        ledger.pending = Some(Transaction {
            hash: "h".to_owned(),
            ..Transaction::default()
        });
        assert_eq!(
            next_apply_step(&knowing(&spec, &ledger), ApplyProgress::Start),
            Do(ApplyStep::Check)
        );
    }

    #[test]
    fn a_spec_that_was_rolled_back_is_not_retried_until_it_changes() {
        let spec = spec("bad");
        let mut ledger = applied("old");
        ledger.rolled_back("bad");
        ledger.rollback_explained("GetInfo failed");
        let drifted = [NET.to_owned()];
        let knowledge = ApplyKnowledge {
            drifted: &drifted,
            ..knowing(&spec, &ledger)
        };
        assert_eq!(
            next_apply_step(&knowledge, ApplyProgress::Start),
            Do(ApplyStep::Repair(vec![NET.to_owned()])),
            "the restored files are kept as they are"
        );
        assert_eq!(
            next_apply_step(&knowledge, ApplyProgress::Repaired),
            Do(ApplyStep::Report(Outcome::RolledBack(
                "GetInfo failed".to_owned()
            )))
        );
        let newer = super::tests::spec("newer");
        assert_eq!(
            next_apply_step(&knowing(&newer, &ledger), ApplyProgress::Start),
            Do(ApplyStep::Check),
            "a changed spec is tried"
        );
    }

    #[test]
    fn a_restart_that_breaks_the_service_is_rolled_back_and_explained() {
        let spec = spec("new");
        let ledger = applied("old");
        let knowledge = knowing(&spec, &ledger);
        let next = |progress| next_apply_step(&knowledge, progress);
        let step = next(ApplyProgress::Restarted {
            changes: changes(&[NET]),
            result: Err(unhealthy()),
        });
        let Do(ApplyStep::RollBack { cause }) = step else {
            panic!("expected a rollback, got {step:?}");
        };
        assert!(cause.contains("did not answer GetInfo"), "{cause}");
        assert_eq!(
            next(ApplyProgress::Restored {
                cause: cause.clone(),
                result: Ok(changes(&[NET]))
            }),
            Do(ApplyStep::RestartAfterRollback {
                cause: cause.clone(),
                restored: changes(&[NET])
            })
        );
        let step = next(ApplyProgress::RestartedAfterRollback {
            cause,
            restored: changes(&[NET]),
            result: Ok(()),
        });
        let Do(ApplyStep::Explain(Outcome::RolledBack(reason))) = step else {
            panic!("a healthy service after the restore is a rollback, got {step:?}");
        };
        assert!(
            reason.contains(&format!(
                "restored the previous {NET} and restarted rkt-api.service"
            )),
            "{reason}"
        );
        assert_eq!(
            next(ApplyProgress::Explained(Outcome::RolledBack(
                reason.clone()
            ))),
            Do(ApplyStep::Report(Outcome::RolledBack(reason)))
        );
    }

    #[test]
    fn a_rollback_that_does_not_mend_the_service_is_a_failure() {
        let spec = spec("new");
        let ledger = applied("old");
        let knowledge = knowing(&spec, &ledger);
        let step = next_apply_step(
            &knowledge,
            ApplyProgress::RestartedAfterRollback {
                cause: "GetInfo failed".to_owned(),
                restored: changes(&[NET]),
                result: Err(unhealthy()),
            },
        );
        assert!(
            matches!(&step, Do(ApplyStep::Explain(Outcome::Failed(reason))) if reason.contains("still unhealthy")),
            "{step:?}"
        );
        let step = next_apply_step(
            &knowledge,
            ApplyProgress::Restored {
                cause: "GetInfo failed".to_owned(),
                result: Err(io_error()),
            },
        );
        assert!(
            matches!(&step, Do(ApplyStep::Explain(Outcome::Failed(reason))) if reason.contains("restoring the previous files failed too")),
            "{step:?}"
        );
    }

    #[test]
    fn files_that_cannot_be_written_are_rolled_back_and_a_change_that_cannot_be_recorded_is_not_made()
     {
        let spec = spec("new");
        let ledger = applied("old");
        let next = |progress| next_apply_step(&knowing(&spec, &ledger), progress);
        let step = next(ApplyProgress::Written(Err(io_error())));
        assert!(
            matches!(&step, Do(ApplyStep::RollBack { cause }) if cause.starts_with("writing the files failed")),
            "{step:?}"
        );
        let step = next(ApplyProgress::Begun(Err(io_error())));
        assert!(
            matches!(&step, Do(ApplyStep::Report(Outcome::Failed(reason))) if reason.contains(NET)),
            "{step:?}"
        );
    }

    fn cleaning(ledger: &Ledger, deleting: bool) -> CleanKnowledge<'_> {
        CleanKnowledge { ledger, deleting }
    }

    #[test]
    fn with_nothing_desired_the_files_are_let_go_of_and_the_service_restarted() {
        let ledger = applied("h");
        let knowledge = cleaning(&ledger, false);
        let next = |progress| next_clean_step(&knowledge, progress);
        let service = spec("h").rkt;
        assert_eq!(next(CleanProgress::Start), Do(CleanStep::LetGo));
        assert_eq!(
            next(CleanProgress::LetGo {
                result: Ok(changes(&[NET])),
                service: Some(service.clone()),
                unit: UnitChange::Unchanged,
            }),
            Do(CleanStep::RestartService {
                service: service.clone(),
                unit: UnitChange::Unchanged
            })
        );
        assert_eq!(
            next(CleanProgress::LetGo {
                result: Ok(changes(&[KUBELET])),
                service: Some(service.clone()),
                unit: UnitChange::Unchanged,
            }),
            Do(CleanStep::ClearConditions),
            "the kubelet's files do not concern the rkt API service"
        );
        assert_eq!(
            next(CleanProgress::LetGo {
                result: Ok(changes(&[UNIT])),
                service: Some(service.clone()),
                unit: UnitChange::Written,
            }),
            Do(CleanStep::RestartService {
                service: service.clone(),
                unit: UnitChange::Written
            }),
            "a hand-written unit the agent had replaced is back: systemd reloads it and restarts the service"
        );
        assert_eq!(
            next(CleanProgress::LetGo {
                result: Ok(changes(&[NET, UNIT])),
                service: Some(service.clone()),
                unit: UnitChange::Removed,
            }),
            Do(CleanStep::StopService(service)),
            "the unit the agent created is gone: so is its service"
        );
        assert_eq!(
            next(CleanProgress::ServiceRestarted),
            Do(CleanStep::ClearConditions),
            "whether or not it came back"
        );
        assert_eq!(
            next(CleanProgress::ConditionsCleared),
            Next::Done { retry: false }
        );
    }

    #[test]
    fn files_that_cannot_be_let_go_of_are_retried() {
        let ledger = applied("h");
        assert_eq!(
            next_clean_step(
                &cleaning(&ledger, true),
                CleanProgress::LetGo {
                    result: Err(io_error()),
                    service: None,
                    unit: UnitChange::Unchanged,
                }
            ),
            Next::Done { retry: true },
            "the finalizer stays until the node is clean"
        );
    }

    #[test]
    fn a_node_with_nothing_of_ours_has_nothing_to_clean() {
        let ledger = Ledger::default();
        assert_eq!(
            next_clean_step(&cleaning(&ledger, false), CleanProgress::Start),
            Next::Done { retry: false }
        );
        assert_eq!(
            next_clean_step(&cleaning(&ledger, true), CleanProgress::Start),
            Do(CleanStep::Release)
        );
    }

    #[test]
    fn a_state_being_deleted_is_released_after_the_clean_up() {
        let ledger = applied("h");
        let knowledge = cleaning(&ledger, true);
        let next = |progress| next_clean_step(&knowledge, progress);
        assert_eq!(next(CleanProgress::Start), Do(CleanStep::LetGo));
        assert_eq!(
            next(CleanProgress::ConditionsCleared),
            Do(CleanStep::Release)
        );
        assert_eq!(
            next(CleanProgress::Released { released: true }),
            Next::Done { retry: false }
        );
        assert_eq!(
            next(CleanProgress::Released { released: false }),
            Next::Done { retry: true },
            "the finalizer is retried"
        );
    }

    #[test]
    fn what_is_desired_follows_the_watched_state() {
        let mut state = RktNodeState::new("node-1", spec("h"));
        assert!(matches!(
            Desired::of(None),
            Desired::Nothing { deleting: None }
        ));
        assert!(matches!(Desired::of(Some(&state)), Desired::Spec(_)));
        state.metadata.deletion_timestamp = Some(crate::agent::report::now());
        assert!(matches!(
            Desired::of(Some(&state)),
            Desired::Nothing { deleting: Some(_) }
        ));
    }
}
