//! Simulated agents, one process for all of them (`rktnetes-e2e scale agents`): each watches its own node's
//! RktNodeState with a field selector, as the real agent does (one watch, one connection each), and answers a new
//! spec with the writes the real agent makes for a change (src/agent/reconciler.rs): after the apply delay its status
//! `Applied` with the hash (and `Applying` before it when the delay is longer than the agent's `ANNOUNCE_AFTER`), and
//! its conditions on the Node the first time. A state being deleted gets the real
//! agent's clean-up writes: the conditions taken off the Node, a `FilesRemoved` Event, and the cleanup finalizer
//! removed.

use std::{
    io::Write,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use anyhow::Context;
use futures::StreamExt;
use k8s_openapi::{
    api::{core::v1::Node, events::v1::Event},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time},
    jiff::Timestamp,
};
use kube::{
    Api, Client, ResourceExt,
    api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams},
    runtime::{
        WatchStreamExt,
        watcher::{self, Event as WatchEvent, watcher},
    },
};
use serde_json::{Value, json};

use super::cloud_nodes;

/// The agent's field manager and its cleanup finalizer, as the real agent names them.
const FIELD_MANAGER: &str = "rktnetes-agent";
const CLEANUP_FINALIZER: &str = "rktnetes.io/agent-cleanup";
/// The namespace Events about cluster-scoped objects go to.
const EVENT_NAMESPACE: &str = "default";

/// RktNodeStates, without the operator's types (the harness does not link the operator).
pub fn state_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("rktnetes.io", "v1alpha1", "RktNodeState"),
        "rktnodestates",
    )
}

/// Runs agents for bench nodes `0..nodes` until killed. Prints `watching N` once every agent holds its first list.
pub async fn run(client: Client, nodes: usize, apply_delay: Duration) -> anyhow::Result<()> {
    let listed = Arc::new(AtomicUsize::new(0));
    let mut agents = Vec::with_capacity(nodes);
    for index in 0..nodes {
        let agent = Agent::new(client.clone(), cloud_nodes::name(index), apply_delay);
        agents.push(tokio::spawn(agent.run(listed.clone())));
    }
    loop {
        if listed.load(Ordering::Relaxed) >= nodes {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "watching {nodes}").context("telling the bench")?;
    stdout.flush()?;
    drop(stdout);
    for agent in agents {
        agent.await.context("an agent stopped")?;
    }
    Ok(())
}

/// The real agent's `ANNOUNCE_AFTER` (src/agent/reconciler.rs): an apply slower than this says `Applying`.
const ANNOUNCE_AFTER: Duration = Duration::from_secs(5);

struct Agent {
    node: String,
    states: Api<DynamicObject>,
    nodes: Api<Node>,
    events: Api<Event>,
    apply_delay: Duration,
    /// The hash last announced as `Applying`.
    announced: Option<String>,
    /// Whether its conditions are on the Node.
    conditions_written: bool,
}

impl Agent {
    fn new(client: Client, node: String, apply_delay: Duration) -> Self {
        Self {
            node,
            states: Api::all_with(client.clone(), &state_resource()),
            nodes: Api::all(client.clone()),
            events: Api::namespaced(client, EVENT_NAMESPACE),
            apply_delay,
            announced: None,
            conditions_written: false,
        }
    }

    async fn run(mut self, listed: Arc<AtomicUsize>) {
        let config = watcher::Config::default().fields(&format!("metadata.name={}", self.node));
        let stream = watcher(self.states.clone(), config).default_backoff();
        let mut stream = std::pin::pin!(stream);
        let mut first_list = true;
        while let Some(event) = stream.next().await {
            match event {
                Ok(WatchEvent::InitDone) if first_list => {
                    first_list = false;
                    listed.fetch_add(1, Ordering::Relaxed);
                }
                Ok(WatchEvent::Apply(state) | WatchEvent::InitApply(state)) => {
                    self.act(&state).await
                }
                Ok(_) => {}
                Err(error) => eprintln!("{}: watch failed: {error}", self.node),
            }
        }
    }

    async fn act(&mut self, state: &DynamicObject) {
        if state.metadata.deletion_timestamp.is_some() {
            if state.finalizers().iter().any(|f| f == CLEANUP_FINALIZER) {
                self.clean_up(state).await;
            }
            return;
        }
        let hash = state.data["spec"]["hash"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let applied = state.data["status"]["appliedHash"].as_str();
        if applied == Some(hash.as_str()) || self.announced.as_deref() == Some(hash.as_str()) {
            return;
        }
        self.announced = Some(hash.clone());
        // As the agent does, an apply that takes longer than ANNOUNCE_AFTER says `Applying` when that has passed.
        if self.apply_delay > ANNOUNCE_AFTER {
            tokio::time::sleep(ANNOUNCE_AFTER).await;
            let applying =
                json!({"phase": "Applying", "observedHash": hash, "appliedHash": applied});
            self.status(applying).await;
            tokio::time::sleep(self.apply_delay - ANNOUNCE_AFTER).await;
        } else {
            tokio::time::sleep(self.apply_delay).await;
        }
        let done = json!({"phase": "Applied", "observedHash": hash, "appliedHash": hash, "apiServiceHealthy": true});
        self.status(done).await;
        if !self.conditions_written {
            self.conditions(&["RktNetworkReady", "RktAPIServiceHealthy"])
                .await;
            self.conditions_written = true;
        }
    }

    async fn clean_up(&mut self, state: &DynamicObject) {
        if self.conditions_written {
            self.conditions(&[]).await;
            self.conditions_written = false;
        }
        self.event("FilesRemoved", "took the node's rkt configuration away")
            .await;
        let finalizers: Vec<&String> = state
            .finalizers()
            .iter()
            .filter(|f| *f != CLEANUP_FINALIZER)
            .collect();
        let patch = json!({"metadata": {
            "resourceVersion": state.resource_version(), "finalizers": finalizers,
        }});
        if let Err(error) = self
            .states
            .patch(&self.node, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            eprintln!("{}: releasing the state failed: {error}", self.node);
        }
        self.announced = None;
    }

    async fn status(&self, status: Value) {
        let patch =
            json!({"apiVersion": "rktnetes.io/v1alpha1", "kind": "RktNodeState", "status": status});
        let params = PatchParams::apply(FIELD_MANAGER).force();
        if let Err(error) = self
            .states
            .patch_status(&self.node, &params, &Patch::Apply(&patch))
            .await
        {
            eprintln!("{}: writing the status failed: {error}", self.node);
        }
    }

    async fn conditions(&self, types: &[&str]) {
        let now = Time(Timestamp::now());
        let conditions: Vec<Value> = types
            .iter()
            .map(|type_| {
                json!({"type": type_, "status": "True", "reason": "Ready", "message": "simulated",
                    "lastTransitionTime": now, "lastHeartbeatTime": now})
            })
            .collect();
        let patch =
            json!({"apiVersion": "v1", "kind": "Node", "status": {"conditions": conditions}});
        let params = PatchParams::apply(FIELD_MANAGER).force();
        if let Err(error) = self
            .nodes
            .patch_status(&self.node, &params, &Patch::Apply(&patch))
            .await
        {
            eprintln!(
                "{}: writing the Node's conditions failed: {error}",
                self.node
            );
        }
    }

    async fn event(&self, reason: &str, note: &str) {
        let event = Event {
            metadata: ObjectMeta {
                generate_name: Some(format!("{}.", self.node)),
                namespace: Some(EVENT_NAMESPACE.to_owned()),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(Timestamp::now())),
            action: Some("Apply".to_owned()),
            reason: Some(reason.to_owned()),
            note: Some(note.to_owned()),
            type_: Some("Normal".to_owned()),
            reporting_controller: Some(FIELD_MANAGER.to_owned()),
            reporting_instance: Some(self.node.clone()),
            regarding: Some(k8s_openapi::api::core::v1::ObjectReference {
                api_version: Some("v1".to_owned()),
                kind: Some("Node".to_owned()),
                name: Some(self.node.clone()),
                ..Default::default()
            }),
            ..Event::default()
        };
        if let Err(error) = self.events.create(&PostParams::default(), &event).await {
            eprintln!("{}: recording an Event failed: {error}", self.node);
        }
    }
}
