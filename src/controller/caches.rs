//! The controller's view of the cluster: watch-fed caches of RktNodeConfigs, Node metadata, RktNodeStates and the
//! agent DaemonSet. Every change that can alter a decision wakes the reconcile loop; nothing else does.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use futures::StreamExt;
use k8s_openapi::api::{apps::v1::DaemonSet, core::v1::Node};
use kube::{
    Api, Client, Resource, ResourceExt,
    core::PartialObjectMeta,
    runtime::{
        WatchStreamExt,
        reflector::{self, Store},
        watcher::{self, Event},
    },
};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tracing::Instrument;

use super::plan::Snapshot;
use crate::api::{RktNodeConfig, RktNodeState};

/// The caches, filled by background watches.
pub struct Caches {
    configs: Store<RktNodeConfig>,
    nodes: Store<PartialObjectMeta<Node>>,
    states: Store<RktNodeState>,
    daemonsets: Store<DaemonSet>,
}

impl Caches {
    /// Starts the watches; each change worth a pass notifies `wake`.
    pub fn start(
        client: &Client,
        agent_namespace: &str,
        agent_name: &str,
        wake: &Arc<Notify>,
    ) -> Self {
        let configs = spawn_watch(
            "rktnodeconfigs",
            Api::<RktNodeConfig>::all(client.clone()),
            watcher::Config::default(),
            wake.clone(),
            |_| true,
        );
        // Nodes matter only for their names and labels: a metadata watch, and a pass only when labels change.
        let mut labels_seen: HashMap<String, BTreeMap<String, String>> = HashMap::new();
        let nodes = spawn_watch(
            "nodes",
            Api::<PartialObjectMeta<Node>>::all(client.clone()),
            watcher::Config::default(),
            wake.clone(),
            move |event: &Event<PartialObjectMeta<Node>>| match event {
                Event::Apply(node) | Event::InitApply(node) => {
                    labels_seen
                        .insert(node.name_any(), node.labels().clone())
                        .as_ref()
                        != Some(node.labels())
                }
                Event::Delete(node) => {
                    labels_seen.remove(&node.name_any());
                    true
                }
                Event::Init | Event::InitDone => true,
            },
        );
        let states = spawn_watch(
            "rktnodestates",
            Api::<RktNodeState>::all(client.clone()),
            watcher::Config::default(),
            wake.clone(),
            |_| true,
        );
        let daemonsets = spawn_watch(
            "daemonsets",
            Api::<DaemonSet>::namespaced(client.clone(), agent_namespace),
            watcher::Config::default().fields(&format!("metadata.name={agent_name}")),
            wake.clone(),
            |_| true,
        );
        Self {
            configs,
            nodes,
            states,
            daemonsets,
        }
    }

    /// Waits until every cache holds its first full list.
    pub async fn wait_until_ready(&self) -> Result<(), reflector::store::WriterDropped> {
        self.configs.wait_until_ready().await?;
        self.nodes.wait_until_ready().await?;
        self.states.wait_until_ready().await?;
        self.daemonsets.wait_until_ready().await
    }

    /// What the caches hold now.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            configs: self.configs.state(),
            nodes: self.nodes.state(),
            states: self.states.state(),
        }
    }

    /// The agent DaemonSet as last seen.
    pub fn daemonset(&self) -> Option<Arc<DaemonSet>> {
        self.daemonsets.state().into_iter().next()
    }
}

/// Watches `api` in the background into a cache, waking the loop for the events `matters` keeps. Errors are
/// retried by the watch's backoff; they are logged, not fatal.
fn spawn_watch<K>(
    what: &'static str,
    api: Api<K>,
    config: watcher::Config,
    wake: Arc<Notify>,
    mut matters: impl FnMut(&Event<K>) -> bool + Send + 'static,
) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    let (store, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher::watcher(api, config).default_backoff());
    // Every line logged while the watch runs, kube's own included, names what it watches.
    let span = tracing::info_span!("watch", watch = what);
    tokio::spawn(
        async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                match event {
                    Ok(event) => {
                        if matters(&event) {
                            wake.notify_one();
                        }
                    }
                    Err(error) => tracing::warn!(%error, "watch failed; retrying"),
                }
            }
        }
        .instrument(span),
    );
    store
}
