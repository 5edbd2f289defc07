//! The rkt installation the operator expects on the node.

use kube::{
    KubeSchema,
    core::{Message, Rule},
};
use serde::{Deserialize, Serialize};

use super::host_paths;

/// The rkt the nodes must run, and how the operator reaches its API service.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RktSpec {
    /// The rkt version the nodes must run, as a semantic version, at least 1.9.1 (the oldest that Kubernetes'
    /// rkt runtime accepts). A node reporting another version gets the `RktVersionMatches` condition False.
    #[schemars(length(min = 5, max = 64))]
    #[x_kube(
        validation = Rule::new("isSemver(self)").message("version must be a semantic version such as 1.30.0"),
        validation = Rule::new("!isSemver(self) || semver(self).compareTo(semver('1.9.1')) >= 0")
            .message("version must be at least 1.9.1, the oldest rkt that Kubernetes supports"),
    )]
    pub version: String,
    /// Where the rkt API service listens (`rkt api-service --listen`), as HOST:PORT; also the kubelet's
    /// `--rkt-api-endpoint`.
    #[serde(default = "default_api_endpoint")]
    #[schemars(length(min = 3, max = 261))]
    #[x_kube(validation = Rule::new(
        "self.matches('^([A-Za-z0-9][A-Za-z0-9.-]*|\\\\[[0-9A-Fa-f:.]+\\\\]):[0-9]{1,5}$') && int(self.substring(self.lastIndexOf(':') + 1)) >= 1 && int(self.substring(self.lastIndexOf(':') + 1)) <= 65535"
    ).message("apiEndpoint must be HOST:PORT with a port from 1 to 65535, such as localhost:15441"))]
    pub api_endpoint: String,
    /// The systemd unit that runs the rkt API service on the node; the agent restarts it after changing rkt's
    /// configuration.
    #[serde(default = "default_api_service_unit")]
    #[schemars(length(min = 9, max = 255))]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z0-9:_.@-]+\\\\.service$')")
        .message("apiServiceUnit must be a systemd service unit name such as rkt-api.service"))]
    pub api_service_unit: String,
    /// Whether the agent writes the unit file of `apiServiceUnit`, `/etc/systemd/system/<apiServiceUnit>`, running
    /// `<path> api-service --listen=<apiEndpoint>` before the kubelet: `Create` (the default) writes it where no
    /// unit exists and keeps the one it wrote up to date, but leaves a unit written by hand (or shipped by a
    /// package) as it is and reports how it differs; `Replace` writes it over such a unit too (put back when the
    /// node is no longer selected); `Leave` never writes it. In every case the agent starts the service when it
    /// finds it stopped.
    #[serde(default, skip_serializing_if = "UnitPolicy::is_default")]
    pub api_service_unit_policy: UnitPolicy,
    /// The rkt binary (the kubelet's `--rkt-path`): a file named `rkt` in /usr/bin, /usr/local/bin, /opt/bin or
    /// /opt/rkt, or below /opt/rkt (such as /opt/rkt/v1.30.0/rkt). The agent runs `<path> version` on the node as
    /// root, so no other program may be named. Left out, `rkt` is looked up on the PATH.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 1024))]
    #[x_kube(
        validation = Rule::new("self.matches('^/[^[:space:]]*$') && !self.split('/').exists(p, p == '..' || p == '.')")
            .message("path must be an absolute path without whitespace, '.' or '..'"),
        validation = rkt_path_rule(),
    )]
    pub path: Option<String>,
}

/// Whether the agent writes the rkt API service's unit file.
#[derive(
    Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, Hash, schemars::JsonSchema,
)]
pub enum UnitPolicy {
    /// Write the unit where none exists and keep the agent's own up to date; leave any other as it is.
    #[default]
    Create,
    /// Write the unit, over one written by hand or shipped by a package too.
    Replace,
    /// Never write the unit: the administrator provides it.
    Leave,
}

impl UnitPolicy {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// The rkt API service's default listen address (rkt `api-service --listen`).
pub fn default_api_endpoint() -> String {
    "localhost:15441".to_owned()
}

/// The conventional unit of the rkt API service (seed 003).
pub fn default_api_service_unit() -> String {
    "rkt-api.service".to_owned()
}

/// The CEL rule that keeps `spec.rkt.path` to a file named `rkt` where rkt is installed
/// ([`RKT_BIN_DIRS`](host_paths::RKT_BIN_DIRS), [`RKT_INSTALL_TREE`](host_paths::RKT_INSTALL_TREE)).
pub(crate) fn rkt_path_rule() -> Rule {
    let exact: Vec<String> = host_paths::RKT_BIN_DIRS
        .iter()
        .map(|dir| format!("'{dir}/rkt'"))
        .collect();
    let tree = host_paths::RKT_INSTALL_TREE;
    Rule::new(format!(
        "!self.split('/').exists(p, p == '..' || p == '.') \
         && (self in [{}] || (self.startsWith('{tree}/') && self.endsWith('/rkt')))",
        exact.join(", ")
    ))
    .message(Message::Message(format!(
        "path must be a file named rkt in {}, or below {tree}",
        host_paths::RKT_BIN_DIRS.join(", ")
    )))
}
