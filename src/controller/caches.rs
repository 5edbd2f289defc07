//! The controller's view of the cluster: watch-fed caches of RktNodeConfigs, Node metadata, RktNodeStates and the
//! agent DaemonSet. Every change that can alter a decision wakes the reconcile loop; nothing else does. The caches
//! keep only what a decision reads: no object keeps its managedFields, a Node keeps no annotations, and a
//! RktNodeState keeps neither its files' contents nor its conditions (the controller compares hashes and phases).
//! At 5,000 nodes those are most of what the API server sends.

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
            trim_meta,
            wake.clone(),
            |_| true,
        );
        // Nodes matter only for their names and labels: a metadata watch, and a pass only when labels change.
        let mut labels_seen: HashMap<String, BTreeMap<String, String>> = HashMap::new();
        let nodes = spawn_watch(
            "nodes",
            Api::<PartialObjectMeta<Node>>::all(client.clone()),
            watcher::Config::default(),
            trim_node,
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
            trim_state,
            wake.clone(),
            |_| true,
        );
        let daemonsets = spawn_watch(
            "daemonsets",
            Api::<DaemonSet>::namespaced(client.clone(), agent_namespace),
            watcher::Config::default().fields(&format!("metadata.name={agent_name}")),
            trim_meta,
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
    trim: fn(&mut K),
    wake: Arc<Notify>,
    mut matters: impl FnMut(&Event<K>) -> bool + Send + 'static,
) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    let (store, writer) = reflector::store();
    let stream = reflector::reflector(
        writer,
        watcher::watcher(api, config).default_backoff().modify(trim),
    );
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

/// Drops what no decision reads from any object: its managedFields.
fn trim_meta<K: Resource>(object: &mut K) {
    object.meta_mut().managed_fields = None;
}

/// A Node is its name and labels to the controller.
fn trim_node(node: &mut PartialObjectMeta<Node>) {
    trim_meta(node);
    node.metadata.annotations = None;
}

/// A RktNodeState is its config, hash, phase, error and finalizers to the controller: the files' contents and the
/// node's conditions stay with the agent.
fn trim_state(state: &mut RktNodeState) {
    trim_meta(state);
    state.spec.files = Vec::new();
    if let Some(status) = &mut state.status {
        status.conditions = Vec::new();
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ManagedFieldsEntry, Time};

    use super::*;
    use crate::api::{RktNodeStateStatus, node_state::RktNodeStateSpec};

    #[test]
    fn a_state_keeps_what_decisions_read() {
        let spec: RktNodeStateSpec = serde_json::from_value(serde_json::json!({
            "configName": "bridge", "hash": "h1", "restartApiService": true,
            "files": [{"path": "/etc/rkt/net.d/00-rktnetes.conf", "content": "{}", "mode": 420}],
            "rkt": {"version": "1.30.0", "apiEndpoint": "localhost:15441", "apiServiceUnit": "rkt-api.service"},
        }))
        .expect("a spec");
        let mut state = RktNodeState::new("n1", spec);
        state.metadata.managed_fields = Some(vec![ManagedFieldsEntry::default()]);
        state.metadata.finalizers = Some(vec!["rktnetes.io/agent-cleanup".to_owned()]);
        state.status = Some(RktNodeStateStatus {
            applied_hash: Some("h1".to_owned()),
            last_error: Some("e".to_owned()),
            conditions: vec![Condition {
                type_: "RktNetworkReady".to_owned(),
                status: "True".to_owned(),
                reason: "Proven".to_owned(),
                message: String::new(),
                last_transition_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
                observed_generation: None,
            }],
            ..RktNodeStateStatus::default()
        });
        trim_state(&mut state);
        assert!(state.metadata.managed_fields.is_none() && state.spec.files.is_empty());
        assert_eq!(
            (state.spec.config_name.as_str(), state.spec.hash.as_str()),
            ("bridge", "h1")
        );
        let status = state.status.expect("a status");
        assert!(status.conditions.is_empty());
        assert_eq!(status.last_error.as_deref(), Some("e"));
        assert_eq!(state.metadata.finalizers.map(|f| f.len()), Some(1));
    }
}
