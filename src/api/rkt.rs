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
#[x_kube(validation = Rule::new("!has(self.install) || !has(self.path)").message(
    "path must be left out when install is set: the node runs the rkt the agent installs, /opt/rkt/current/rkt"
))]
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
    /// Where the agent gets the rkt release it installs on the node. Left out, the agent installs nothing: it
    /// compares the version the node reports with `version`, and a node with another rkt waits for someone to
    /// upgrade it by hand. Set, `path` must be left out: the node runs the installed rkt,
    /// `/opt/rkt/current/rkt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install: Option<RktInstall>,
}

/// A rkt release archive (`rkt-vX.Y.Z.tar.gz`, one directory `rkt-vX.Y.Z/` holding `rkt`, the stage1 images and
/// `init/systemd/`), which the agent downloads, verifies and unpacks into `/opt/rkt/releases/`, then switches the
/// node's `/opt/rkt/current` to with one rename.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RktInstall {
    /// The archive: `https://` (checked against the node's trusted certificate authorities), or `file://` and an
    /// absolute path for an archive already on the node.
    #[schemars(length(min = 9, max = 2048))]
    #[x_kube(validation = release_url_rule("url"), validation = release_file_url_rule("url"))]
    pub url: String,
    /// The archive's SHA-512, as 128 hexadecimal digits. Nothing from an archive with another digest reaches the
    /// node.
    #[schemars(length(min = 128, max = 128))]
    #[x_kube(validation = Rule::new("self.matches('^[0-9a-fA-F]{128}$')")
        .message("sha512 must be the archive's SHA-512 digest as 128 hexadecimal digits"))]
    pub sha512: String,
    /// A detached OpenPGP signature over the archive (rkt published `rkt-vX.Y.Z.tar.gz.asc` beside each release),
    /// `https://` or `file://` as `url`. Set, the archive is unpacked only when the signature is made by one of
    /// the release keys the agents are given (the chart's `agent.releaseKeysConfigMap`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 9, max = 2048))]
    #[x_kube(
        validation = release_url_rule("signatureUrl"),
        validation = release_file_url_rule("signatureUrl")
    )]
    pub signature_url: Option<String>,
    /// The largest archive the agent downloads, in bytes (at most 4 GiB; default 256 MiB). A larger one is refused
    /// before it is read, or as soon as it passes the limit; it may unpack to four times this much.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 4_294_967_296_i64))]
    pub size_limit: Option<i64>,
}

impl RktSpec {
    /// The rkt binary the nodes run: the installed release's, `path`, or (`None`) `rkt` on the PATH.
    pub fn rkt_path(&self) -> Option<&str> {
        if self.install.is_some() {
            Some(host_paths::INSTALLED_RKT_BINARY)
        } else {
            self.path.as_deref()
        }
    }
}

/// The CEL rule that keeps a release URL (`spec.rkt.install.<field>`) to `https://` or `file://`.
fn release_url_rule(field: &str) -> Rule {
    Rule::new("self.matches('^(https://[^/?#[:space:]]+(/[^[:space:]]*)?|file:///[^[:space:]]*)$')")
        .message(Message::Message(format!(
            "{field} must be https://HOST/PATH, or file:///PATH for a file already on the node"
        )))
}

/// The CEL rule that keeps a `file://` release URL to a plain absolute path.
fn release_file_url_rule(field: &str) -> Rule {
    Rule::new("!self.startsWith('file://') || !self.split('/').exists(p, p == '..' || p == '.')")
        .message(Message::Message(format!(
            "a file:// {field} must be an absolute path without '.' or '..'"
        )))
}

/// The default of `spec.rkt.install.sizeLimit`.
pub const DEFAULT_RELEASE_SIZE_LIMIT: u64 = 256 << 20;

impl RktInstall {
    /// The largest archive the agent downloads.
    pub fn size_limit(&self) -> u64 {
        self.size_limit
            .and_then(|limit| u64::try_from(limit).ok())
            .unwrap_or(DEFAULT_RELEASE_SIZE_LIMIT)
    }
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
