//! What every node scenario starts from and looks at: the seed's bridge config for the test pool, a clean slate on
//! the nodes, the controller of the chart, and the node's rkt API service and conditions.

use std::{collections::BTreeMap, time::Duration};

use k8s_openapi::api::{core::v1::Node, events::v1::Event};
use kube::{Api, Client, api::ListParams};
use rktnetes_operator::api::{NodePhase, RktNodeState};

use super::{
    cluster::cluster,
    controller::{ChartController, ensure_namespace, reset, states},
    eventually,
    fixtures::TestConfig,
    nodes::{OLD_RKT_NODE, POOL, node_file, node_ok, node_shell, nodes},
};

pub const NET_FILE: &str = "/etc/rkt/net.d/00-rktnetes.conf";
pub const STAGE1_FILE: &str = "/etc/rkt/stage1.d/rktnetes.json";
/// A vendor's stage1 default beside the operator's, which scenarios put on a node.
pub const VENDOR_STAGE1: &str = "/etc/rkt/stage1.d/50-vendor.json";
/// The rkt API service's unit file, hand-written on the test nodes (`e2e/node/rkt-api.service`) until a scenario
/// removes it and the agent writes its own.
pub const UNIT_FILE: &str = "/etc/systemd/system/rkt-api.service";
/// The rkt stand-in's fault switch (`tests/rkt-standin/src/fault.rs`).
pub const FAULT_FILE: &str = "/run/rkt-standin/fault";

/// How long the agents and the controller may take to act on a change.
pub const REACTION: Duration = Duration::from_secs(60);

/// The seed's bridge example (e2e/examples/bridge.yaml), selecting the test pool.
pub fn bridge_example() -> TestConfig {
    TestConfig::example("bridge").in_pool("e2e")
}

/// Starts from nothing of ours on the nodes: no configs, no states, none of our files, and none of the foreign
/// files a scenario that failed half-way may have left.
pub async fn clean_slate(client: &Client) {
    for node in *POOL {
        node_ok(
            node,
            &format!(
                "rm -f {VENDOR_STAGE1} {FAULT_FILE} /etc/rkt/net.d/00-admin.conf /etc/rkt/net.d/50-admin.conf"
            ),
        );
    }
    reset(client).await;
    eventually(
        "the nodes let go of the previous scenario's files",
        Duration::from_secs(120),
        async || {
            let left: Vec<&str> = POOL
                .iter()
                .chain([&*OLD_RKT_NODE])
                .copied()
                .filter(|node| node_file(node, NET_FILE).is_some())
                .collect();
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("{NET_FILE} on {left:?}"))
            }
        },
    )
    .await;
}

/// The nodes with the chart installed, its controller running, and a clean slate.
pub async fn setup() -> (Client, ChartController) {
    let cluster = cluster();
    let client = cluster.client().await;
    ensure_namespace(&client).await;
    nodes(cluster);
    let controller = ChartController::start(cluster, "e2e").await;
    clean_slate(&client).await;
    (client, controller)
}

/// A shell script run on a node when dropped: undoes what a scenario put there, however the scenario ends.
pub struct Cleanup(pub &'static str, pub String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        node_shell(self.0, &self.1);
    }
}

/// Waits for an Event regarding `node` with `reason` whose note contains `text`.
pub async fn node_event(client: &Client, node: &str, reason: &str, text: &str) {
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    eventually(
        &format!("a {reason} Event on {node} says {text:?}"),
        REACTION,
        async || {
            let list = events.list(&ListParams::default()).await.ok()?;
            list.items
                .into_iter()
                .any(|event| {
                    event.reason.as_deref() == Some(reason)
                        && event.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(node)
                        && event
                            .note
                            .as_deref()
                            .is_some_and(|note| note.contains(text))
                })
                .then_some(())
        },
    )
    .await;
}

/// The node's state once it reports `phase` on its current spec.
pub async fn in_phase(client: &Client, node: &str, phase: NodePhase) -> RktNodeState {
    eventually(&format!("{node} reports {phase:?}"), REACTION, async || {
        let state = states(client).await.remove(node)?;
        (state.current_phase() == Some(phase)).then_some(state)
    })
    .await
}

/// The node's state once it reports `Degraded` with an error that contains `text`.
pub async fn degraded_with(client: &Client, node: &str, text: &str) -> RktNodeState {
    eventually(
        &format!("{node} reports Degraded: ...{text}..."),
        REACTION,
        async || {
            let state = states(client).await.remove(node)?;
            let degraded = state.current_phase() == Some(NodePhase::Degraded);
            (degraded && last_error(&state).contains(text)).then_some(state)
        },
    )
    .await
}

/// The node's `lastError`, or nothing.
pub fn last_error(state: &RktNodeState) -> String {
    state
        .status
        .as_ref()
        .and_then(|status| status.last_error.clone())
        .unwrap_or_default()
}

/// The MainPID of the node's rkt-api.service.
pub fn main_pid(node: &str) -> String {
    node_ok(node, "systemctl show -p MainPID --value rkt-api.service")
        .trim()
        .to_owned()
}

/// A Node's conditions by type: status, reason, message.
pub fn node_conditions(node: &Node) -> BTreeMap<String, (String, String, String)> {
    node.status
        .as_ref()
        .and_then(|status| status.conditions.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|c| {
            (
                c.type_,
                (
                    c.status,
                    c.reason.unwrap_or_default(),
                    c.message.unwrap_or_default(),
                ),
            )
        })
        .collect()
}

/// How many GetInfo calls the node's rkt API service has answered since the node booted (the stand-in logs each):
/// the agent's checks of its node, seen from the service it checks.
pub fn get_info_calls(node: &str) -> usize {
    node_ok(
        node,
        "journalctl -q -b -o cat -u rkt-api.service | grep -c 'GetInfo' || true",
    )
    .trim()
    .parse()
    .unwrap_or(0)
}

/// Waits until the agent on `node` has checked its node at least twice more: whatever it would write at rest, it
/// has written by then.
pub async fn two_more_checks(node: &str) {
    let from = get_info_calls(node);
    eventually(
        "the agent checks its node twice more",
        REACTION,
        async || {
            let calls = get_info_calls(node);
            if calls >= from + 2 {
                Ok(())
            } else {
                Err(format!("{} GetInfo calls since", calls - from))
            }
        },
    )
    .await;
}
