//! `rktnetes agent`: applies its node's RktNodeState on the host and reports back.
//!
//! It watches only its own RktNodeState, puts the files in place through the [`Ledger`](ledger::Ledger) (whole
//! files, previous contents kept), restarts the rkt API service through systemd's D-Bus API, checks it with
//! GetInfo, rolls back what breaks it, repairs files changed by hand (inotify, no polling), and reports status,
//! Node conditions and Events.

mod atomic_file;
mod checks;
mod drift;
mod host_files;
mod host_namespace;
mod ledger;
mod report;
mod systemd;

use std::{path::PathBuf, time::Duration};

use clap::Args;
use futures::StreamExt;
use kube::{
    Api, Client, Config,
    config::{KubeConfigOptions, Kubeconfig},
    runtime::{WatchStreamExt, watcher},
};

pub use self::atomic_file::FileError;
use self::{
    checks::{Observation, Outcome},
    drift::DriftWatch,
    host_files::Host,
    host_namespace::{HostNamespaceError, HostPrograms},
    ledger::{LedgerError, LedgerFile},
    report::Reports,
    systemd::{Systemd, SystemdError},
};
use crate::{
    api::{
        RktNodeState, RktNodeStateSpec, RktNodeStateStatus, RktServiceSpec,
        host_paths::{
            self, AGENT_STATE_DIR, DBUS_SOCKET, MANAGED_DIRS, RKT_LOCAL_CONFIG_DIR, RKT_NET_DIR,
        },
    },
    conditions::merge_conditions,
    events::Notice,
    rkt::client::{get_info, version_from_cli},
};

/// How often a failed step is retried when nothing else happens.
const RETRY: Duration = Duration::from_secs(10);

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The node this agent runs on (from the downward API in the DaemonSet).
    #[arg(long, env = "NODE_NAME")]
    pub node_name: String,
    /// A kubeconfig; without it, the pod's service account (or $KUBECONFIG).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Where the host's filesystem is; `/` under stage1-fly.
    #[arg(long, default_value = "/")]
    pub host_root: PathBuf,
    /// Where the agent keeps its ledger, as a host path.
    #[arg(long, default_value = AGENT_STATE_DIR)]
    pub state_dir: String,
    /// The host's mount namespace (`/proc/1/ns/mnt` with the host's PID namespace), in which the node's own
    /// programs run (`rkt version`, `spec.rkt.path`); without it they run in the agent's own.
    #[arg(long)]
    pub host_mount_namespace: Option<PathBuf>,
    /// How long the rkt API service may take to answer GetInfo after a restart, in seconds.
    #[arg(long, default_value_t = 30)]
    pub health_timeout: u64,
    /// How long systemd's restart job may take, in seconds.
    #[arg(long, default_value_t = 90)]
    pub restart_timeout: u64,
    /// How often the agent checks the node when nothing happens (the rkt API service's health, the versions, the
    /// files), in seconds. Findings are written only when they change.
    #[arg(long, env = "RKTNETES_CHECK_INTERVAL", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub check_interval: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("cannot load the kubeconfig: {0}")]
    Kubeconfig(String),
    #[error("cannot reach the Kubernetes API: {0}")]
    Client(#[source] kube::Error),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("cannot watch the host's configuration directories: {0}")]
    Drift(#[source] std::io::Error),
    #[error(transparent)]
    HostNamespace(#[from] HostNamespaceError),
}

/// Runs the agent until SIGTERM or Ctrl-C.
pub async fn run(args: AgentArgs) -> Result<(), AgentError> {
    let client = client(args.kubeconfig.as_deref()).await?;
    let host = Host {
        root: args.host_root.clone(),
    };
    let host_programs = HostPrograms::new(args.host_mount_namespace.as_deref())?;
    let ledger_file = LedgerFile::new(&host.path(&args.state_dir));
    for dir in MANAGED_DIRS {
        // A crash between creating a temporary file and renaming it leaves the temporary behind.
        if let Err(error) = atomic_file::remove_leftovers(&host.path(dir)) {
            tracing::warn!(%error, "could not clear leftover temporary files");
        }
    }
    let mut agent = Agent {
        host: host.clone(),
        ledger: ledger_file.load()?,
        ledger_file,
        reports: Reports::new(client.clone(), &args.node_name),
        systemd: None,
        health_timeout: Duration::from_secs(args.health_timeout),
        restart_timeout: Duration::from_secs(args.restart_timeout),
        applying_reported: None,
        cleanup_pending: false,
        host_programs,
    };
    let mut drift = DriftWatch::new().map_err(AgentError::Drift)?;

    let own_state = watcher::Config::default().fields(&format!("metadata.name={}", args.node_name));
    let mut states = std::pin::pin!(
        watcher(Api::<RktNodeState>::all(client), own_state)
            .default_backoff()
            .touched_objects_and_deletions()
    );
    let mut shutdown = std::pin::pin!(crate::shutdown::signal());
    let check_interval = Duration::from_secs(args.check_interval);
    let mut desired: Option<RktNodeState> = None;
    let mut synced = false;
    tracing::info!(
        node = args.node_name,
        programs = agent.host_programs.describe(),
        "agent started"
    );
    loop {
        let retry = tokio::time::sleep(RETRY);
        let check = tokio::time::sleep(check_interval);
        tokio::select! {
            event = states.next() => match event {
                Some(Ok(StateEvent::Present(state))) => { desired = Some(*state); synced = true; }
                Some(Ok(StateEvent::Gone)) => { desired = None; synced = true; }
                Some(Ok(StateEvent::Synced)) => synced = true,
                Some(Err(error)) => { tracing::warn!(%error, "watching the RktNodeState failed; retrying"); continue; }
                None => break,
            },
            changed = drift.changed() => if let Err(error) = changed {
                tracing::warn!(%error, "the inotify watch failed");
            },
            () = retry, if agent.needs_retry() => {}
            // The rkt API service can stop, or rkt be replaced, without any event the agent watches.
            () = check => {}
            () = &mut shutdown => break,
        }
        if !synced {
            continue;
        }
        agent.reconcile(desired.as_ref()).await;
        if let Err(error) = drift.watch(agent.watched_directories()) {
            tracing::warn!(%error, "could not watch a configuration directory");
        }
    }
    tracing::info!("agent stopping");
    Ok(())
}

/// What the watch of the agent's own RktNodeState says.
enum StateEvent {
    Present(Box<RktNodeState>),
    Gone,
    Synced,
}

trait OwnStateStream {
    fn touched_objects_and_deletions(
        self,
    ) -> impl futures::Stream<Item = Result<StateEvent, watcher::Error>>;
}

impl<S> OwnStateStream for S
where
    S: futures::Stream<Item = Result<watcher::Event<RktNodeState>, watcher::Error>>,
{
    /// Folds the watch into "the state is this", "there is none" and "the list is complete": a relist without
    /// the object means it was deleted while the watch was down.
    fn touched_objects_and_deletions(
        self,
    ) -> impl futures::Stream<Item = Result<StateEvent, watcher::Error>> {
        let mut seen_in_list = false;
        self.filter_map(move |event| {
            let mapped = match event {
                Ok(watcher::Event::Apply(state)) => Some(Ok(StateEvent::Present(Box::new(state)))),
                Ok(watcher::Event::Delete(_)) => Some(Ok(StateEvent::Gone)),
                Ok(watcher::Event::Init) => {
                    seen_in_list = false;
                    None
                }
                Ok(watcher::Event::InitApply(state)) => {
                    seen_in_list = true;
                    Some(Ok(StateEvent::Present(Box::new(state))))
                }
                Ok(watcher::Event::InitDone) => Some(Ok(if seen_in_list {
                    StateEvent::Synced
                } else {
                    StateEvent::Gone
                })),
                Err(error) => Some(Err(error)),
            };
            futures::future::ready(mapped)
        })
    }
}

struct Agent {
    host: Host,
    ledger: ledger::Ledger,
    ledger_file: LedgerFile,
    reports: Reports,
    systemd: Option<Systemd>,
    health_timeout: Duration,
    restart_timeout: Duration,
    /// The hash for which `Applying` was reported, so it is reported once.
    applying_reported: Option<String>,
    /// Removing our files, or the finalizer after that, failed and is retried.
    cleanup_pending: bool,
    /// Where the node's own programs run.
    host_programs: HostPrograms,
}

impl Agent {
    fn needs_retry(&self) -> bool {
        self.systemd.is_none() || self.ledger.pending.is_some() || self.cleanup_pending
    }

    fn watched_directories(&self) -> Vec<PathBuf> {
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

    /// Brings the host to `desired` (or to nothing of ours) and reports. Errors are reported, never fatal.
    async fn reconcile(&mut self, desired: Option<&RktNodeState>) {
        if self.systemd.is_none() {
            match Systemd::connect(&self.host.path(DBUS_SOCKET)).await {
                Ok(systemd) => self.systemd = Some(systemd),
                Err(error) => tracing::warn!(%error, "systemd is not reachable yet"),
            }
        }
        match desired {
            None => self.cleanup_pending = !self.let_go().await,
            // Being deleted: the node is cleaned first, then the state may go.
            Some(state) if state.metadata.deletion_timestamp.is_some() => {
                let released = self.let_go().await
                    && match self.reports.release(state).await {
                        Ok(()) => true,
                        Err(error) => {
                            tracing::warn!(%error, "could not remove the cleanup finalizer; retrying");
                            false
                        }
                    };
                self.cleanup_pending = !released;
            }
            Some(state) => self.apply(state).await,
        }
    }

    /// No config selects this node any more: put back what was there before the agent. True when nothing of
    /// ours is left on the node.
    async fn let_go(&mut self) -> bool {
        if self.ledger.files.is_empty() {
            return true;
        }
        let api_service = self.ledger.api_service.take();
        match self.host.put(&mut self.ledger, &[]) {
            Ok(changes) => {
                self.ledger.forget_spec();
                self.save_ledger();
                self.reports
                    .event(Notice::normal(
                        "FilesRemoved",
                        format!(
                            "Removed {}: no RktNodeConfig selects this node.",
                            changes.paths.join(", ")
                        ),
                    ))
                    .await;
                if changes.touches(RKT_LOCAL_CONFIG_DIR)
                    && let Some(rkt) = &api_service
                    && let Err(error) = self.restart(rkt).await
                {
                    tracing::warn!(%error, "could not restart the rkt API service after removing its files");
                }
            }
            Err(error) => {
                tracing::warn!(%error, "could not remove the managed files");
                return false;
            }
        }
        if let Err(error) = self.reports.node_conditions(&[]).await {
            tracing::warn!(%error, "could not clear the Node conditions");
        }
        true
    }

    async fn apply(&mut self, state: &RktNodeState) {
        let spec = &state.spec;
        let current = state.status.as_ref();
        let outcome = if self.ledger.applied_hash.as_deref() == Some(&spec.hash)
            && self.ledger.pending.is_none()
        {
            self.repair_drift().await;
            Outcome::Applied
        } else if self.ledger.failed_hash.as_deref() == Some(&spec.hash) {
            // Rolled back before: not tried again until the spec changes.
            self.repair_drift().await;
            Outcome::RolledBack(
                self.ledger
                    .failed_reason
                    .clone()
                    .unwrap_or_else(|| "this configuration broke the rkt API service".to_owned()),
            )
        } else {
            if self.applying_reported.as_deref() != Some(&spec.hash) {
                let applying = RktNodeStateStatus {
                    phase: Some(crate::api::NodePhase::Applying),
                    ..current.cloned().unwrap_or_default()
                };
                if let Err(error) = self.reports.status(current, applying).await {
                    tracing::warn!(%error, "could not report Applying");
                }
                self.applying_reported = Some(spec.hash.clone());
            }
            self.change(spec).await
        };
        let observation = self.observe(spec).await;
        self.report(state, &outcome, &observation).await;
    }

    /// Puts `spec`'s files in place, restarts the rkt API service when its configuration changed, and rolls back
    /// if it does not come back healthy.
    async fn change(&mut self, spec: &RktNodeStateSpec) -> Outcome {
        if let Err(error) = self.host.begin(&mut self.ledger, &spec.files, &spec.hash) {
            return Outcome::Failed(error.to_string());
        }
        self.save_ledger();
        let changes = match self.host.put(&mut self.ledger, &spec.files) {
            Ok(changes) => changes,
            Err(error) => {
                return self
                    .undo(spec, format!("writing the files failed: {error}"))
                    .await;
            }
        };
        self.save_ledger();
        self.ledger.api_service = Some(spec.rkt.clone());
        let restart = changes.touches(RKT_LOCAL_CONFIG_DIR)
            || (spec.restart_api_service && !changes.is_empty());
        if restart && let Err(error) = self.restart(&spec.rkt).await {
            return self.undo(spec, error).await;
        }
        self.ledger.applied(&spec.hash);
        self.save_ledger();
        if !changes.is_empty() {
            self.reports
                .event(Notice::normal(
                    "Applied",
                    format!(
                        "Applied {} of RktNodeConfig {} ({}){}.",
                        spec.hash,
                        spec.config_name,
                        changes.paths.join(", "),
                        if restart {
                            format!("; restarted {}", spec.rkt.api_service_unit)
                        } else {
                            String::new()
                        }
                    ),
                ))
                .await;
        }
        Outcome::Applied
    }

    /// Restores the files from before the change, restarts the service again, and says why.
    async fn undo(&mut self, spec: &RktNodeStateSpec, reason: String) -> Outcome {
        tracing::warn!(reason, hash = spec.hash, "rolling back");
        let restored = self.host.roll_back(&mut self.ledger);
        self.ledger.rolled_back(&spec.hash);
        self.save_ledger();
        let outcome = match restored {
            Err(error) => Outcome::Failed(format!(
                "{reason}; restoring the previous files failed too: {error}"
            )),
            Ok(changes) => match self.restart(&spec.rkt).await {
                Ok(()) => Outcome::RolledBack(format!(
                    "{reason}; restored the previous {} and restarted {}",
                    changes.paths.join(", "),
                    spec.rkt.api_service_unit
                )),
                Err(error) => Outcome::Failed(format!(
                    "{reason}; restored the previous files, but the service is still unhealthy: {error}"
                )),
            },
        };
        let note = match &outcome {
            Outcome::RolledBack(note) | Outcome::Failed(note) => note.clone(),
            Outcome::Applied => String::new(),
        };
        self.ledger.rollback_explained(&note);
        self.save_ledger();
        self.reports
            .event(Notice::warning("RolledBack", note))
            .await;
        outcome
    }

    /// Restarts the rkt API service through systemd and waits until it answers GetInfo.
    async fn restart(&self, rkt: &RktServiceSpec) -> Result<(), String> {
        let systemd = self
            .systemd
            .as_ref()
            .ok_or("systemd is not reachable over D-Bus")?;
        systemd
            .restart(&rkt.api_service_unit, self.restart_timeout)
            .await
            .map_err(|error: SystemdError| error.to_string())?;
        wait_for_get_info(&rkt.api_endpoint, self.health_timeout)
            .await
            .map(drop)
    }

    async fn repair_drift(&mut self) {
        match self.host.drifted(&self.ledger) {
            Ok(drifted) if drifted.is_empty() => {}
            Ok(drifted) => {
                let result = self.host.repair(&self.ledger, &drifted);
                let note = match &result {
                    Ok(()) => format!(
                        "{} changed on the node; rewrote the managed content.",
                        drifted.join(", ")
                    ),
                    Err(error) => format!(
                        "{} changed on the node and could not be rewritten: {error}",
                        drifted.join(", ")
                    ),
                };
                tracing::warn!(note, "drift");
                self.reports
                    .event(Notice::warning("DriftRepaired", note))
                    .await;
            }
            Err(error) => tracing::warn!(%error, "could not check the managed files"),
        }
    }

    /// Checks the rkt API service, the versions and net.d after a change or an event.
    async fn observe(&mut self, spec: &RktNodeStateSpec) -> Observation {
        let systemd_version = match &self.systemd {
            Some(systemd) => systemd.version().await.ok(),
            None => None,
        };
        let health = wait_for_get_info(&spec.rkt.api_endpoint, self.health_timeout).await;
        let rkt_version = match &health {
            Ok(version) => Some(version.clone()),
            Err(_) => {
                let rkt = self
                    .host_programs
                    .command(spec.rkt.path.as_deref().unwrap_or("rkt"));
                version_from_cli(rkt, Duration::from_secs(10)).await.ok()
            }
        };
        Observation {
            systemd_version,
            rkt_version,
            api_service: health.map(drop),
            shadowed_by: self.shadowing_file(spec),
        }
    }

    fn shadowing_file(&self, spec: &RktNodeStateSpec) -> Option<String> {
        let ours = spec
            .files
            .iter()
            .find(|file| host_paths::is_below(&file.path, RKT_NET_DIR))?;
        let ours_name = ours.path.rsplit('/').next()?;
        let directory = self.host.path(RKT_NET_DIR);
        let files: Vec<(String, String)> = std::fs::read_dir(&directory)
            .ok()?
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                let content = std::fs::read_to_string(entry.path()).ok()?;
                Some((name, content))
            })
            .collect();
        checks::shadowing_file(&files, ours_name).map(|name| format!("{RKT_NET_DIR}/{name}"))
    }

    async fn report(&mut self, state: &RktNodeState, outcome: &Outcome, observation: &Observation) {
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
        let phase_changed = current.and_then(|status| status.phase) != Some(phase);
        let applied_now = phase == crate::api::NodePhase::Applied
            && current.and_then(|status| status.applied_hash.as_deref())
                != Some(spec.hash.as_str());
        let status = RktNodeStateStatus {
            phase: Some(phase),
            applied_hash: self.ledger.applied_hash.clone(),
            observed_rkt_version: observation.rkt_version.clone(),
            observed_systemd_version: observation.systemd_version.clone(),
            api_service_healthy: Some(observation.api_service.is_ok()),
            last_error,
            last_transition_time: if phase_changed {
                Some(now.clone())
            } else {
                current.and_then(|status| status.last_transition_time.clone())
            },
            last_applied_time: if applied_now {
                Some(now.clone())
            } else {
                current.and_then(|status| status.last_applied_time.clone())
            },
            conditions: conditions.clone(),
        };
        if let Err(error) = self.reports.status(current, status).await {
            tracing::warn!(%error, "could not write the RktNodeState status");
        }
        if let Err(error) = self.reports.node_conditions(&conditions).await {
            tracing::warn!(%error, "could not write the Node conditions");
        }
    }

    fn save_ledger(&self) {
        if let Err(error) = self.ledger_file.save(&self.ledger) {
            tracing::error!(%error, "could not save the ledger");
        }
    }
}

/// Polls GetInfo until it answers or `timeout` passes; the rkt version it reports.
async fn wait_for_get_info(endpoint: &str, timeout: Duration) -> Result<String, String> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let attempt = get_info(endpoint, Duration::from_secs(2)).await;
        match attempt {
            Ok(info) => return Ok(info.rkt_version),
            Err(error) if tokio::time::Instant::now() >= deadline => {
                return Err(format!(
                    "GetInfo on {endpoint} failed for {timeout:?}: {error}"
                ));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

async fn client(kubeconfig: Option<&std::path::Path>) -> Result<Client, AgentError> {
    let config = match kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .map_err(|error| AgentError::Kubeconfig(format!("{}: {error}", path.display())))?;
            Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(|error| AgentError::Kubeconfig(format!("{}: {error}", path.display())))?
        }
        None => Config::infer()
            .await
            .map_err(|error| AgentError::Kubeconfig(error.to_string()))?,
    };
    Client::try_from(config).map_err(AgentError::Client)
}
