//! `RktNodeConfig`: what a group of nodes should look like.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::{Network, NodeSelector, RktSpec, Rollout, Stage1, stage1::KVM_STAGE1_NAME};

/// Seed 003: a KVM pod must use rkt's contained network.
fn kvm_needs_contained_network() -> kube::core::Rule {
    kube::core::Rule::new(format!(
        "!has(self.stage1.name) || self.stage1.name != '{KVM_STAGE1_NAME}' || self.network.mode == 'Contained'"
    ))
    .message(kube::core::Message::Message(format!(
        "the KVM stage1 ({KVM_STAGE1_NAME}) requires network.mode Contained: rkt's CNI driver does not support KVM \
         pods on Kubernetes-managed networks"
    )))
    .field_path(".network.mode")
}

/// The desired rkt setup of a group of nodes: their pod network, default stage1 image and rkt version.
/// Cluster-scoped. Where several configs select a node, the one with the highest priority wins; a tie at the
/// same priority is reported as a `Conflict` and leaves the node as it is.
#[derive(CustomResource, Clone, Debug, Deserialize, Serialize, PartialEq, KubeSchema)]
#[kube(
    group = "rktnetes.io",
    version = "v1alpha1",
    kind = "RktNodeConfig",
    doc = "The desired rkt setup of a group of nodes: their pod network, default stage1 image and rkt version. \
           Cluster-scoped; the controller renders it into one RktNodeState per selected node and rolls it out.",
    plural = "rktnodeconfigs",
    shortname = "rnc",
    category = "rktnetes",
    status = "RktNodeConfigStatus",
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.network.mode"}"#,
    printcolumn = r#"{"name":"Priority","type":"integer","jsonPath":".spec.priority","priority":1}"#,
    printcolumn = r#"{"name":"Nodes","type":"integer","jsonPath":".status.matchedNodes"}"#,
    printcolumn = r#"{"name":"Updated","type":"integer","jsonPath":".status.updatedNodes"}"#,
    printcolumn = r#"{"name":"Ready","type":"integer","jsonPath":".status.readyNodes"}"#,
    printcolumn = r#"{"name":"Degraded","type":"integer","jsonPath":".status.degradedNodes"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Hash","type":"string","jsonPath":".status.configHash","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    validation = Rule::new("self.metadata.name.size() <= 63")
        .message("metadata.name must be at most 63 characters: it is used as a label value on each node's RktNodeState"),
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kvm_needs_contained_network())]
pub struct RktNodeConfigSpec {
    /// Which nodes this config applies to. Empty selects every node.
    #[serde(default)]
    pub node_selector: NodeSelector,
    /// Where several configs select a node, the highest priority wins. Configs of equal priority selecting the same
    /// node are a conflict: that node is left as it is and both configs report `Conflict`.
    #[serde(default)]
    #[schemars(range(min = -1000, max = 1000))]
    pub priority: i32,
    /// The pod network of the selected nodes.
    #[serde(default)]
    pub network: Network,
    /// The default stage1 image of the selected nodes. Empty keeps rkt's built-in default.
    #[serde(default)]
    pub stage1: Stage1,
    /// The rkt the selected nodes must run, and how to reach its API service.
    pub rkt: RktSpec,
    /// How a change rolls over the selected nodes.
    #[serde(default)]
    pub rollout: Rollout,
}

/// What the controller observed of a config and its nodes. Written by the controller only.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RktNodeConfigStatus {
    /// The generation of the spec these counts and conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The hash of the rendered host files; a node whose RktNodeState reports this hash is up to date.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_hash: Option<String>,
    /// Nodes this config selects and wins.
    #[serde(default)]
    pub matched_nodes: i32,
    /// Selected nodes whose desired state is this config's current rendering.
    #[serde(default)]
    pub updated_nodes: i32,
    /// Selected nodes that applied the current rendering and report a healthy rkt API service.
    #[serde(default)]
    pub ready_nodes: i32,
    /// Selected nodes that failed to apply it (Degraded or RolledBack).
    #[serde(default)]
    pub degraded_nodes: i32,
    /// `Ready`, `Progressing`, `Degraded` and `Conflict`, each with a reason and a message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}
