//! The agent's hands: performs the steps that [`step`](super::step) decides, through the host's files, systemd,
//! the rkt API service and the Kubernetes API, and feeds each result back. It decides nothing: every branch on a
//! result is `step`'s.

use std::path::PathBuf;

use super::{
    api_service_unit::{self, UnitFinding},
    checks::{self, Observation, Outcome},
    config_check,
    host_files::{Changes, Host},
    host_namespace::HostPrograms,
    install,
    ledger::{Ledger, LedgerFile, NetworkProof},
    metrics::{METRICS, RestartResult},
    network_probe::{self, ProbeError},
    notices,
    release_change::runs_the_version,
    report::{self, Reports},
    rkt_binary,
    rkt_service::{self, RestartError, Timeouts},
    step::{
        ApplyKnowledge, ApplyProgress, ApplyStep, CleanKnowledge, CleanProgress, CleanStep,
        Desired, Next, UnitChange, next_apply_step, next_clean_step,
    },
    systemd::Systemd,
};
use crate::{
    api::{
        HostFile, NodePhase, RktNodeState, RktNodeStateSpec, RktNodeStateStatus, RktServiceSpec,
        host_paths::{self, DBUS_SOCKET, RKT_CURRENT_LINK, RKT_NET_DIR, api_service_unit_path},
    },
    conditions::merge_conditions,
    rkt::net_d::NetD,
};

/// An apply that is done within this long is reported once, as done; a slower one (a download, a slow restart)
/// says `Applying` when this has passed. At 5,000 nodes every status write of a rollout counts.
pub const ANNOUNCE_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

/// How long the agent waits before it starts again a service that it could not start.
const START_BACKOFF: std::time::Duration = std::time::Duration::from_secs(60);

pub struct Reconciler {
    pub host: Host,
    pub ledger: Ledger,
    pub ledger_file: LedgerFile,
    pub reports: Reports,
    pub systemd: Option<Systemd>,
    pub timeouts: Timeouts,
    /// Where the node's own programs run.
    pub host_programs: HostPrograms,
    /// The spec hash `Applying` was announced for, so it is announced once.
    pub announced: Option<String>,
    /// The `Applying` status due if the apply under way is not done by then (see [`ANNOUNCE_AFTER`]).
    pub announcement: Option<report::Announcement>,
    /// What the last committed change did: its hash, the paths it wrote or removed, whether it restarted the rkt
    /// API service; reported with the `Applied` status.
    pub last_commit: Option<(String, Vec<String>, bool)>,
    /// The spec hash that rkt would refuse and why, so the refusal is announced once.
    pub refused: Option<(String, String)>,
    /// When and from which state the agent last started the stopped rkt API service, for the reports.
    pub started: Option<String>,
    /// The last proof of the network of a spec (its hash), for the reports; proven again while it is not `Ok`.
    pub network: Option<(String, Result<String, ProbeError>)>,
    /// When starting the stopped service last failed: it is not started again for [`START_BACKOFF`].
    pub start_failed_at: Option<std::time::Instant>,
    /// The last reconcile failed in a way only trying again mends (letting go of files, the finalizer).
    pub retry: bool,
    /// The certificate authorities that release downloads trust.
    pub trust: install::Trust,
    /// The spec hash whose release could not be installed in a way the same archive would fail again, and why.
    pub install_refused: Option<(String, String)>,
}

impl Reconciler {
    /// Whether the loop should come back soon although nothing happens.
    pub fn needs_retry(&self) -> bool {
        self.systemd.is_none() || self.ledger.pending.is_some() || self.retry
    }

    /// The directories of the managed files, and net.d (where a foreign file may shadow ours).
    pub fn watched_directories(&self) -> Vec<PathBuf> {
        let mut directories: Vec<PathBuf> = self
            .ledger
            .files
            .keys()
            .map(|path| self.host.directory(path))
            .collect();
        directories.push(self.host.path(RKT_NET_DIR));
        directories.sort();
        directories.dedup();
        directories
    }

    /// Brings the host to what `state` asks (or to nothing of ours) and reports. Errors are reported, never fatal.
    pub async fn reconcile(&mut self, state: Option<&RktNodeState>) {
        if self.systemd.is_none() {
            match Systemd::connect(&self.host.path(DBUS_SOCKET)).await {
                Ok(systemd) => self.systemd = Some(systemd),
                Err(error) => tracing::warn!(%error, "systemd is not reachable yet"),
            }
        }
        match Desired::of(state) {
            Desired::Spec(state) => self.apply(state).await,
            Desired::Nothing { deleting } => self.clean(deleting).await,
        }
    }

    async fn apply(&mut self, state: &RktNodeState) {
        let drifted = self.host.drifted(&self.ledger).unwrap_or_else(|error| {
            tracing::warn!(%error, "could not check the managed files");
            Vec::new()
        });
        let restarted_since_request = self.restarted_since_request(&state.spec).await;
        let unit = api_service_unit::find(
            &self.host,
            &self.ledger,
            self.systemd.as_ref(),
            &state.spec.rkt,
        )
        .await;
        let files: Vec<HostFile> = state
            .spec
            .files
            .iter()
            .chain(unit.file())
            .cloned()
            .collect();
        let stopped = self.stopped_service(&state.spec.rkt).await;
        let mut progress = ApplyProgress::Start;
        self.retry = loop {
            let refused = self
                .install_refused
                .as_ref()
                .filter(|(hash, _)| *hash == state.spec.hash)
                .map(|(_, reason)| reason.clone());
            let knowledge = ApplyKnowledge {
                release: self.release_on_node(&state.spec.rkt, refused.as_deref()),
                spec: &state.spec,
                files: &files,
                stopped: stopped.as_deref(),
                ledger: &self.ledger,
                drifted: &drifted,
                announced: self.announced.as_deref(),
                restarted_since_request,
            };
            match next_apply_step(&knowledge, progress) {
                Next::Do(step) => {
                    tracing::debug!(?step, "applying");
                    progress = self.perform_apply(state, &files, &unit, step).await;
                }
                Next::Done { retry } => break retry,
            }
        };
    }

    async fn perform_apply(
        &mut self,
        state: &RktNodeState,
        files: &[HostFile],
        unit: &UnitFinding,
        step: ApplyStep,
    ) -> ApplyProgress {
        let spec = &state.spec;
        match step {
            ApplyStep::Repair(paths) => {
                let result = self.host.repair(&self.ledger, &paths);
                if result.is_ok() {
                    METRICS.drift_repairs.inc_by(paths.len() as u64);
                }
                let notice = notices::drift_repaired(&paths, &result);
                tracing::warn!(note = notice.note, "drift");
                self.reports.event(notice).await;
                ApplyProgress::Repaired
            }
            ApplyStep::Check => {
                let checked = config_check::after_change(&self.host, &self.ledger, files)
                    .map(drop)
                    .map_err(|error| config_check::refusal(&error));
                if let Err(reason) = &checked
                    && self.refused.as_ref() != Some(&(spec.hash.clone(), reason.clone()))
                {
                    tracing::warn!(reason, hash = spec.hash, "not applying");
                    self.reports.event(notices::refused(spec, reason)).await;
                    self.refused = Some((spec.hash.clone(), reason.clone()));
                }
                ApplyProgress::Checked(checked)
            }
            ApplyStep::Announce => {
                let current = state.status.as_ref();
                let applying = RktNodeStateStatus {
                    phase: Some(NodePhase::Applying),
                    observed_hash: Some(spec.hash.clone()),
                    last_transition_time: Some(report::now()),
                    ..current.cloned().unwrap_or_default()
                };
                self.settle_announcement().await;
                self.announcement = Some(self.reports.announce_later(applying, ANNOUNCE_AFTER));
                self.announced = Some(spec.hash.clone());
                ApplyProgress::Announced
            }
            ApplyStep::Install => ApplyProgress::Installed(self.install(spec).await),
            ApplyStep::Begin => {
                let result = self
                    .host
                    .begin(&mut self.ledger, files, &spec.hash)
                    .and_then(|()| self.record_link_before(&spec.rkt));
                self.save_ledger();
                ApplyProgress::Begun(result)
            }
            ApplyStep::Write => {
                let result = self
                    .host
                    .put(&mut self.ledger, files)
                    .and_then(|changes| self.switch_release(&spec.rkt, changes));
                if result.is_ok() {
                    self.ledger.api_service = Some(spec.rkt.clone());
                }
                self.save_ledger();
                ApplyProgress::Written(result)
            }
            ApplyStep::Restart { changes } => {
                // Recorded before it is asked for: a later agent can tell whether the restart took place.
                if let Some(pending) = &mut self.ledger.pending {
                    pending.restart_requested_at = Some(now_micros());
                    self.save_ledger();
                }
                let unit = self.unit_change(&spec.rkt, &changes);
                let result = self.restart(&spec.rkt, unit).await;
                ApplyProgress::Restarted {
                    changes,
                    result: runs_the_version(&spec.rkt, result),
                }
            }
            ApplyStep::CheckHealth { changes } => {
                tracing::info!(
                    unit = spec.rkt.api_service_unit,
                    "the rkt API service was restarted for this change before the agent stopped; checking it"
                );
                let health =
                    rkt_service::wait_for_get_info(&spec.rkt.api_endpoint, self.timeouts.health)
                        .await;
                ApplyProgress::Restarted {
                    changes,
                    result: runs_the_version(&spec.rkt, health.map_err(RestartError::from)),
                }
            }
            ApplyStep::ProveNetwork { changes } => {
                let result = self.prove_network(spec).await;
                ApplyProgress::Proven {
                    changes,
                    result: match result {
                        Some(Err(ProbeError::Failed(error))) => Err(error),
                        _ => Ok(()),
                    },
                }
            }
            ApplyStep::Commit { changes, restarted } => {
                self.ledger.applied(&spec.hash);
                self.keep_releases(&spec.rkt);
                self.save_ledger();
                // What changed goes into the Applied status, which is written anyway; an Event per node and
                // change would double what a rollout writes.
                tracing::info!(
                    hash = spec.hash,
                    paths = ?changes.paths,
                    restarted,
                    "applied"
                );
                self.last_commit = Some((spec.hash.clone(), changes.paths.clone(), restarted));
                METRICS.applies.inc();
                ApplyProgress::Committed
            }
            ApplyStep::RollBack { cause } => {
                tracing::warn!(cause, hash = spec.hash, "rolling back");
                METRICS.rollbacks.inc();
                // The files change again: a service that systemd starts from here on (it may restart a failing one
                // by itself) may run on restored files, so an agent that stops during the rollback must not take
                // it for the change's restart.
                if let Some(pending) = &mut self.ledger.pending
                    && pending.restart_requested_at.take().is_some()
                {
                    self.save_ledger();
                }
                let link = self.restore_link();
                let result = self.host.roll_back(&mut self.ledger);
                let result = match (link, result) {
                    (Ok(switched), Ok(mut restored)) => {
                        if switched {
                            restored.paths.insert(0, RKT_CURRENT_LINK.to_owned());
                        }
                        Ok(restored)
                    }
                    (Err(error), _) | (_, Err(error)) => Err(error),
                };
                self.ledger.rolled_back(&spec.hash);
                self.save_ledger();
                ApplyProgress::Restored { cause, result }
            }
            ApplyStep::RestartAfterRollback { cause, restored } => {
                let unit = self.unit_change(&spec.rkt, &restored);
                ApplyProgress::RestartedAfterRollback {
                    result: self.restart(&spec.rkt, unit).await.map(drop),
                    cause,
                    restored,
                }
            }
            ApplyStep::Explain(outcome) => {
                if let Some(reason) = outcome.reason() {
                    self.ledger.rollback_explained(reason);
                    self.save_ledger();
                }
                if let Some(notice) = notices::rolled_back(&outcome) {
                    self.reports.event(notice).await;
                }
                ApplyProgress::Explained(outcome)
            }
            ApplyStep::StartService { outcome, was } => {
                let result =
                    rkt_service::start(self.systemd.as_ref(), &spec.rkt, self.timeouts).await;
                let notice = notices::service_started(&spec.rkt, &was, &result);
                self.start_failed_at = result.is_err().then(std::time::Instant::now);
                self.started = Some(notice.note.clone());
                tracing::warn!(note = notice.note, "started the rkt API service");
                self.reports.event(notice).await;
                ApplyProgress::Started(outcome)
            }
            ApplyStep::Report(outcome) => {
                let observation = self.observe(spec, unit).await;
                self.report(state, &outcome, &observation).await;
                ApplyProgress::Reported
            }
        }
    }

    async fn clean(&mut self, deleting: Option<&RktNodeState>) {
        let mut progress = CleanProgress::Start;
        self.retry = loop {
            let knowledge = CleanKnowledge {
                ledger: &self.ledger,
                deleting: deleting.is_some(),
            };
            match next_clean_step(&knowledge, progress) {
                Next::Do(step) => {
                    tracing::debug!(?step, "cleaning");
                    progress = self.perform_clean(deleting, step).await;
                }
                Next::Done { retry } => break retry,
            }
        };
    }

    async fn perform_clean(
        &mut self,
        deleting: Option<&RktNodeState>,
        step: CleanStep,
    ) -> CleanProgress {
        match step {
            CleanStep::LetGo => {
                let result = self.host.put(&mut self.ledger, &[]);
                let unit = match (&result, &self.ledger.api_service) {
                    (Ok(changes), Some(service)) => self.unit_change(service, changes),
                    _ => UnitChange::Unchanged,
                };
                let service = match &result {
                    Ok(changes) => {
                        let service = self.ledger.let_go();
                        self.save_ledger();
                        self.reports.event(notices::files_removed(changes)).await;
                        service
                    }
                    Err(error) => {
                        tracing::warn!(%error, "could not remove the managed files");
                        self.save_ledger();
                        None
                    }
                };
                CleanProgress::LetGo {
                    result,
                    service,
                    unit,
                }
            }
            CleanStep::RestartService { service, unit } => {
                if let Err(error) = self.restart(&service, unit).await {
                    tracing::warn!(%error, "could not restart the rkt API service after removing its files");
                }
                CleanProgress::ServiceRestarted
            }
            CleanStep::StopService(service) => {
                match rkt_service::stop(self.systemd.as_ref(), &service, self.timeouts).await {
                    Ok(()) => {
                        self.reports.event(notices::service_removed(&service)).await;
                    }
                    Err(error) => tracing::warn!(
                        %error,
                        "could not stop the rkt API service whose unit file the agent removed"
                    ),
                }
                CleanProgress::ServiceRestarted
            }
            CleanStep::ClearConditions => {
                if let Err(error) = self.reports.node_conditions(&[]).await {
                    tracing::warn!(%error, "could not clear the Node conditions");
                }
                CleanProgress::ConditionsCleared
            }
            CleanStep::Release => {
                let released = match deleting {
                    Some(state) => self.reports.release(state).await,
                    None => Ok(()),
                };
                if let Err(error) = &released {
                    tracing::warn!(%error, "could not remove the cleanup finalizer; retrying");
                }
                CleanProgress::Released {
                    released: released.is_ok(),
                }
            }
        }
    }

    async fn restart(
        &self,
        rkt: &RktServiceSpec,
        unit: UnitChange,
    ) -> Result<String, RestartError> {
        let result = rkt_service::restart(self.systemd.as_ref(), rkt, self.timeouts, unit).await;
        METRICS.restarted(if result.is_ok() {
            RestartResult::Healthy
        } else {
            RestartResult::Failed
        });
        result
    }

    /// What `changes` did to the rkt API service's unit file.
    fn unit_change(&self, rkt: &RktServiceSpec, changes: &Changes) -> UnitChange {
        let path = api_service_unit_path(&rkt.api_service_unit);
        if !changes.includes(&path) {
            UnitChange::Unchanged
        } else if self.host.path(&path).exists() {
            UnitChange::Written
        } else {
            UnitChange::Removed
        }
    }

    /// The state of the rkt API service when systemd has it loaded and stopped (`inactive`, `failed`), unless
    /// starting it failed a moment ago.
    async fn stopped_service(&self, rkt: &RktServiceSpec) -> Option<String> {
        if self
            .start_failed_at
            .is_some_and(|failed| failed.elapsed() < START_BACKOFF)
        {
            return None;
        }
        let state = match self
            .systemd
            .as_ref()?
            .unit_state(&rkt.api_service_unit)
            .await
        {
            Ok(state) => state,
            Err(error) => {
                tracing::warn!(%error, "cannot read the rkt API service's state");
                return None;
            }
        };
        (state.load_state == "loaded" && state.is_stopped()).then_some(state.active_state)
    }

    /// Proves the network of `spec`'s contained-network file on the node and keeps the result for the reports;
    /// `None` when the spec has none.
    async fn prove_network(
        &mut self,
        spec: &RktNodeStateSpec,
    ) -> Option<Result<String, ProbeError>> {
        let file = spec
            .files
            .iter()
            .find(|file| host_paths::is_below(&file.path, RKT_NET_DIR))?;
        let result = network_probe::prove(&self.host_programs, &file.content)
            .await
            .map(|proof| proof.to_string());
        match &result {
            Ok(proof) => {
                tracing::info!(proof, "the network works");
                self.ledger.network_proven = Some(NetworkProof {
                    hash: spec.hash.clone(),
                    proof: proof.clone(),
                });
                self.save_ledger();
            }
            Err(error) => tracing::warn!(%error, "the network is not proven"),
        }
        self.network = Some((spec.hash.clone(), result.clone()));
        Some(result)
    }

    /// The network proof of the applied `spec`: the last one when it succeeded, else a new one.
    async fn network_proof(
        &mut self,
        spec: &RktNodeStateSpec,
    ) -> Option<Result<String, ProbeError>> {
        if self.ledger.applied_hash.as_deref() != Some(spec.hash.as_str()) {
            return None;
        }
        match (&self.network, &self.ledger.network_proven) {
            (Some((hash, Ok(proof))), _) if *hash == spec.hash => Some(Ok(proof.clone())),
            // Proven by an agent before this one.
            (None, Some(proven)) if proven.hash == spec.hash => Some(Ok(proven.proof.clone())),
            _ => self.prove_network(spec).await,
        }
    }

    /// Checks the rkt API service, the versions and net.d.
    async fn observe(&mut self, spec: &RktNodeStateSpec, unit: &UnitFinding) -> Observation {
        let systemd_version = match &self.systemd {
            Some(systemd) => systemd.version().await.ok(),
            None => None,
        };
        let health =
            rkt_service::wait_for_get_info(&spec.rkt.api_endpoint, self.timeouts.health).await;
        let rkt_version = match &health {
            Ok(version) => Ok(version.clone()),
            Err(_) => rkt_binary::version(&self.host_programs, spec.rkt.rkt_path())
                .await
                .map_err(|error| error.to_string()),
        };
        let net_d = self.net_d(spec);
        Observation {
            systemd_version,
            rkt_version,
            api_service: health.map(drop).map_err(|error| error.to_string()),
            shadowed_by: net_d.shadowed_by,
            net_d_broken: net_d.broken,
            config_refused: config_check::now(&self.host)
                .err()
                .map(|error| config_check::refusal(&error)),
            unit: unit.clone(),
            started: self.started.clone(),
            network: self.network_proof(spec).await,
        }
    }

    /// net.d judged as rkt loads it, when the spec has a contained network (rkt reads net.d only for one).
    fn net_d(&self, spec: &RktNodeStateSpec) -> checks::NetDFindings {
        let Some(ours) = spec
            .files
            .iter()
            .find(|file| host_paths::is_below(&file.path, RKT_NET_DIR))
            .and_then(|file| file.path.rsplit('/').next())
        else {
            return checks::NetDFindings::default();
        };
        match self.host.files_in(RKT_NET_DIR) {
            Ok(files) => {
                let entries: Vec<(String, Vec<u8>)> = files
                    .into_iter()
                    .map(|(name, content)| (name, content.into_bytes()))
                    .collect();
                checks::net_d_findings(&NetD::load(&entries), ours)
            }
            Err(error) => {
                tracing::warn!(%error, "could not read net.d");
                checks::NetDFindings::default()
            }
        }
    }

    /// Lets a pending `Applying` announcement go: written already, or never (a status follows). The status it
    /// wrote, if it did: the watch's copy of the status is older than it.
    async fn settle_announcement(&mut self) -> Option<RktNodeStateStatus> {
        let written = self.announcement.take()?.settle().await?;
        self.reports.note_written(written.clone());
        Some(written)
    }

    async fn report(&mut self, state: &RktNodeState, outcome: &Outcome, observation: &Observation) {
        let announced = self.settle_announcement().await;
        let spec = &state.spec;
        let current = state.status.as_ref();
        let (phase, last_error) = checks::phase(spec, outcome, observation);
        let now = report::now();
        let previous_conditions = current
            .map(|status| status.conditions.as_slice())
            .unwrap_or_default();
        let conditions = merge_conditions(
            previous_conditions,
            &checks::conditions(spec, outcome, observation),
            None,
            &now,
        );
        // A phase reported on another spec is another phase, even when its name is the same.
        let phase_changed = current.and_then(|status| status.phase) != Some(phase)
            || current.and_then(|status| status.observed_hash.as_deref())
                != Some(spec.hash.as_str());
        // A change committed for this spec (a new one, or files the spec's own hash now covers) is reported once.
        let commit = self
            .last_commit
            .take()
            .filter(|(hash, _, _)| phase == NodePhase::Applied && *hash == spec.hash);
        let applied_now = phase == NodePhase::Applied
            && current.and_then(|status| status.applied_hash.as_deref())
                != Some(spec.hash.as_str());
        let status = RktNodeStateStatus {
            phase: Some(phase),
            observed_hash: Some(spec.hash.clone()),
            applied_hash: self.ledger.applied_hash.clone(),
            observed_rkt_version: observation.rkt_version.clone().ok(),
            observed_systemd_version: observation.systemd_version.clone(),
            api_service_healthy: Some(observation.api_service.is_ok()),
            last_error,
            last_transition_time: if phase_changed {
                Some(now.clone())
            } else {
                current.and_then(|status| status.last_transition_time.clone())
            },
            last_applied_time: if applied_now || commit.is_some() {
                Some(now.clone())
            } else {
                current.and_then(|status| status.last_applied_time.clone())
            },
            last_applied_paths: match &commit {
                Some((_, paths, _)) => paths.clone(),
                None => current
                    .map(|status| status.last_applied_paths.clone())
                    .unwrap_or_default(),
            },
            last_applied_restarted: match &commit {
                Some((_, _, restarted)) => Some(*restarted),
                None => current.and_then(|status| status.last_applied_restarted),
            },
            conditions: conditions.clone(),
        };
        if let Err(error) = self
            .reports
            .status(announced.as_ref().or(current), status)
            .await
        {
            tracing::warn!(%error, "could not write the RktNodeState status");
        }
        if let Err(error) = self.reports.node_conditions(&conditions).await {
            tracing::warn!(%error, "could not write the Node conditions");
        }
    }

    /// Whether systemd started the spec's rkt API service after the restart that the change under way asked for.
    async fn restarted_since_request(&self, spec: &RktNodeStateSpec) -> bool {
        let (Some(pending), Some(systemd)) = (&self.ledger.pending, &self.systemd) else {
            return false;
        };
        let Some(requested) = pending
            .restart_requested_at
            .filter(|_| pending.hash == spec.hash)
        else {
            return false;
        };
        match systemd.main_started_at(&spec.rkt.api_service_unit).await {
            Ok(started) => started > requested,
            Err(error) => {
                tracing::warn!(%error, "cannot tell when the rkt API service started; restarting it");
                false
            }
        }
    }

    pub(super) fn save_ledger(&self) {
        if let Err(error) = self.ledger_file.save(&self.ledger) {
            tracing::error!(%error, "could not save the ledger");
        }
    }
}

/// Now, in microseconds since the epoch: systemd's timestamps' unit.
fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_micros()).unwrap_or(u64::MAX)
        })
}
