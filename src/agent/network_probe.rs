//! Proving the contained network the way rkt uses it: the configured CNI plugin, found where rkt looks for it, run
//! on the node with the file the agent wrote (ADD, then CHECK where the configuration's version has it, then DEL)
//! for a scratch network namespace that nothing else uses, and the result held to the configuration: an address
//! inside its subnet and its routes in the namespace. `RktNetworkReady=True` means this worked.
//!
//! rkt (`networking/net_plugin.go`) runs a plugin from `/etc/rkt/net.d`, `/usr/lib/rkt/plugins/net` or its stage1's
//! own plugin directory, with `CNI_VERSION=0.1.0` and `CNI_PATH` set to those directories. The stage1 image's
//! plugins are out of the agent's reach, so after rkt's two node directories it looks where CNI plugins are
//! installed on a node (`/opt/cni/bin`, and `/usr/lib/cni` where Debian puts them).

use std::{net::IpAddr, process::Stdio, time::Duration};

use serde_json::Value;
use tokio::io::AsyncWriteExt;

use super::host_namespace::HostPrograms;

/// Where the plugin is looked for, in this order.
pub const PLUGIN_DIRS: [&str; 4] = [
    "/etc/rkt/net.d",
    "/usr/lib/rkt/plugins/net",
    "/opt/cni/bin",
    "/usr/lib/cni",
];
/// flanneld's subnet file, which the flannel plugin reads unless the configuration names another.
const FLANNEL_SUBNET_FILE: &str = "/run/flannel/subnet.env";
/// The bridge plugin's bridge when its configuration names none.
const DEFAULT_BRIDGE: &str = "cni0";
/// How long one plugin call may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Why the network is not proven.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// Not the configuration's fault: what it needs is not on the node (yet). Tried again at every check.
    #[error("{message}")]
    NotReady {
        /// The condition's reason.
        reason: &'static str,
        message: String,
    },
    /// The plugin refused the configuration here, or its result does not match it: the change is rolled back.
    #[error("{0}")]
    Failed(String),
}

/// What the probe showed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proof {
    /// The plugin binary that ran.
    pub plugin: String,
    /// The addresses it gave the scratch namespace.
    pub addresses: Vec<String>,
}

impl std::fmt::Display for Proof {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ADD and DEL in a scratch network namespace worked (address {})",
            self.plugin,
            self.addresses.join(", ")
        )
    }
}

/// Proves the network of `conf`, a contained-network configuration as written to net.d.
pub async fn prove(programs: &HostPrograms, conf: &str) -> Result<Proof, ProbeError> {
    let config: Value = serde_json::from_str(conf)
        .map_err(|error| ProbeError::Failed(format!("the network config is not JSON: {error}")))?;
    let plugin_type = config["type"].as_str().unwrap_or_default().to_owned();
    if plugin_type == "flannel" {
        let subnet_file = config["subnetFile"].as_str().unwrap_or(FLANNEL_SUBNET_FILE);
        if !host_file_exists(programs, subnet_file, "-f").await {
            return Err(ProbeError::NotReady {
                reason: "FlannelNotRunning",
                message: format!(
                    "flannel is not running on the node: flanneld's subnet file {subnet_file} is missing"
                ),
            });
        }
    }
    let plugin = find_plugin(programs, &plugin_type).await?;
    // The bridge plugin creates its bridge on the node and keeps it; one the probe made is taken away again, so the
    // probe leaves the node as it found it. Only a name that was no interface at all before is removed: a bridge
    // pods use stays, with its address, and so does any other interface of that name (the plugin refuses it).
    let bridge = (plugin_type == "bridge")
        .then(|| {
            config["bridge"]
                .as_str()
                .unwrap_or(DEFAULT_BRIDGE)
                .to_owned()
        })
        .filter(|name| is_interface_name(name));
    let interface_was_there = match &bridge {
        Some(name) => host_file_exists(programs, &format!("/sys/class/net/{name}"), "-e").await,
        None => true,
    };

    let mut holder = programs
        .in_new_network_namespace("sleep")
        .arg("600")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|error| {
            ProbeError::Failed(format!("cannot make a scratch network namespace: {error}"))
        })?;
    let pid = holder.id().unwrap_or_default();
    let call = Call {
        programs,
        plugin: &plugin,
        container: format!("rktnetes-probe-{pid}"),
        netns: format!("/proc/{pid}/ns/net"),
    };
    let added = call.run("ADD", conf).await;
    let checked = match &added {
        Ok(result) => verify(&config, result, pid).and(check(&call, &config, result).await),
        Err(_) => Ok(()),
    };
    // DEL whatever happened: it releases the address and the host's end of the link.
    let deleted = call.run("DEL", conf).await;
    let _ = holder.kill().await;
    if let Some(name) = bridge.filter(|_| !interface_was_there) {
        remove_bridge(programs, &name).await;
    }
    let result = added?;
    checked?;
    deleted?;
    Ok(Proof {
        plugin,
        addresses: addresses(&result),
    })
}

/// One plugin on one scratch namespace.
struct Call<'a> {
    programs: &'a HostPrograms,
    plugin: &'a str,
    container: String,
    netns: String,
}

impl Call<'_> {
    /// Runs the plugin for `command` with `conf` on its standard input, as rkt does; its result.
    async fn run(&self, command: &str, conf: &str) -> Result<Value, ProbeError> {
        let failed = |why: String| ProbeError::Failed(format!("{} {command}: {why}", self.plugin));
        let mut child = self
            .programs
            .command(self.plugin)
            .envs([
                ("CNI_VERSION", "0.1.0"),
                ("CNI_COMMAND", command),
                ("CNI_CONTAINERID", &self.container),
                ("CNI_NETNS", &self.netns),
                ("CNI_ARGS", ""),
                ("CNI_IFNAME", "eth0"),
                ("CNI_PATH", &PLUGIN_DIRS.join(":")),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|error| failed(format!("cannot run it: {error}")))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(conf.as_bytes())
                .await
                .map_err(|error| failed(format!("cannot write its configuration: {error}")))?;
        }
        let output = tokio::time::timeout(TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| failed(format!("did not finish within {TIMEOUT:?}")))?
            .map_err(|error| failed(error.to_string()))?;
        if !output.status.success() {
            return Err(failed(plugin_error(&output.stdout, &output.stderr)));
        }
        if output.stdout.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&output.stdout)
            .map_err(|error| failed(format!("its result is not JSON: {error}")))
    }
}

/// The plugin's own error: CNI's `{"msg": ..., "details": ...}` on standard output, else what it printed.
fn plugin_error(stdout: &[u8], stderr: &[u8]) -> String {
    let error: Value = serde_json::from_slice(stdout).unwrap_or(Value::Null);
    match (error["msg"].as_str(), error["details"].as_str()) {
        (Some(message), Some(details)) if !details.is_empty() => format!("{message}; {details}"),
        (Some(message), _) => message.to_owned(),
        _ => {
            let text = String::from_utf8_lossy(if stdout.is_empty() { stderr } else { stdout });
            text.trim().to_owned()
        }
    }
}

/// CHECK, for a configuration whose CNI version has it (0.4.0 and later), with ADD's result as `prevResult`.
async fn check(call: &Call<'_>, config: &Value, added: &Value) -> Result<(), ProbeError> {
    if !has_check(config["cniVersion"].as_str().unwrap_or_default()) {
        return Ok(());
    }
    let mut with_result = config.clone();
    with_result["prevResult"] = added.clone();
    call.run("CHECK", &with_result.to_string()).await.map(drop)
}

/// Whether CNI `version` has the CHECK command (0.4.0 and later).
fn has_check(version: &str) -> bool {
    let mut parts = version
        .split('.')
        .map(|part| part.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (0, 4)
}

/// The addresses of a CNI result: `ips[].address` (0.3.0 and later), or `ip4.ip` and `ip6.ip` (before).
fn addresses(result: &Value) -> Vec<String> {
    let mut found: Vec<String> = result["ips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|ip| ip["address"].as_str().map(str::to_owned))
        .collect();
    for family in ["ip4", "ip6"] {
        if let Some(address) = result[family]["ip"].as_str() {
            found.push(address.to_owned());
        }
    }
    found
}

/// The result against the configuration: at least one address, every address inside the IPAM subnet when it names
/// one, and the IPAM's IPv4 routes in the namespace's routing table.
fn verify(config: &Value, result: &Value, pid: u32) -> Result<(), ProbeError> {
    let found = addresses(result);
    if found.is_empty() {
        return Err(ProbeError::Failed(format!(
            "the plugin's ADD result has no address: {result}"
        )));
    }
    let ipam = &config["ipam"];
    let subnet = ipam["subnet"]
        .as_str()
        .or_else(|| ipam["ranges"][0][0]["subnet"].as_str());
    if let Some(subnet) = subnet {
        for address in &found {
            if !in_subnet(address, subnet) {
                return Err(ProbeError::Failed(format!(
                    "the plugin gave the address {address}, outside the subnet {subnet}"
                )));
            }
        }
    }
    let wanted: Vec<&str> = ipam["routes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|route| route["dst"].as_str())
        .filter(|dst| !dst.contains(':'))
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/route")).map_err(|error| {
        ProbeError::Failed(format!(
            "cannot read the scratch namespace's routes: {error}"
        ))
    })?;
    let present = ipv4_routes(&table);
    for dst in wanted {
        if !present.iter().any(|route| route == dst) {
            return Err(ProbeError::Failed(format!(
                "the route to {dst} is not in the namespace after ADD (routes: {})",
                present.join(", ")
            )));
        }
    }
    Ok(())
}

/// Whether `address` (`IP/len` or `IP`) is inside `subnet` (`IP/len`); addresses of the other family are not
/// held to it.
fn in_subnet(address: &str, subnet: &str) -> bool {
    let ip = address.split('/').next().unwrap_or_default();
    let (network, length) = subnet.split_once('/').unwrap_or((subnet, ""));
    let (Ok(ip), Ok(network), Ok(length)) = (
        ip.parse::<IpAddr>(),
        network.parse::<IpAddr>(),
        length.parse::<u32>(),
    ) else {
        return false;
    };
    match (ip, network) {
        (IpAddr::V4(ip), IpAddr::V4(network)) if length <= 32 => {
            let mask = u32::MAX.checked_shl(32 - length).unwrap_or(0);
            u32::from(ip) & mask == u32::from(network) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(network)) if length <= 128 => {
            let mask = u128::MAX.checked_shl(128 - length).unwrap_or(0);
            u128::from(ip) & mask == u128::from(network) & mask
        }
        (IpAddr::V4(_), IpAddr::V6(_)) | (IpAddr::V6(_), IpAddr::V4(_)) => true,
        _ => false,
    }
}

/// The destinations (`A.B.C.D/len`) of the IPv4 routing table in `/proc/<pid>/net/route`'s format (hexadecimal
/// addresses in the kernel's byte order, which is little-endian on the machines this runs on).
fn ipv4_routes(table: &str) -> Vec<String> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let destination = u32::from_str_radix(fields.get(1)?, 16).ok()?;
            let mask = u32::from_str_radix(fields.get(7)?, 16).ok()?;
            let address = std::net::Ipv4Addr::from(destination.to_le_bytes());
            Some(format!("{address}/{}", mask.count_ones()))
        })
        .collect()
}

/// Whether `test KIND PATH` holds on the node (`-f`: a regular file, `-e`: anything).
async fn host_file_exists(programs: &HostPrograms, path: &str, kind: &str) -> bool {
    let mut test = programs.command("test");
    test.args([kind, path]).kill_on_drop(true);
    matches!(
        tokio::time::timeout(TIMEOUT, test.status()).await,
        Ok(Ok(status)) if status.success()
    )
}

/// Whether `name` is a Linux interface name (at most 15 bytes, no `/`, whitespace or `:`, not `.` or `..`).
fn is_interface_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace())
}

/// Deletes the bridge `name` on the node, only if it is a bridge (`ip link delete` takes any kind of interface,
/// whatever type it is given); a failure is logged.
async fn remove_bridge(programs: &HostPrograms, name: &str) {
    let mut remove = programs.command("sh");
    remove.args([
        "-c",
        r#"[ -d "/sys/class/net/$1/bridge" ] || { echo "not a bridge"; exit 1; }; ip link delete "$1" 2>&1"#,
        "sh",
        name,
    ])
    .kill_on_drop(true);
    match tokio::time::timeout(TIMEOUT, remove.output()).await {
        Ok(Ok(output)) if output.status.success() => {}
        Ok(Ok(output)) => tracing::warn!(
            name,
            error = %String::from_utf8_lossy(&output.stdout).trim(),
            "could not remove the bridge the network probe made"
        ),
        Ok(Err(error)) => {
            tracing::warn!(name, %error, "could not remove the bridge the network probe made");
        }
        Err(_) => tracing::warn!(name, "removing the bridge the network probe made timed out"),
    }
}

/// The plugin binary for `plugin_type`: the first executable file of that name in [`PLUGIN_DIRS`].
async fn find_plugin(programs: &HostPrograms, plugin_type: &str) -> Result<String, ProbeError> {
    let not_found = || ProbeError::NotReady {
        reason: "PluginNotFound",
        message: format!(
            "the CNI plugin {plugin_type:?} is not on the node (looked in {})",
            PLUGIN_DIRS.join(", ")
        ),
    };
    // The CRD holds `type` to a plain name; a name that is not one is never joined onto a directory here.
    if plugin_type.is_empty() || plugin_type.contains('/') || plugin_type.starts_with('.') {
        return Err(not_found());
    }
    let mut find = programs.command("sh");
    find.args([
        "-c",
        r#"t=$1; shift; for d; do if [ -f "$d/$t" ] && [ -x "$d/$t" ]; then echo "$d/$t"; exit 0; fi; done; exit 1"#,
        "sh",
        plugin_type,
    ])
    .args(PLUGIN_DIRS)
    .kill_on_drop(true);
    match tokio::time::timeout(TIMEOUT, find.output()).await {
        Ok(Ok(output)) if output.status.success() => {
            Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
        }
        _ => Err(not_found()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_held_to_the_subnet() {
        assert!(in_subnet("10.22.0.5/16", "10.22.0.0/16"));
        assert!(!in_subnet("10.23.0.5/16", "10.22.0.0/16"));
        assert!(!in_subnet("10.22.0.5", "10.22.0.0/32"));
        assert!(in_subnet("fd00::5/64", "fd00::/64"));
        assert!(!in_subnet("fd01::5/64", "fd00::/64"));
        assert!(in_subnet("fd00::5/64", "10.22.0.0/16"), "another family");
        assert!(!in_subnet("garbage", "10.22.0.0/16"));
    }

    #[test]
    fn results_of_every_cni_version_give_their_addresses() {
        let current: Value = serde_json::from_str(
            r#"{"cniVersion": "0.3.1", "ips": [{"address": "10.22.0.5/16"}]}"#,
        )
        .unwrap();
        assert_eq!(addresses(&current), ["10.22.0.5/16"]);
        let old: Value = serde_json::from_str(r#"{"ip4": {"ip": "10.22.0.6/16"}}"#).unwrap();
        assert_eq!(addresses(&old), ["10.22.0.6/16"]);
    }

    #[test]
    fn the_kernels_route_table_is_read() {
        let table = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                     eth0\t00000000\t0100160A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                     eth0\t0000160A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n";
        assert_eq!(ipv4_routes(table), ["0.0.0.0/0", "10.22.0.0/16"]);
    }

    #[test]
    fn check_is_run_from_cni_0_4_0() {
        assert!(!has_check("0.3.1"));
        assert!(!has_check(""));
        assert!(has_check("0.4.0"));
        assert!(has_check("1.0.0"));
    }

    #[test]
    fn the_plugins_own_error_is_reported() {
        assert_eq!(
            plugin_error(br#"{"code": 7, "msg": "failed to allocate", "details": "no IP addresses available"}"#, b""),
            "failed to allocate; no IP addresses available"
        );
        assert_eq!(plugin_error(b"", b"panic: oops\n"), "panic: oops");
    }

    #[tokio::test]
    async fn a_plugin_that_is_not_on_the_node_is_not_ready() {
        let programs = HostPrograms::new(None).unwrap();
        let error = prove(&programs, r#"{"name": "n", "type": "no-such-plugin-here"}"#)
            .await
            .unwrap_err();
        assert!(
            matches!(&error, ProbeError::NotReady { reason: "PluginNotFound", message } if message.contains("no-such-plugin-here")),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn flannel_without_its_subnet_file_is_not_running() {
        let programs = HostPrograms::new(None).unwrap();
        let error = prove(
            &programs,
            r#"{"name": "n", "type": "flannel", "subnetFile": "/nonexistent/subnet.env"}"#,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&error, ProbeError::NotReady { reason: "FlannelNotRunning", message } if message.contains("/nonexistent/subnet.env")),
            "{error:?}"
        );
    }
}
