//! What every node scenario starts from and looks at: the seed's bridge config for the test pool, a clean slate on
//! the nodes, the controller of the chart, and the node's rkt API service and conditions.

use std::{collections::BTreeMap, time::Duration};

use k8s_openapi::api::core::v1::Node;
use kube::{Api, Client, api::ListParams};
use rktnetes_operator::api::RktNodeConfig;
use serde_json::{Value, json};

use super::{
    cluster::cluster,
    controller::{ChartController, ensure_namespace, states},
    corpus::examples,
    nodes::{OLD_RKT_NODE, POOL, node_file, node_ok, nodes},
};

pub const NET_FILE: &str = "/etc/rkt/net.d/00-rktnetes.conf";
pub const STAGE1_FILE: &str = "/etc/rkt/stage1.d/rktnetes.json";

/// The seed's bridge example (e2e/examples/bridge.yaml), selecting the test pool.
pub fn bridge_example() -> Value {
    let mut config = examples()
        .into_iter()
        .find(|example| example.file == "bridge.yaml")
        .expect("e2e/examples/bridge.yaml")
        .object;
    config["spec"]["nodeSelector"] = json!({"matchLabels": {"rktnetes.io/pool": "e2e"}});
    config
}

/// Starts from nothing of ours on the nodes: no configs, no states, none of our files, and none of the foreign
/// files a scenario that failed half-way may have left.
pub async fn clean_slate(client: &Client) {
    for node in *POOL {
        node_ok(
            node,
            "rm -f /etc/rkt/stage1.d/50-vendor.json /etc/rkt/net.d/00-admin.conf /etc/rkt/net.d/50-admin.conf",
        );
    }
    let configs: Api<RktNodeConfig> = Api::all(client.clone());
    configs
        .delete_collection(&Default::default(), &ListParams::default())
        .await
        .expect("configs can be deleted");
    for _ in 0..600 {
        let files_left = POOL
            .iter()
            .chain([&*OLD_RKT_NODE])
            .any(|node| node_file(node, NET_FILE).is_some());
        if states(client).await.is_empty() && !files_left {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the nodes did not let go of the previous scenario's files");
}

/// The nodes with the chart installed, its controller running, and a clean slate.
pub async fn setup() -> (Client, ChartController) {
    let cluster = cluster();
    let client = cluster.client().await;
    ensure_namespace(&client).await;
    nodes(cluster);
    let controller = ChartController::start(cluster, "e2e");
    clean_slate(&client).await;
    (client, controller)
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

/// Retries `attempt` every 200 ms for a minute until it returns `Some`; panics naming `what` after that.
pub async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut attempt: impl FnMut() -> F,
) -> T {
    for _ in 0..300 {
        if let Some(value) = attempt().await {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("timed out waiting until {what}");
}
