//! What the agent tells the cluster: its RktNodeState's status, its conditions on the Node, and Events. Each is
//! written with server-side apply under the agent's own field manager, and only when it changed, so the kubelet's
//! Node conditions are never touched and a node at rest costs no writes.

use k8s_openapi::{
    api::core::v1::{Node, NodeCondition, ObjectReference},
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
};
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
};
use serde_json::json;
use std::{sync::Arc, time::Duration};
use tokio::sync::Mutex;

use crate::{
    api::{RktNodeState, RktNodeStateStatus, node_state::Release},
    events::{EventPublisher, Notice},
};

/// The field manager of everything the agent writes.
pub const FIELD_MANAGER: &str = "rktnetes-agent";

pub struct Reports {
    node: String,
    states: Api<RktNodeState>,
    nodes: Api<Node>,
    events: EventPublisher,
    /// What the agent last wrote, to write only changes.
    last_status: Option<RktNodeStateStatus>,
    last_node_conditions: Option<Vec<Condition>>,
}

impl Reports {
    pub fn new(client: Client, node: &str) -> Self {
        Self {
            node: node.to_owned(),
            states: Api::all(client.clone()),
            nodes: Api::all(client.clone()),
            events: EventPublisher::new(client, FIELD_MANAGER, node, "Apply"),
            last_status: None,
            last_node_conditions: None,
        }
    }

    /// Removes the agent's finalizer from a RktNodeState being deleted, once nothing of ours is left on the node.
    pub async fn release(&self, state: &RktNodeState) -> Result<(), kube::Error> {
        let Some(release) = Release::of(state) else {
            return Ok(());
        };
        self.states
            .patch(
                &self.node,
                &PatchParams::default(),
                &Patch::Merge(release.patch()),
            )
            .await
            .map(drop)
    }

    /// Writes the RktNodeState status when it differs from `current` (what the watch last delivered).
    pub async fn status(
        &mut self,
        current: Option<&RktNodeStateStatus>,
        status: RktNodeStateStatus,
    ) -> Result<(), kube::Error> {
        if current == Some(&status) || self.last_status.as_ref() == Some(&status) {
            return Ok(());
        }
        write_status(&self.states, &self.node, &status).await?;
        self.last_status = Some(status);
        Ok(())
    }

    /// Writes `status` after `after`, unless [`Announcement::settle`] comes first: a status that only says the
    /// agent is at work is worth a write when the work takes a while.
    pub fn announce_later(&self, status: RktNodeStateStatus, after: Duration) -> Announcement {
        let progress = Arc::new(Mutex::new(AnnouncementProgress::Due));
        let task = tokio::spawn({
            let (states, node, progress, status) = (
                self.states.clone(),
                self.node.clone(),
                progress.clone(),
                status.clone(),
            );
            async move {
                tokio::time::sleep(after).await;
                // Held while writing: a status written after it waits until this one is in.
                let mut progress = progress.lock().await;
                if *progress != AnnouncementProgress::Due {
                    return;
                }
                match write_status(&states, &node, &status).await {
                    Ok(_) => *progress = AnnouncementProgress::Written,
                    Err(error) => tracing::warn!(%error, "could not report Applying"),
                }
            }
        });
        Announcement {
            progress,
            status,
            task,
        }
    }

    /// Records `status` as the last one written (by an [`Announcement`]): the next status is compared with it.
    pub fn note_written(&mut self, status: RktNodeStateStatus) {
        self.last_status = Some(status);
    }

    /// Writes the agent's conditions on the Node when they changed since the last write. An empty list takes them
    /// away (server-side apply drops what this manager no longer applies).
    pub async fn node_conditions(&mut self, conditions: &[Condition]) -> Result<(), kube::Error> {
        if self.last_node_conditions.as_deref() == Some(conditions) {
            return Ok(());
        }
        let node_conditions: Vec<NodeCondition> = conditions
            .iter()
            .map(|condition| NodeCondition {
                type_: condition.type_.clone(),
                status: condition.status.clone(),
                reason: Some(condition.reason.clone()),
                message: Some(condition.message.clone()),
                last_transition_time: Some(condition.last_transition_time.clone()),
                last_heartbeat_time: Some(condition.last_transition_time.clone()),
            })
            .collect();
        let patch =
            json!({"apiVersion": "v1", "kind": "Node", "status": {"conditions": node_conditions}});
        self.nodes
            .patch_status(
                &self.node,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await?;
        self.last_node_conditions = Some(conditions.to_vec());
        Ok(())
    }

    /// Records an Event on the Node. Best effort: a lost Event is logged.
    pub async fn event(&self, notice: Notice) {
        let reference = ObjectReference {
            api_version: Some("v1".to_owned()),
            kind: Some("Node".to_owned()),
            name: Some(self.node.clone()),
            ..ObjectReference::default()
        };
        let reason = notice.reason.clone();
        if let Err(error) = self.events.publish(&reference, notice).await {
            tracing::warn!(%error, reason, "could not record an Event");
        }
    }
}

/// Applies `status` as the RktNodeState status of `node`, under the agent's field manager.
async fn write_status(
    states: &Api<RktNodeState>,
    node: &str,
    status: &RktNodeStateStatus,
) -> Result<(), kube::Error> {
    let patch =
        json!({"apiVersion": "rktnetes.io/v1alpha1", "kind": "RktNodeState", "status": status});
    let params = PatchParams::apply(FIELD_MANAGER).force();
    states
        .patch_status(node, &params, &Patch::Apply(&patch))
        .await
        .map(drop)
}

/// An `Applying` status that will be written unless settled first.
pub struct Announcement {
    progress: Arc<Mutex<AnnouncementProgress>>,
    status: RktNodeStateStatus,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AnnouncementProgress {
    Due,
    Written,
    Settled,
}

impl Announcement {
    /// From here on it is never written; if it is being written, returns once that write is done, so that the
    /// status written next lands after it. The status it wrote, if it did.
    pub async fn settle(self) -> Option<RktNodeStateStatus> {
        let mut progress = self.progress.lock().await;
        let written = *progress == AnnouncementProgress::Written;
        *progress = AnnouncementProgress::Settled;
        self.task.abort();
        written.then_some(self.status)
    }
}

/// Now, as Kubernetes writes times.
pub fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}
