//! The node's default stage1 image, written to rkt's `stage1.d` configuration.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// The image name of rkt's KVM stage1, which needs rkt's contained network (seed 003).
pub const KVM_STAGE1_NAME: &str = "coreos.com/rkt/stage1-kvm";

/// The stage1 image rkt uses for pods on the node (`/etc/rkt/stage1.d`). Leave it empty to keep rkt's built-in
/// default. The well-known images are `coreos.com/rkt/stage1-coreos` (systemd-nspawn, the default),
/// `coreos.com/rkt/stage1-kvm` (each pod in a KVM virtual machine) and `coreos.com/rkt/stage1-fly` (chroot only,
/// for privileged node utilities).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.name) == has(self.version)")
    .message("stage1 name and version come together: set both or neither"))]
pub struct Stage1 {
    /// The image name, such as `coreos.com/rkt/stage1-coreos`. Requires `version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]+([._/-][a-z0-9]+)*$')")
        .message("name must be an image name such as coreos.com/rkt/stage1-coreos (lowercase letters, digits, '.', '_', '-', '/')"))]
    pub name: Option<String>,
    /// The image version, such as `1.30.0`. Requires `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z0-9][A-Za-z0-9._+-]*$')")
        .message("version must start with a letter or digit and contain only letters, digits, '.', '_', '+' and '-'"))]
    pub version: Option<String>,
    /// Where rkt fetches the image when `name` and `version` are not in its image store: an absolute path, or a
    /// `file://`, `http://`, `https://` or `docker://` URL. Consumer: rkt's stage1.d reader, which parses a URL with
    /// Go's `net/url` and refuses to start on one it cannot parse. Admission is stricter than Go: a host is a DNS-style
    /// name (or non-ASCII) or an IPv6 address in brackets, escapes are well-formed, and nothing is blank or a
    /// control character.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new(STAGE1_LOCATION).message(
        "location must be an absolute path or a file://, http://, https:// or docker:// URL that rkt can parse \
         (a host name or an IPv6 address in brackets, then an optional port; well-formed % escapes; no spaces)"
    ))]
    pub location: Option<String>,
}

/// A stage1 location: an absolute path without `..`, or a URL of rkt's schemes in the authority form that Go's
/// `net/url` parses (userinfo, host, port, path, query, fragment, each with the characters Go allows there, or
/// fewer); a host in brackets must be an IPv6 address, which Kubernetes' `isIP` checks.
const STAGE1_LOCATION: &str = "(self.startsWith('/') && !self.split('/').exists(p, p == '..')) \
    || (self.matches('^(file|https?|docker)://(([-A-Za-z0-9._~!$&()*+,;=:]|%[0-9A-Fa-f]{2})*@)?\
(\\\\[[0-9A-Fa-f:.]+\\\\]|([-A-Za-z0-9._~]|%[89A-Fa-f][0-9A-Fa-f]|[^[:ascii:]])*)(:[0-9]*)?\
(/([^?#%[:cntrl:][:space:]]|%[0-9A-Fa-f]{2})*)?([?][^#[:cntrl:][:space:]]*)?(#([^%[:cntrl:][:space:]]|%[0-9A-Fa-f]{2})*)?$') \
        && (!self.matches('^[a-z]+://([^@/?#]*@)?\\\\[') \
            || (isIP(self.split('[')[1].split(']')[0]) && ip(self.split('[')[1].split(']')[0]).family() == 6)))";

impl Stage1 {
    /// Whether anything is set, i.e. whether the node gets a `stage1.d` file.
    pub fn is_set(&self) -> bool {
        self.name.is_some() || self.location.is_some()
    }
}
