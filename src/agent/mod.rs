//! `rktnetes agent`: applies its node's RktNodeState on the host and reports back.
//!
//! It watches only its own RktNodeState, puts the files in place through the [`Ledger`](ledger::Ledger) (whole
//! files, previous contents kept), restarts the rkt API service through systemd's D-Bus API, checks it with
//! GetInfo, rolls back what breaks it, repairs files changed by hand (inotify, no polling), and reports status,
//! Node conditions and Events.

mod api_service_unit;
mod atomic_file;
mod checks;
mod config_check;
mod crash_point;
mod drift;
mod host_files;
mod host_namespace;
mod install;
pub(crate) mod ledger;
pub(crate) mod metrics;
mod network_probe;
mod notices;
mod own_state;
mod reconciler;
mod release_change;
mod report;
mod rkt_binary;
mod rkt_service;
mod step;
mod systemd;

use std::{path::PathBuf, time::Duration};

use clap::Args;
use futures::StreamExt;
use kube::{
    Api, Client, Config,
    config::{KubeConfigOptions, Kubeconfig},
    runtime::{WatchStreamExt, watcher},
};
use tracing::Instrument;

pub use self::{atomic_file::FileError, reconciler::ANNOUNCE_AFTER};
use self::{
    drift::DriftWatch,
    host_files::Host,
    host_namespace::{HostNamespaceError, HostPrograms},
    ledger::{LedgerError, LedgerFile},
    own_state::{OwnStateStream, StateEvent},
    reconciler::Reconciler,
    report::Reports,
    rkt_service::Timeouts,
};
use crate::api::{
    RktNodeState,
    host_paths::{self, AGENT_STATE_DIR},
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
    /// How long the rkt API service may take to answer GetInfo after a restart, in seconds (at most an hour).
    #[arg(long, env = "RKTNETES_HEALTH_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub health_timeout: u64,
    /// How long systemd's restart job may take, in seconds (at most an hour).
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub restart_timeout: u64,
    /// How often the agent checks the node when nothing happens (the rkt API service's health, the versions, the
    /// files), in seconds. Findings are written only when they change.
    #[arg(long, env = "RKTNETES_CHECK_INTERVAL", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub check_interval: u64,
    /// A PEM file of certificate authorities that `https://` downloads of rkt releases (`spec.rkt.install.url`)
    /// trust beside the node's own, such as an internal mirror's; read at each download.
    #[arg(long, env = "RKTNETES_RELEASE_CA_FILE")]
    pub release_ca_file: Option<PathBuf>,
    /// A file of armored OpenPGP public keys that may sign rkt releases (`spec.rkt.install.signatureUrl`); read at
    /// each install.
    #[arg(long, env = "RKTNETES_RELEASE_KEYS_FILE")]
    pub release_keys_file: Option<PathBuf>,
    /// The port to serve Prometheus metrics on at `/metrics`; not served unless given.
    #[arg(long, env = "RKTNETES_METRICS_PORT")]
    pub metrics_port: Option<u16>,
    /// The address to serve metrics on (the chart gives the node's IP).
    #[arg(long, env = "RKTNETES_METRICS_IP", default_value = "127.0.0.1")]
    pub metrics_ip: std::net::IpAddr,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("cannot load the kubeconfig {}: {source}", .path.display())]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("cannot find the Kubernetes API (no kubeconfig given): {0}")]
    InferConfig(#[source] kube::config::InferConfigError),
    #[error("cannot reach the Kubernetes API: {0}")]
    Client(#[source] kube::Error),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("cannot watch the host's configuration directories: {0}")]
    Drift(#[source] std::io::Error),
    #[error(transparent)]
    HostNamespace(#[from] HostNamespaceError),
    #[error("cannot serve metrics on {address}: {source}")]
    Metrics {
        address: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Runs the agent until SIGTERM or Ctrl-C. Every line it logs names its node (`agent{node=...}`), so that the
/// logs of all the agents, gathered in one place, say which node each error is about.
pub async fn run(args: AgentArgs) -> Result<(), AgentError> {
    let span = tracing::info_span!("agent", node = %args.node_name);
    run_for_node(args).instrument(span).await
}

async fn run_for_node(args: AgentArgs) -> Result<(), AgentError> {
    let client = client(args.kubeconfig.as_deref()).await?;
    if let Some(port) = args.metrics_port {
        let address = std::net::SocketAddr::new(args.metrics_ip, port);
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|source| AgentError::Metrics { address, source })?;
        tokio::spawn(
            async move {
                if let Err(error) = metrics::serve(listener).await {
                    tracing::error!(%error, "serving metrics failed");
                }
            }
            .in_current_span(),
        );
    }
    let host = Host {
        root: args.host_root.clone(),
    };
    let host_programs = HostPrograms::new(args.host_mount_namespace.as_deref())?;
    let ledger_file = LedgerFile::new(&host.path(&args.state_dir));
    let dirs = host_paths::agent_written_dirs().map(str::to_owned);
    for dir in dirs.chain([args.state_dir.clone()]) {
        // A crash between creating a temporary file and renaming it leaves the temporary behind (the ledger's too).
        if let Err(error) = atomic_file::remove_leftovers(&host.path(&dir)) {
            tracing::warn!(%error, "could not clear leftover temporary files");
        }
    }
    let mut agent = Reconciler {
        host: host.clone(),
        ledger: ledger_file.load()?,
        ledger_file,
        reports: Reports::new(client.clone(), &args.node_name),
        systemd: None,
        timeouts: Timeouts {
            restart: Duration::from_secs(args.restart_timeout),
            health: Duration::from_secs(args.health_timeout),
        },
        host_programs,
        announced: None,
        announcement: None,
        last_commit: None,
        refused: None,
        started: None,
        start_failed_at: None,
        network: None,
        retry: false,
        trust: install::Trust {
            extra_ca_file: args.release_ca_file.clone(),
            release_keys_file: args.release_keys_file.clone(),
        },
        install_refused: None,
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
    tracing::info!(programs = agent.host_programs.describe(), "agent started");
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

async fn client(kubeconfig: Option<&std::path::Path>) -> Result<Client, AgentError> {
    let config = match kubeconfig {
        Some(path) => {
            let unreadable = |source| AgentError::Kubeconfig {
                path: path.to_owned(),
                source,
            };
            let kubeconfig = Kubeconfig::read_from(path).map_err(unreadable)?;
            Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(unreadable)?
        }
        None => Config::infer().await.map_err(AgentError::InferConfig)?,
    };
    Client::try_from(config).map_err(AgentError::Client)
}
