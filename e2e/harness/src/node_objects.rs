//! Node objects for the harness's nodes, as a kubelet would register them: the well-known labels, the given ones,
//! and an address. No kubelet reports for them; the node lifecycle controller marks them NotReady and taints them,
//! which nothing here minds.

use std::collections::BTreeMap;

use anyhow::Context;
use k8s_openapi::api::core::v1::Node;
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams},
};
use serde_json::json;

/// Marks every Node object the harness registers with its [`Origin`], so they are found again without any state
/// of ours.
pub const ORIGIN_LABEL: &str = "e2e.rktnetes.io/node";
const FIELD_MANAGER: &str = "rktnetes-e2e";

/// What a Node object the harness registers stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A test machine of `e2e/nodes.sh`, with systemd, the stand-in and an agent.
    Machine,
    /// Nothing: a name and labels, for the controller suite's simulated agents.
    Simulated,
}

impl Origin {
    fn value(self) -> &'static str {
        match self {
            Self::Machine => "machine",
            Self::Simulated => "simulated",
        }
    }

    /// The label selector of the Node objects of this origin.
    pub fn selector(self) -> String {
        format!("{ORIGIN_LABEL}={}", self.value())
    }

    /// Whether `node` was registered with this origin.
    pub fn of(self, node: &Node) -> bool {
        node.labels().get(ORIGIN_LABEL).map(String::as_str) == Some(self.value())
    }
}

/// Registers (or updates) Node `name` with `labels`, and its InternalIP `address` when it has one.
pub async fn register(
    client: &Client,
    name: &str,
    origin: Origin,
    labels: &BTreeMap<String, String>,
    address: Option<&str>,
) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut all_labels = BTreeMap::from([
        ("kubernetes.io/hostname".to_owned(), name.to_owned()),
        ("kubernetes.io/os".to_owned(), "linux".to_owned()),
        ("kubernetes.io/arch".to_owned(), go_arch().to_owned()),
        (ORIGIN_LABEL.to_owned(), origin.value().to_owned()),
    ]);
    all_labels.extend(labels.clone());
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": all_labels}});
    nodes
        .patch(name, &params, &Patch::Apply(&node))
        .await
        .with_context(|| format!("registering Node {name}"))?;
    if let Some(address) = address {
        // Addresses are status, which only the status subresource takes.
        let status = json!({"apiVersion": "v1", "kind": "Node", "status": {"addresses": [
            {"type": "InternalIP", "address": address},
            {"type": "Hostname", "address": name},
        ]}});
        nodes
            .patch_status(name, &params, &Patch::Apply(&status))
            .await
            .with_context(|| format!("writing Node {name}'s addresses"))?;
    }
    Ok(())
}

/// Deletes every Node object the harness registered with `origin`.
pub async fn forget(client: &Client, origin: Origin) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels(&origin.selector()),
        )
        .await
        .with_context(|| format!("deleting the Node objects labelled {}", origin.selector()))?;
    Ok(())
}

/// This machine's architecture as Kubernetes names it (Go's GOARCH).
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}
