//! rkt's contained network: the one CNI config, named `rkt.kubernetes.io`, in `/etc/rkt/net.d`.

use serde::Serialize;
use serde_json::Value;

use super::{RenderError, host_file, json};
use crate::api::{
    BridgeNetwork, ContainedNetwork, ContainedPlugin, FlannelNetwork, HostFile,
    RKT_KUBERNETES_NETWORK, Route, host_paths::RKT_NET_DIR,
};

/// rkt reads the `*.conf` files of `/etc/rkt/net.d` in name order and the first file defining a network name wins,
/// so ours starts with `00-` to sort before the files admins usually write (`10-...`, `k8s_...`). A file that
/// still sorts first and defines `rkt.kubernetes.io` is reported by the agent.
const FILE_NAME: &str = "00-rktnetes.conf";

/// Where the file goes.
pub(super) fn path() -> String {
    format!("{RKT_NET_DIR}/{FILE_NAME}")
}

/// The CNI specification version of the configs we generate: the newest published while rkt was released (0.4.0
/// came after rkt 1.30.0), and one Debian's plugins accept (1.1.1 takes 0.1.0 to 1.0.0). Left out, plugins fall
/// back to 0.1.0 and its older result format.
const CNI_VERSION: &str = "0.3.1";

/// The `/etc/rkt/net.d` file for `network`.
pub(super) fn render(network: &ContainedNetwork) -> Result<HostFile, RenderError> {
    let content = match network.plugin {
        ContainedPlugin::Bridge => json::file_content(&BridgeConfig::new(
            &network.bridge.clone().unwrap_or_default(),
        ))?,
        ContainedPlugin::Flannel => json::file_content(&FlannelConfig::new(
            &network.flannel.clone().unwrap_or_default(),
        ))?,
        ContainedPlugin::Custom => {
            let custom = network
                .custom
                .as_ref()
                .ok_or(RenderError::MissingCustomConfig)?;
            // The name is ours: the kubelet asks rkt for exactly this network.
            let mut config = custom.config.clone();
            config.insert("name".to_owned(), RKT_KUBERNETES_NETWORK.into());
            json::file_content(&json::SortedKeys(&Value::Object(config)))?
        }
    };
    Ok(host_file(path(), content))
}

/// The `bridge` plugin's config, fields in the order of the rkt guide's example (without its `addIf`, which the
/// plugin does not know).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BridgeConfig<'a> {
    cni_version: &'static str,
    name: &'static str,
    #[serde(rename = "type")]
    plugin: &'static str,
    bridge: &'a str,
    mtu: i32,
    is_gateway: bool,
    ip_masq: bool,
    ipam: HostLocalIpam<'a>,
}

/// The `host-local` address management the bridge delegates to.
#[derive(Serialize)]
struct HostLocalIpam<'a> {
    #[serde(rename = "type")]
    plugin: &'static str,
    subnet: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    gateway: Option<&'a str>,
    routes: &'a [Route],
}

impl<'a> BridgeConfig<'a> {
    fn new(bridge: &'a BridgeNetwork) -> Self {
        Self {
            cni_version: CNI_VERSION,
            name: RKT_KUBERNETES_NETWORK,
            plugin: "bridge",
            bridge: &bridge.name,
            mtu: bridge.mtu,
            is_gateway: bridge.is_gateway,
            ip_masq: bridge.ip_masq,
            ipam: HostLocalIpam {
                plugin: "host-local",
                subnet: &bridge.subnet,
                gateway: bridge.gateway.as_deref(),
                routes: &bridge.routes,
            },
        }
    }
}

/// The `flannel` plugin's config, as in the rkt guide's example.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FlannelConfig<'a> {
    cni_version: &'static str,
    name: &'static str,
    #[serde(rename = "type")]
    plugin: &'static str,
    delegate: FlannelDelegateConfig<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subnet_file: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FlannelDelegateConfig<'a> {
    is_default_gateway: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    bridge: Option<&'a str>,
}

impl<'a> FlannelConfig<'a> {
    fn new(flannel: &'a FlannelNetwork) -> Self {
        Self {
            cni_version: CNI_VERSION,
            name: RKT_KUBERNETES_NETWORK,
            plugin: "flannel",
            delegate: FlannelDelegateConfig {
                is_default_gateway: flannel.delegate.is_default_gateway,
                bridge: flannel.delegate.bridge.as_deref(),
            },
            subnet_file: flannel.subnet_file.as_deref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::{FILE_NAME, path, render};
    use crate::api::{ContainedNetwork, RKT_KUBERNETES_NETWORK};
    use crate::render::test_spec;

    fn config(yaml: &str) -> Value {
        let spec = test_spec(yaml);
        let file = render(&spec.network.contained.unwrap_or_default()).unwrap();
        assert_eq!(file.path, path());
        assert_eq!(file.mode, 0o644);
        assert!(file.content.ends_with("}\n"), "{}", file.content);
        serde_json::from_str(&file.content).unwrap()
    }

    #[test]
    fn sorts_before_other_rkt_network_files() {
        for other in ["10-bridge.conf", "k8s_network_example.conf", "default.conf"] {
            assert!(FILE_NAME < other);
        }
    }

    #[test]
    fn a_left_out_contained_network_is_the_rkt_guides_bridge() {
        let file = render(&ContainedNetwork::default()).unwrap();
        assert_eq!(
            file.content,
            r#"{
  "cniVersion": "0.3.1",
  "name": "rkt.kubernetes.io",
  "type": "bridge",
  "bridge": "mybridge",
  "mtu": 1460,
  "isGateway": true,
  "ipMasq": true,
  "ipam": {
    "type": "host-local",
    "subnet": "10.22.0.0/16",
    "routes": [
      {
        "dst": "0.0.0.0/0"
      }
    ]
  }
}
"#
        );
        assert_eq!(
            config("{rkt: {version: 1.30.0}, network: {contained: {plugin: Bridge}}}"),
            serde_json::from_str::<Value>(&file.content).unwrap()
        );
    }

    #[test]
    fn bridge_settings_are_written_as_given_without_the_guides_bogus_add_if() {
        let config = config(
            "{rkt: {version: 1.30.0}, network: {contained: {bridge: {name: rkt0, mtu: 9000, isGateway: false, \
             ipMasq: false, subnet: 10.99.0.0/24, gateway: 10.99.0.254, \
             routes: [{dst: 0.0.0.0/0}, {dst: 192.168.0.0/16, gw: 10.99.0.1}]}}}}",
        );
        assert_eq!(
            config,
            json!({
                "cniVersion": "0.3.1",
                "name": RKT_KUBERNETES_NETWORK,
                "type": "bridge",
                "bridge": "rkt0",
                "mtu": 9000,
                "isGateway": false,
                "ipMasq": false,
                "ipam": {
                    "type": "host-local",
                    "subnet": "10.99.0.0/24",
                    "gateway": "10.99.0.254",
                    "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.168.0.0/16", "gw": "10.99.0.1"}],
                },
            })
        );
    }

    #[test]
    fn flannel_delegates_as_in_the_rkt_guide() {
        assert_eq!(
            config("{rkt: {version: 1.30.0}, network: {contained: {plugin: Flannel}}}"),
            json!({
                "cniVersion": "0.3.1",
                "name": RKT_KUBERNETES_NETWORK,
                "type": "flannel",
                "delegate": {"isDefaultGateway": true},
            })
        );
        assert_eq!(
            config(
                "{rkt: {version: 1.30.0}, network: {contained: {plugin: Flannel, flannel: \
                 {delegate: {isDefaultGateway: false, bridge: flannel0}, subnetFile: /run/flannel/rkt.env}}}}"
            ),
            json!({
                "cniVersion": "0.3.1",
                "name": RKT_KUBERNETES_NETWORK,
                "type": "flannel",
                "delegate": {"isDefaultGateway": false, "bridge": "flannel0"},
                "subnetFile": "/run/flannel/rkt.env",
            })
        );
    }

    #[test]
    fn a_custom_config_always_gets_our_network_name() {
        assert_eq!(
            config(
                "{rkt: {version: 1.30.0}, network: {contained: {plugin: Custom, custom: \
                 {config: {type: macvlan, master: eth0, ipam: {type: dhcp}}}}}}"
            ),
            json!({
                "name": RKT_KUBERNETES_NETWORK,
                "type": "macvlan",
                "master": "eth0",
                "ipam": {"type": "dhcp"},
            })
        );
    }

    #[test]
    fn a_custom_config_keeps_its_cni_version() {
        let config = config(
            "{rkt: {version: 1.30.0}, network: {contained: {plugin: Custom, custom: \
             {config: {cniVersion: 0.4.0, name: rkt.kubernetes.io, type: ptp}}}}}",
        );
        assert_eq!(config["cniVersion"], "0.4.0");
        assert_eq!(config["name"], RKT_KUBERNETES_NETWORK);
    }
}
