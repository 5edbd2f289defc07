//! Carries out a [`Plan`]: server-side apply under one field manager, a bounded number of writes at once, every
//! write counted, and nothing written unless this replica leads.

use std::sync::Arc;

use futures::{StreamExt, stream};
use k8s_openapi::api::{
    apps::v1::DaemonSet,
    core::v1::{Node, ObjectReference},
};
use kube::{
    Api, Client, Resource,
    api::{DeleteParams, Patch, PatchParams},
};
use serde_json::json;
use tokio::sync::watch;
use tracing::Instrument;

use super::{
    agent_daemonset::TEMPLATE_HASH_ANNOTATION,
    agent_placement::NodeLabel,
    metrics::Metrics,
    plan::{Plan, PlannedEvent},
};
use crate::{
    api::{RktNodeConfig, RktNodeConfigStatus, RktNodeState},
    events::EventPublisher,
};

/// A delete (or a patch of something about to go) that finds nothing has nothing left to do.
fn gone_is_fine<T>(result: Result<T, kube::Error>) -> Result<(), kube::Error> {
    match result {
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        other => other.map(drop),
    }
}

/// The field manager of everything the controller writes.
pub const FIELD_MANAGER: &str = "rktnetes-controller";

/// A write that failed, with what it was for.
#[derive(Debug, thiserror::Error)]
#[error("{verb} {resource} {name}: {source}")]
pub struct WriteError {
    pub verb: &'static str,
    pub resource: &'static str,
    pub name: String,
    #[source]
    pub source: kube::Error,
}

/// The writer of a controller replica.
pub struct Writer {
    pub client: Client,
    pub metrics: Arc<Metrics>,
    pub events: EventPublisher,
    pub leader: watch::Receiver<bool>,
    pub concurrency: usize,
    /// The agent DaemonSet's name, the value of the nodes' agent label.
    pub agent_name: String,
}

/// What happens to the agent DaemonSet.
pub enum DaemonSetChange {
    Apply(Box<DaemonSet>),
    Delete { namespace: String, name: String },
}

impl Writer {
    fn leads(&self) -> bool {
        *self.leader.borrow()
    }

    /// Writes `plan`, the nodes' agent `labels` and the DaemonSet change if any: labels that put an agent on a
    /// node first, labels that take one off last. Returns the writes that failed.
    pub async fn write(
        &self,
        plan: Plan,
        labels: &[NodeLabel],
        daemonset: Option<DaemonSetChange>,
    ) -> Vec<WriteError> {
        if !self.leads() {
            return Vec::new();
        }
        let states: Api<RktNodeState> = Api::all(self.client.clone());
        let configs: Api<RktNodeConfig> = Api::all(self.client.clone());
        let apply = PatchParams::apply(FIELD_MANAGER).force();
        let (added, removed): (Vec<&NodeLabel>, Vec<&NodeLabel>) =
            labels.iter().partition(|label| label.agent);

        let (states, configs, apply) = (&states, &configs, &apply);
        let mut errors = self.write_labels(added).await;
        errors.extend(
            self.each("rktnodestate", "apply", plan.apply_states, |state| {
                let name = state.metadata.name.clone().unwrap_or_default();
                (name.clone(), async move {
                    states
                        .patch(&name, apply, &Patch::Apply(&state))
                        .await
                        .map(drop)
                })
            })
            .await,
        );
        errors.extend(
            self.each("rktnodestate", "delete", plan.delete_states, |name| {
                (name.clone(), async move {
                    gone_is_fine(states.delete(&name, &DeleteParams::background()).await)
                })
            })
            .await,
        );
        errors.extend(
            self.each("rktnodestate", "release", plan.release_states, |release| {
                (release.name.clone(), async move {
                    let patch = Patch::Merge(release.patch());
                    gone_is_fine(
                        states
                            .patch(&release.name, &PatchParams::default(), &patch)
                            .await,
                    )
                })
            })
            .await,
        );
        errors.extend(
            self.each(
                "rktnodeconfig_status",
                "apply",
                plan.statuses,
                |(name, status)| {
                    (name.clone(), async move {
                        configs
                            .patch_status(&name, apply, &Patch::Apply(status_patch(&status)))
                            .await
                            .map(drop)
                    })
                },
            )
            .await,
        );

        if let Some(change) = daemonset {
            errors.extend(self.write_daemonset(change).await);
        }
        errors.extend(self.write_labels(removed).await);
        for event in plan.events {
            let span = tracing::info_span!("event", config = event.config);
            self.publish(event).instrument(span).await;
        }
        errors
    }

    /// Runs `write` for every item, at most `concurrency` at once (each gives the name of the `resource` object it
    /// writes, and the write); the writes that failed.
    async fn each<T, W, F>(
        &self,
        resource: &'static str,
        verb: &'static str,
        items: impl IntoIterator<Item = T>,
        mut write: W,
    ) -> Vec<WriteError>
    where
        W: FnMut(T) -> (String, F),
        F: Future<Output = Result<(), kube::Error>>,
    {
        stream::iter(items)
            .map(|item| {
                let (name, future) = write(item);
                self.write_one(resource, verb, name, future)
            })
            .buffer_unordered(self.concurrency)
            .filter_map(std::future::ready)
            .collect()
            .await
    }

    /// Runs one write in a span naming its object, so that every line logged meanwhile, kube's own included, says
    /// what it is about; records its outcome.
    async fn write_one(
        &self,
        resource: &'static str,
        verb: &'static str,
        name: String,
        write: impl Future<Output = Result<(), kube::Error>>,
    ) -> Option<WriteError> {
        let span = tracing::info_span!("write", kind = resource, name);
        let result = write.instrument(span).await;
        self.record(resource, verb, name, result)
    }

    /// Sets or removes the agent label of each node in `labels` (a merge patch of that one label).
    async fn write_labels(&self, labels: Vec<&NodeLabel>) -> Vec<WriteError> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        };
        let (nodes, params) = (&nodes, &params);
        let agent_name = self.agent_name.as_str();
        self.each("node", "label", labels, |label| {
            (label.node.clone(), async move {
                let patch = Patch::Merge(label.patch(agent_name));
                // A node that went meanwhile needs no agent.
                gone_is_fine(nodes.patch(&label.node, params, &patch).await)
            })
        })
        .await
    }

    async fn write_daemonset(&self, change: DaemonSetChange) -> Option<WriteError> {
        match change {
            DaemonSetChange::Apply(daemonset) => {
                let namespace = daemonset.metadata.namespace.clone().unwrap_or_default();
                let name = daemonset.metadata.name.clone().unwrap_or_default();
                let api: Api<DaemonSet> = Api::namespaced(self.client.clone(), &namespace);
                let params = PatchParams::apply(FIELD_MANAGER).force();
                let write = async {
                    api.patch(&name, &params, &Patch::Apply(daemonset.as_ref()))
                        .await
                        .map(drop)
                };
                self.write_one("daemonset", "apply", name.clone(), write)
                    .await
            }
            DaemonSetChange::Delete { namespace, name } => {
                let api: Api<DaemonSet> = Api::namespaced(self.client.clone(), &namespace);
                let write =
                    async { gone_is_fine(api.delete(&name, &DeleteParams::background()).await) };
                self.write_one("daemonset", "delete", name.clone(), write)
                    .await
            }
        }
    }

    /// Events are best effort: a lost Event is counted and logged.
    async fn publish(&self, event: PlannedEvent) {
        let reference = ObjectReference {
            api_version: Some(RktNodeConfig::api_version(&()).into_owned()),
            kind: Some(RktNodeConfig::kind(&()).into_owned()),
            name: Some(event.config.clone()),
            ..ObjectReference::default()
        };
        match self.events.publish(&reference, event.notice).await {
            Ok(()) => self.metrics.wrote("event", "create"),
            Err(error) => {
                self.metrics.failed("event");
                tracing::warn!(%error, "could not record an Event");
            }
        }
    }

    fn record(
        &self,
        resource: &'static str,
        verb: &'static str,
        name: String,
        result: Result<(), kube::Error>,
    ) -> Option<WriteError> {
        match result {
            Ok(()) => {
                self.metrics.wrote(resource, verb);
                tracing::debug!(resource, verb, name, "wrote");
                None
            }
            Err(source) => {
                self.metrics.failed(resource);
                Some(WriteError {
                    verb,
                    resource,
                    name,
                    source,
                })
            }
        }
    }
}

/// The DaemonSet write a pass needs: none when the cached one carries the desired template hash.
pub fn daemonset_change(
    desired: Option<DaemonSet>,
    current: Option<&DaemonSet>,
    namespace: &str,
    name: &str,
) -> Option<DaemonSetChange> {
    let hash = |daemonset: &DaemonSet| {
        daemonset
            .metadata
            .annotations
            .as_ref()
            .and_then(|annotations| annotations.get(TEMPLATE_HASH_ANNOTATION).cloned())
    };
    match (desired, current) {
        (Some(desired), Some(current)) if hash(&desired) == hash(current) => None,
        (Some(desired), _) => Some(DaemonSetChange::Apply(Box::new(desired))),
        (None, Some(_)) => Some(DaemonSetChange::Delete {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }),
        (None, None) => None,
    }
}

fn status_patch(status: &RktNodeConfigStatus) -> serde_json::Value {
    json!({
        "apiVersion": RktNodeConfig::api_version(&()),
        "kind": RktNodeConfig::kind(&()),
        "status": status,
    })
}
