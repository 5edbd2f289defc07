//! `rktnetes controller`: turns RktNodeConfigs into one RktNodeState per selected node, rolled out in waves, keeps
//! the agent DaemonSet, and reports on each config.
//!
//! The decisions are one pure function over the caches ([`plan::plan`]); this module only wires the caches, the
//! leader Lease, the writer and the probes around it. Every replica keeps warm caches and serves probes; only the
//! Lease holder writes.

mod agent_daemonset;
pub mod agent_placement;
mod apply;
mod caches;
pub mod config_status;
mod http;
mod leadership;
pub(crate) mod metrics;
pub mod plan;
pub mod rollout;
pub mod selection;
pub mod status_pacing;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use clap::Args;
use k8s_openapi::{
    api::core::v1::{ResourceRequirements, Toleration},
    apimachinery::pkg::apis::meta::v1::Time,
};
use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::Notify;

pub use agent_daemonset::{AgentSettings, agent_daemonset};
pub use apply::FIELD_MANAGER;
pub use plan::CONFIG_LABEL;

use crate::{events::EventPublisher, memory::Trimmer};

use self::{
    apply::{Writer, daemonset_change},
    caches::Caches,
    http::Health,
    metrics::Metrics,
    status_pacing::StatusPacing,
};

/// How long a burst of changes may last before a pass acts on it.
const DEBOUNCE: Duration = Duration::from_millis(200);
/// A failed write is retried after this, doubling up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(60);

#[derive(Debug, Args)]
pub struct ControllerArgs {
    /// The namespace of the controller's leader Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "rktnetes-system")]
    pub namespace: String,
    /// This replica's identity in the Lease; the pod name in a cluster.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    #[arg(long, default_value = "rktnetes-controller")]
    pub lease_name: String,
    /// How long a Lease lasts without renewal, in seconds.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub lease_duration: u64,
    /// Where `/livez`, `/readyz` and `/metrics` are served.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub http_address: SocketAddr,
    /// How many API writes run at once.
    #[arg(long, default_value_t = 8, value_parser = parse_in_range::<1, 64>)]
    pub write_concurrency: usize,
    /// A full pass runs at least this often, in seconds, even when nothing changes (at most a day).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub resync_seconds: u64,
    /// The namespace of the agent DaemonSet.
    #[arg(long, default_value = "rktnetes-system")]
    pub agent_namespace: String,
    #[arg(long, default_value = "rktnetes-agent")]
    pub agent_name: String,
    /// The agent's image (this project's image: the agent is `rktnetes agent`).
    #[arg(long, default_value = concat!("rktnetes-operator:", env!("CARGO_PKG_VERSION")))]
    pub agent_image: String,
    #[arg(long)]
    pub agent_image_pull_policy: Option<String>,
    #[arg(long, default_value = "rktnetes-agent")]
    pub agent_service_account: String,
    /// The agent's log filter (RUST_LOG syntax).
    #[arg(long, default_value = "info")]
    pub agent_log_level: String,
    /// The agent's tolerations, as JSON. By default it tolerates every taint, to reach every selected node.
    #[arg(long, default_value = r#"[{"operator":"Exists"}]"#, value_parser = parse_json::<Tolerations>)]
    pub agent_tolerations: Tolerations,
    /// The agent's resource requests and limits, as JSON.
    #[arg(long, value_parser = parse_json::<ResourceRequirements>)]
    pub agent_resources: Option<ResourceRequirements>,
    #[arg(long)]
    pub agent_priority_class_name: Option<String>,
    /// How often each agent checks its node when nothing happens (the rkt API service, the versions, the files),
    /// in seconds (at most an hour).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub agent_check_interval: u64,
    /// A ConfigMap in the agent's namespace whose `ca.crt` holds certificate authorities that the agents' downloads
    /// of rkt releases (`spec.rkt.install.url`) trust beside the node's own, such as an internal mirror's.
    #[arg(long)]
    pub agent_release_ca_config_map: Option<String>,
    /// A ConfigMap in the agent's namespace whose `keys.asc` holds the armored OpenPGP public keys that may sign
    /// rkt releases (`spec.rkt.install.signatureUrl`).
    #[arg(long)]
    pub agent_release_keys_config_map: Option<String>,
    /// The port on each node's IP where the agents serve their Prometheus metrics; not served unless given.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub agent_metrics_port: Option<u16>,
}

/// A list of tolerations given as one JSON argument (clap would otherwise take a `Vec` as repeated arguments).
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(transparent)]
pub struct Tolerations(pub Vec<Toleration>);

/// A count from `MIN` to `MAX`.
fn parse_in_range<const MIN: usize, const MAX: usize>(text: &str) -> Result<usize, String> {
    let value: usize = text
        .parse()
        .map_err(|error| format!("not a count: {error}"))?;
    if (MIN..=MAX).contains(&value) {
        Ok(value)
    } else {
        Err(format!("{value} is not in {MIN}..={MAX}"))
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    serde_json::from_str(text).map_err(|error| format!("not valid JSON for this option: {error}"))
}

impl ControllerArgs {
    fn agent_settings(&self) -> AgentSettings {
        AgentSettings {
            namespace: self.agent_namespace.clone(),
            name: self.agent_name.clone(),
            image: self.agent_image.clone(),
            image_pull_policy: self.agent_image_pull_policy.clone(),
            service_account: self.agent_service_account.clone(),
            log_level: self.agent_log_level.clone(),
            tolerations: self.agent_tolerations.0.clone(),
            resources: self.agent_resources.clone(),
            priority_class_name: self.agent_priority_class_name.clone(),
            check_interval_seconds: self.agent_check_interval,
            release_ca_config_map: self.agent_release_ca_config_map.clone(),
            release_keys_config_map: self.agent_release_keys_config_map.clone(),
            metrics_port: self.agent_metrics_port,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("cannot reach the Kubernetes API: {0}")]
    Client(#[source] kube::Error),
    #[error("cannot take part in leader election on Lease {lease}: {source}")]
    Lease {
        lease: String,
        #[source]
        source: kube_lease_manager::LeaseManagerError,
    },
    #[error("a cache stopped before its first full list")]
    CacheStopped,
    #[error("cannot serve probes and metrics on {address}: {source}")]
    Http {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Runs the controller until SIGTERM or Ctrl-C.
pub async fn run(args: ControllerArgs) -> Result<(), ControllerError> {
    let client = Client::try_default()
        .await
        .map_err(ControllerError::Client)?;
    let identity = args
        .identity
        .clone()
        .unwrap_or_else(|| format!("rktnetes-controller-{}", std::process::id()));
    let metrics = Arc::new(Metrics::default());
    let health = Arc::new(Health::default());
    let resync = Duration::from_secs(args.resync_seconds);

    let listener = tokio::net::TcpListener::bind(args.http_address)
        .await
        .map_err(|source| ControllerError::Http {
            address: args.http_address,
            source,
        })?;
    tokio::spawn(http::serve(
        listener,
        health.clone(),
        metrics.clone(),
        resync * 5,
    ));

    let wake = Arc::new(Notify::new());
    let caches = Caches::start(&client, &args.agent_namespace, &args.agent_name, &wake);
    caches
        .wait_until_ready()
        .await
        .map_err(|_| ControllerError::CacheStopped)?;
    health.set_ready();
    tracing::info!(identity, "caches synced");

    let lease_error = |source| ControllerError::Lease {
        lease: format!("{}/{}", args.namespace, args.lease_name),
        source,
    };
    let lease = LeaseManagerBuilder::new(client.clone(), &args.lease_name)
        .with_namespace(&args.namespace)
        .with_identity(&identity)
        .with_duration(args.lease_duration)
        .with_grace(args.lease_duration.div_ceil(3))
        .build()
        .await
        .map_err(lease_error)?;
    let mut leader = leadership::take_part(lease, &args.lease_name, &args.namespace);

    let writer = Writer {
        client: client.clone(),
        metrics: metrics.clone(),
        events: EventPublisher::new(client.clone(), FIELD_MANAGER, &identity, "Reconcile"),
        leader: leader.clone(),
        concurrency: args.write_concurrency.max(1),
        agent_name: args.agent_name.clone(),
    };
    let agent = args.agent_settings();
    let mut retry = FIRST_RETRY;
    let mut pacing = StatusPacing::default();
    let mut status_due: Option<tokio::time::Instant> = None;
    let mut trimmer = Trimmer::default();
    let mut shutdown = std::pin::pin!(crate::shutdown::signal());
    loop {
        let held_status = async {
            match status_due {
                Some(due) => tokio::time::sleep_until(due).await,
                None => std::future::pending().await,
            }
        };
        let trim_due = trimmer.due();
        let trim = async move {
            match trim_due {
                Some(due) => tokio::time::sleep_until(due.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = wake.notified() => {}
            () = held_status => {}
            () = trim => {
                trimmer.after_pass(std::time::Instant::now());
                continue;
            }
            () = tokio::time::sleep(resync) => {}
            changed = leader.changed() => {
                if changed.is_err() {
                    tracing::error!(lease = args.lease_name, namespace = args.namespace, "the leader election task ended; stopping");
                    break;
                }
                tracing::info!(identity, leader = *leader.borrow(), "leadership changed");
            }
            () = &mut shutdown => break,
        }
        health.beat();
        let leads = *leader.borrow();
        metrics.leader.set(i64::from(leads));
        let snapshot = caches.snapshot();
        metrics.set_phases(snapshot.states.iter().map(|state| state.current_phase()));
        metrics.set_configs(snapshot.configs.iter().map(AsRef::as_ref));
        if !leads {
            continue;
        }
        tokio::time::sleep(DEBOUNCE).await;
        let started = std::time::Instant::now();
        let snapshot = caches.snapshot();
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let mut plan = plan::plan(&snapshot, &now);
        let paced = pacing.pace(
            std::mem::take(&mut plan.statuses),
            &snapshot.configs,
            tokio::time::Instant::now(),
        );
        plan.statuses = paced.now;
        status_due = paced.due;
        let labels =
            agent_placement::label_changes(&snapshot.nodes, &plan.agent_nodes, &agent.name);
        // The nodes are labelled before the DaemonSet that selects the label is written (a later pass, woken by
        // the labels' watch events), so that no agent that should stay is ever taken off its node.
        let daemonset = if labels.iter().any(|label| label.agent) {
            None
        } else {
            let needed = !snapshot.configs.is_empty() || !plan.releasing_nodes.is_empty();
            daemonset_change(
                needed.then(|| agent_daemonset(&agent)),
                caches.daemonset().as_deref(),
                &agent.namespace,
                &agent.name,
            )
        };
        let errors = writer.write(plan, &labels, daemonset).await;
        // The plan, the snapshot and whatever a relist or a release let go are freed by now.
        trimmer.after_pass(std::time::Instant::now());
        metrics.reconciles.inc();
        metrics
            .reconcile_duration
            .observe(started.elapsed().as_secs_f64());
        if errors.is_empty() {
            retry = FIRST_RETRY;
        } else {
            for error in &errors {
                tracing::warn!(%error, kind = error.resource, name = error.name, "write failed; retrying in {retry:?}");
            }
            let wake = wake.clone();
            tokio::spawn(async move {
                tokio::time::sleep(retry).await;
                wake.notify_one();
            });
            retry = (retry * 2).min(MAX_RETRY);
        }
    }
    tracing::info!(identity, "stopping");
    Ok(())
}
