//! How a node's pods get their network (seed 003, "Pod networking in rktnetes").

use kube::{
    KubeSchema,
    core::{Message, Rule},
};
use serde::{Deserialize, Serialize};

/// A raw CNI config: a JSON object whose unknown fields are kept as written.
pub type CniConfig = serde_json::Map<String, serde_json::Value>;

/// The three ways rktnetes nodes can network their pods.
#[derive(
    Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, Hash, schemars::JsonSchema,
)]
pub enum NetworkMode {
    /// rkt's own contained network: the kubelet leaves `--network-plugin` empty and rkt joins each pod to the
    /// network named `rkt.kubernetes.io` defined in `/etc/rkt/net.d`.
    #[default]
    Contained,
    /// The kubelet's CNI networking (`--network-plugin=cni`): rkt runs pods with `--net=host` inside the
    /// network namespace the kubelet made.
    #[serde(rename = "KubernetesCNI")]
    KubernetesCni,
    /// The kubelet's kubenet plugin (`--network-plugin=kubenet`). Supported on Google Compute Engine only.
    Kubenet,
}

/// The pod network of the selected nodes.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.mode == 'Contained' || !has(self.contained)")
        .message("contained is only valid with mode Contained")
        .field_path(".contained"),
    validation = Rule::new("self.mode != 'KubernetesCNI' || has(self.kubernetesCNI)")
        .message("mode KubernetesCNI requires kubernetesCNI (at least kubernetesCNI.config)")
        .field_path(".kubernetesCNI"),
    validation = Rule::new("self.mode == 'KubernetesCNI' || !has(self.kubernetesCNI)")
        .message("kubernetesCNI is only valid with mode KubernetesCNI")
        .field_path(".kubernetesCNI"),
)]
pub struct Network {
    /// How pods are networked: `Contained` (rkt's contained network, the default), `KubernetesCNI` (the kubelet's
    /// CNI plugin) or `Kubenet` (the kubelet's kubenet plugin; Google Compute Engine only).
    #[serde(default)]
    pub mode: NetworkMode,
    /// rkt's contained network, for mode `Contained`. Left out, it is a bridge with the defaults of the rkt guide
    /// (bridge `mybridge`, mtu 1460, subnet 10.22.0.0/16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contained: Option<ContainedNetwork>,
    /// The kubelet's CNI network, for mode `KubernetesCNI`.
    #[serde(
        default,
        rename = "kubernetesCNI",
        skip_serializing_if = "Option::is_none"
    )]
    pub kubernetes_cni: Option<KubernetesCniNetwork>,
}

impl Default for Network {
    fn default() -> Self {
        Self {
            mode: NetworkMode::Contained,
            contained: None,
            kubernetes_cni: None,
        }
    }
}

/// The CNI plugin behind rkt's contained network.
#[derive(
    Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, Hash, schemars::JsonSchema,
)]
pub enum ContainedPlugin {
    /// The `bridge` plugin with `host-local` addresses: a bridge device on each node.
    #[default]
    Bridge,
    /// The `flannel` plugin: each node's subnet comes from flannel, which must already run on the node.
    Flannel,
    /// A CNI config of your own, given whole in `custom.config`.
    Custom,
}

/// rkt's contained network: one CNI config, named `rkt.kubernetes.io`, in `/etc/rkt/net.d`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.plugin == 'Bridge' || !has(self.bridge)")
        .message("bridge is only valid with plugin Bridge")
        .field_path(".bridge"),
    validation = Rule::new("self.plugin == 'Flannel' || !has(self.flannel)")
        .message("flannel is only valid with plugin Flannel")
        .field_path(".flannel"),
    validation = Rule::new("self.plugin == 'Custom' || !has(self.custom)")
        .message("custom is only valid with plugin Custom")
        .field_path(".custom"),
    validation = Rule::new("self.plugin != 'Custom' || has(self.custom)")
        .message("plugin Custom requires custom.config, the CNI config to use")
        .field_path(".custom"),
)]
pub struct ContainedNetwork {
    /// The CNI plugin: `Bridge` (the default), `Flannel`, or `Custom`.
    #[serde(default)]
    pub plugin: ContainedPlugin,
    /// Settings of the `bridge` plugin, for plugin `Bridge`; defaults apply when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge: Option<BridgeNetwork>,
    /// Settings of the `flannel` plugin, for plugin `Flannel`; defaults apply when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flannel: Option<FlannelNetwork>,
    /// Your own CNI config, for plugin `Custom`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom: Option<CustomNetwork>,
}

/// An IPv4 octet with a leading zero (`010.22.0.0/16`): the API server's CIDR parser refuses it and others read it
/// as octal; said here as well, so that `render`'s validator (whose CIDR parser accepts it) refuses it too.
const NO_IPV4_LEADING_ZEROS: &str = "self.contains(':') || !self.matches('(^|[.])0[0-9]')";
const IPV4_LEADING_ZEROS_MESSAGE: &str = "an IPv4 address may not have octets with leading zeros";

/// Linux's rule for a link name beyond what the pattern `^[A-Za-z0-9_.-]+$` and 15 bytes say (`dev_valid_name`).
const INTERFACE_NAME_NOT_DOTS: &str = "self != '.' && self != '..'";
const INTERFACE_NAME_DOTS_MESSAGE: &str =
    "an interface name cannot be '.' or '..' (Linux refuses them)";

/// The gateway is neither the subnet's network address nor, for IPv4, its broadcast address. The network address
/// is the subnet's own address (the subnet is masked, another rule says), as a /32 or /128 that holds the gateway.
/// The broadcast address has every host bit set, and bit k of an address is set when its /k block does not hold
/// the first address of its /(k - 1) block; each `'k/k-1'` below names the two prefix lengths. The API server's
/// cost estimate cannot bound address equality, `string(k)` or nested list literals, so the rule has none of them.
/// Only evaluated when the subnet and gateway parse and the gateway lies inside the subnet (other rules say so).
const GATEWAY_IS_A_HOST_ADDRESS: &str = "!has(self.gateway) || !isCIDR(self.subnet) || !isIP(self.gateway) \
    || !cidr(self.subnet).containsIP(self.gateway) \
    || (!cidr(self.subnet.split('/')[0] + (ip(self.gateway).family() == 4 ? '/32' : '/128')).containsIP(self.gateway) \
        && !(ip(self.gateway).family() == 4 \
            && ['1/0', '2/1', '3/2', '4/3', '5/4', '6/5', '7/6', '8/7', '9/8', '10/9', '11/10', '12/11', '13/12', \
                '14/13', '15/14', '16/15', '17/16', '18/17', '19/18', '20/19', '21/20', '22/21', '23/22', '24/23', \
                '25/24', '26/25', '27/26', '28/27', '29/28', '30/29', '31/30', '32/31'] \
                .all(k, int(k.split('/')[0]) <= cidr(self.subnet).prefixLength() \
                    || !cidr(self.gateway + '/' + k.split('/')[0]).masked() \
                        .containsIP(cidr(self.gateway + '/' + k.split('/')[1]).masked().ip()))))";

/// The `bridge` CNI plugin with `host-local` address management, as in the rkt guide's example.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "!has(self.gateway) || !isCIDR(self.subnet) || !isIP(self.gateway) || cidr(self.subnet).containsIP(self.gateway)"
).message("gateway must lie inside subnet").field_path(".gateway"))]
#[x_kube(validation = Rule::new(GATEWAY_IS_A_HOST_ADDRESS)
    .message("gateway must be a host address of subnet, not its network or broadcast address")
    .field_path(".gateway"))]
pub struct BridgeNetwork {
    /// The name of the bridge device on the node. Consumer: the `bridge` plugin creates a Linux link of this name,
    /// and Linux refuses one longer than 15 bytes, `.`, `..`, or one with `/`, `:` or whitespace; this allows
    /// letters, digits, `_`, `.` and `-`.
    #[serde(default = "BridgeNetwork::default_name")]
    #[schemars(length(min = 1, max = 15), regex(pattern = r"^[A-Za-z0-9_.-]+$"))]
    #[x_kube(validation = Rule::new(INTERFACE_NAME_NOT_DOTS).message(INTERFACE_NAME_DOTS_MESSAGE))]
    pub name: String,
    /// The MTU of the bridge and the pods' interfaces, from 576 to 9216.
    #[serde(default = "BridgeNetwork::default_mtu")]
    #[schemars(range(min = 576, max = 9216))]
    pub mtu: i32,
    /// Give the bridge an address so that it is the pods' gateway.
    #[serde(default = "enabled")]
    pub is_gateway: bool,
    /// Masquerade traffic from the pods that leaves the subnet.
    #[serde(default = "enabled")]
    pub ip_masq: bool,
    /// The subnet that pods get addresses from, as a network address in CIDR notation. Consumer: `host-local`
    /// address management, which hands out the subnet's host addresses and refuses a subnet without at least two
    /// (an IPv4 prefix longer than /30, an IPv6 one longer than /126).
    #[serde(default = "BridgeNetwork::default_subnet")]
    #[schemars(length(max = 43))]
    #[x_kube(validation = Rule::new(NO_IPV4_LEADING_ZEROS).message(IPV4_LEADING_ZEROS_MESSAGE))]
    #[x_kube(validation = Rule::new("isCIDR(self) && cidr(self) == cidr(self).masked()")
        .message("subnet must be a network address in CIDR notation, such as 10.22.0.0/16"))]
    #[x_kube(validation = Rule::new(
        "!isCIDR(self) || cidr(self).prefixLength() <= (cidr(self).ip().family() == 4 ? 30 : 126)"
    ).message("subnet has too few addresses for host-local: at most /30 for IPv4, /126 for IPv6"))]
    pub subnet: String,
    /// The gateway address inside the subnet. Left out, the plugin uses the subnet's first address. Consumer:
    /// `host-local` gives it to the bridge and never to a pod, so it must be one of the subnet's host addresses:
    /// not its network address, nor (IPv4) its broadcast address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 39))]
    #[x_kube(validation = Rule::new("isIP(self)").message("gateway must be an IP address, such as 10.22.0.1"))]
    pub gateway: Option<String>,
    /// Routes the pods get. The default is one default route.
    #[serde(default = "BridgeNetwork::default_routes")]
    #[schemars(length(max = 32))]
    pub routes: Vec<Route>,
}

// The defaults are the values of the rkt guide's bridge example (seed 003).
impl BridgeNetwork {
    fn default_name() -> String {
        "mybridge".to_owned()
    }

    fn default_mtu() -> i32 {
        1460
    }

    fn default_subnet() -> String {
        "10.22.0.0/16".to_owned()
    }

    fn default_routes() -> Vec<Route> {
        vec![Route::default_route()]
    }
}

impl Default for BridgeNetwork {
    fn default() -> Self {
        Self {
            name: Self::default_name(),
            mtu: Self::default_mtu(),
            is_gateway: true,
            ip_masq: true,
            subnet: Self::default_subnet(),
            gateway: None,
            routes: Self::default_routes(),
        }
    }
}

fn enabled() -> bool {
    true
}

/// A route the pods get.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    /// The destination, in CIDR notation (`0.0.0.0/0` is the default route).
    #[schemars(length(max = 43))]
    #[x_kube(validation = Rule::new(NO_IPV4_LEADING_ZEROS).message(IPV4_LEADING_ZEROS_MESSAGE))]
    #[x_kube(validation = Rule::new("isCIDR(self)").message("dst must be in CIDR notation, such as 0.0.0.0/0"))]
    pub dst: String,
    /// The next hop. Left out, the gateway is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 39))]
    #[x_kube(validation = Rule::new("isIP(self)").message("gw must be an IP address"))]
    pub gw: Option<String>,
}

impl Route {
    /// The IPv4 default route.
    pub fn default_route() -> Self {
        Self {
            dst: "0.0.0.0/0".to_owned(),
            gw: None,
        }
    }
}

/// The `flannel` CNI plugin, which takes each node's subnet from flannel and delegates to `bridge`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct FlannelNetwork {
    /// What flannel passes on to the plugin it delegates to.
    #[serde(default)]
    pub delegate: FlannelDelegate,
    /// Where flannel writes the node's subnet. Left out, the plugin's default (`/run/flannel/subnet.env`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    #[x_kube(validation = Rule::new("self.startsWith('/') && !self.split('/').exists(p, p == '..')")
        .message("subnetFile must be an absolute path without '..'"))]
    pub subnet_file: Option<String>,
}

/// Settings flannel hands to its delegate plugin.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct FlannelDelegate {
    /// Make the flannel bridge the pods' default gateway (the rkt guide's example sets it).
    pub is_default_gateway: bool,
    /// The name of the bridge device. Left out, the plugin's default (`cni0`). Consumer: the `bridge` plugin that
    /// flannel delegates to creates a Linux link of this name (the rules of `bridge.name`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 15),
        regex(pattern = r"^[A-Za-z0-9_.-]+$"),
        extend("x-kubernetes-validations" = [{"rule": INTERFACE_NAME_NOT_DOTS, "message": INTERFACE_NAME_DOTS_MESSAGE}])
    )]
    pub bridge: Option<String>,
}

impl Default for FlannelDelegate {
    fn default() -> Self {
        Self {
            is_default_gateway: true,
            bridge: None,
        }
    }
}

/// A contained network defined by a CNI config of your own.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomNetwork {
    /// The CNI config, as a JSON object. Its `name` is set to `rkt.kubernetes.io` by the operator; its `type`
    /// must be a plain plugin name that rkt finds in its stage1 or in `/etc/rkt/net.d`.
    #[schemars(schema_with = "super::schema::contained_cni_config")]
    pub config: CniConfig,
}

/// The kubelet's CNI networking (`--network-plugin=cni`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct KubernetesCniNetwork {
    /// The kubelet's CNI config directory (`--cni-conf-dir`), where the operator writes the config:
    /// `/etc/cni/net.d` or a directory inside it (the agent writes nowhere else).
    #[serde(default = "default_cni_conf_dir")]
    #[schemars(length(max = 1024))]
    #[x_kube(validation = cni_conf_dir_rule())]
    pub conf_dir: String,
    /// The kubelet's CNI plugin directory (`--cni-bin-dir`).
    #[serde(default = "default_cni_bin_dir")]
    #[schemars(length(max = 1024))]
    #[x_kube(validation = Rule::new("self.matches('^/[^[:space:]]*$') && !self.split('/').exists(p, p == '..')")
        .message("binDir must be an absolute path without whitespace or '..'"))]
    pub bin_dir: String,
    /// The CNI config, as a JSON object with a plain plugin `type`.
    #[schemars(schema_with = "super::schema::kubernetes_cni_config")]
    pub config: CniConfig,
}

/// The CEL rule that keeps `confDir` where the agent may write: the kubelet's default directory or inside it.
fn cni_conf_dir_rule() -> Rule {
    let dir = super::host_paths::CNI_CONF_DIR;
    Rule::new(format!(
        "(self == '{dir}' || self.startsWith('{dir}/')) && self.matches('^[^[:space:]]*$') && !self.split('/').exists(p, p == '..' || p == '.')"
    ))
    .message(Message::Message(format!(
        "confDir must be {dir} or a directory inside it, without whitespace, '.' or '..'"
    )))
}

fn default_cni_conf_dir() -> String {
    super::host_paths::CNI_CONF_DIR.to_owned()
}

fn default_cni_bin_dir() -> String {
    "/opt/cni/bin".to_owned()
}
