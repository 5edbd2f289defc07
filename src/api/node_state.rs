//! `RktNodeState`: the contract between the controller and one node's agent.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{
    CustomResource, KubeSchema,
    core::{Message, Rule},
};
use serde::{Deserialize, Serialize};

use super::{host_paths::MANAGED_DIRS, rkt::UnitPolicy};

/// The controller puts this finalizer on every RktNodeState; the node's agent removes it once it has taken its
/// files off the node. Deleting a state therefore waits for the node to be clean, and the agent DaemonSet stays
/// until every state is gone.
pub const AGENT_CLEANUP_FINALIZER: &str = "rktnetes.io/agent-cleanup";

/// Lifting [`AGENT_CLEANUP_FINALIZER`] from one RktNodeState: the finalizers to keep, computed at
/// `resource_version`, so that the patch fails (and is retried) when the state changed meanwhile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Release {
    pub name: String,
    pub resource_version: Option<String>,
    pub finalizers: Vec<String>,
}

impl Release {
    /// The release of `state`, or `None` when it does not carry the finalizer.
    pub fn of(state: &RktNodeState) -> Option<Self> {
        let finalizers = state.metadata.finalizers.as_deref().unwrap_or_default();
        finalizers
            .iter()
            .any(|f| f == AGENT_CLEANUP_FINALIZER)
            .then(|| Self {
                name: state.metadata.name.clone().unwrap_or_default(),
                resource_version: state.metadata.resource_version.clone(),
                finalizers: finalizers
                    .iter()
                    .filter(|f| *f != AGENT_CLEANUP_FINALIZER)
                    .cloned()
                    .collect(),
            })
    }

    /// The JSON merge patch that lifts the finalizer.
    pub fn patch(&self) -> serde_json::Value {
        serde_json::json!({"metadata": {
            "resourceVersion": self.resource_version,
            "finalizers": self.finalizers,
        }})
    }
}

/// The largest file content a RktNodeState carries, in bytes.
pub const MAX_FILE_SIZE: u32 = 65536;

/// Exactly what one node must have. Named after its node and owned by the controller; the node's agent applies
/// the spec and reports in status. Edit the RktNodeConfig instead: the controller rewrites this object.
#[derive(CustomResource, Clone, Debug, Deserialize, Serialize, PartialEq, KubeSchema)]
#[kube(
    group = "rktnetes.io",
    version = "v1alpha1",
    kind = "RktNodeState",
    doc = "Exactly what one node must have, rendered by the controller from the RktNodeConfig that wins the node, \
           and what the node's agent reports back. Named after its node.",
    plural = "rktnodestates",
    shortname = "rns",
    category = "rktnetes",
    status = "RktNodeStateStatus",
    printcolumn = r#"{"name":"Config","type":"string","jsonPath":".spec.configName"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Desired","type":"string","jsonPath":".spec.hash"}"#,
    printcolumn = r#"{"name":"Applied","type":"string","jsonPath":".status.appliedHash"}"#,
    printcolumn = r#"{"name":"Rkt","type":"string","jsonPath":".status.observedRktVersion"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct RktNodeStateSpec {
    /// The RktNodeConfig this state was rendered from.
    #[schemars(length(min = 1, max = 63))]
    pub config_name: String,
    /// The files the node must have, each written whole and atomically. Files the agent wrote before and that are
    /// no longer listed are removed; files it never wrote are never touched.
    #[schemars(length(max = 16))]
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub files: Vec<HostFile>,
    /// The hash of `files`, `rkt` and `restartApiService`: the identity of this desired state.
    #[schemars(length(min = 1, max = 64))]
    pub hash: String,
    /// The rkt the node must run and its API service.
    pub rkt: RktServiceSpec,
    /// Restart the rkt API service after the files change, so it reads the new configuration.
    #[serde(default)]
    pub restart_api_service: bool,
}

/// The CEL rule that keeps a file's path inside the managed directories, naming them when it refuses one.
fn managed_path_rule() -> Rule {
    let roots: Vec<String> = MANAGED_DIRS.iter().map(|dir| format!("'{dir}/'")).collect();
    let names = match MANAGED_DIRS.split_last() {
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    };
    Rule::new(format!(
        "[{}].exists(root, self.startsWith(root))",
        roots.join(", ")
    ))
    .message(Message::Message(format!("path must be inside {names}")))
}

/// A file the agent writes on the node.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostFile {
    /// The absolute path on the node, inside one of rkt's or the kubelet's configuration directories.
    #[schemars(length(min = 2, max = 512))]
    #[x_kube(
        validation = managed_path_rule(),
        validation = Rule::new("!self.split('/').exists(p, p == '..' || p == '.')")
            .message("path must not contain '.' or '..' segments"),
    )]
    pub path: String,
    /// The whole content of the file.
    #[schemars(length(max = MAX_FILE_SIZE))]
    pub content: String,
    /// The file's permission bits (decimal in JSON; 420 is 0644).
    #[serde(default = "default_mode")]
    #[schemars(range(min = 0, max = 511))]
    pub mode: i32,
}

fn default_mode() -> i32 {
    0o644
}

/// The rkt a node must run, as the agent needs it.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RktServiceSpec {
    /// The rkt version the node must report.
    #[schemars(length(min = 1, max = 64))]
    pub version: String,
    /// Where the rkt API service listens, as HOST:PORT.
    #[schemars(length(min = 3, max = 261))]
    pub api_endpoint: String,
    /// The systemd unit of the rkt API service.
    #[schemars(length(min = 9, max = 255))]
    pub api_service_unit: String,
    /// Whether the agent writes that unit's file (`RktNodeConfig`'s `spec.rkt.apiServiceUnitPolicy`).
    #[serde(default, skip_serializing_if = "UnitPolicy::is_default")]
    pub api_service_unit_policy: UnitPolicy,
    /// The rkt binary, when not on the PATH: only where rkt is installed, as `RktNodeConfig`'s `spec.rkt.path`
    /// (the agent runs it as root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 1024))]
    #[x_kube(validation = super::rkt::rkt_path_rule())]
    pub path: Option<String>,
    /// The release the agent installs (`RktNodeConfig`'s `spec.rkt.install`); the node then runs
    /// [`INSTALLED_RKT_BINARY`](super::host_paths::INSTALLED_RKT_BINARY).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install: Option<super::rkt::RktInstall>,
}

impl RktServiceSpec {
    /// The rkt binary the node runs: the installed release's, `path`, or (`None`) `rkt` on the PATH.
    pub fn rkt_path(&self) -> Option<&str> {
        if self.install.is_some() {
            Some(super::host_paths::INSTALLED_RKT_BINARY)
        } else {
            self.path.as_deref()
        }
    }
}

/// Where a node is in applying its desired state.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Hash, schemars::JsonSchema)]
pub enum NodePhase {
    /// The agent has not acted on the current spec yet.
    Pending,
    /// The agent is writing files and restarting the rkt API service.
    Applying,
    /// The current spec is on the node and the rkt API service is healthy.
    Applied,
    /// The node cannot reach the desired state; `lastError` says why.
    Degraded,
    /// The new files broke the rkt API service; the previous files were restored.
    RolledBack,
}

impl RktNodeState {
    /// The phase its agent reports for the current spec: `Pending` while the status still reports on an earlier
    /// spec (`status.observedHash` is not `spec.hash`), `None` before the agent reports. A status without
    /// `observedHash` (an agent from before it) is taken as it stands.
    pub fn current_phase(&self) -> Option<NodePhase> {
        let status = self.status.as_ref()?;
        match &status.observed_hash {
            Some(observed) if *observed != self.spec.hash => Some(NodePhase::Pending),
            _ => status.phase,
        }
    }
}

/// What the node's agent observed. Written by that node's agent only.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RktNodeStateStatus {
    /// Where the node is in applying `spec`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<NodePhase>,
    /// The `spec.hash` that `phase`, `lastError` and `conditions` report on. When it is not the spec's hash, the
    /// agent has not acted on the current spec yet, whatever `phase` says (see [`RktNodeState::current_phase`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_hash: Option<String>,
    /// The `spec.hash` whose files are on the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_hash: Option<String>,
    /// The rkt version the node reported (rkt API `GetInfo`, or `rkt version`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_rkt_version: Option<String>,
    /// The systemd version the node reported over D-Bus.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_systemd_version: Option<String>,
    /// Whether the rkt API service answered `GetInfo` after the last change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_service_healthy: Option<bool>,
    /// Why the node is Degraded or RolledBack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When the phase last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    /// When the agent last applied a spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied_time: Option<Time>,
    /// The host paths the last applied spec wrote or removed (empty when it found them as they should be).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub last_applied_paths: Vec<String>,
    /// Whether applying the last spec restarted the rkt API service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied_restarted: Option<bool>,
    /// The node's conditions as the agent sees them, mirrored on the Node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}
