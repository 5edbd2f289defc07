//! Rendering as users and nodes see it: the examples' renderings byte for byte (golden files), the rendered
//! bridge network brought up by Debian's real CNI plugin, and `rktnetes render` on the command line.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use rktnetes_operator::{
    api::RktNodeConfig,
    render::{Rendering, render},
};
use serde_json::Value;

use crate::support::{fixtures::TestConfig, repo_path, repo_root};

/// Set to regenerate the golden files instead of comparing against them.
const UPDATE_GOLDEN: &str = "UPDATE_GOLDEN";

fn render_example(name: &str) -> (RktNodeConfig, Rendering) {
    let config = TestConfig::example(name).typed();
    let rendering = render(&config.spec).expect("the example renders");
    (config, rendering)
}

/// What the golden directory of an example holds: every host file at its path below the directory, and the
/// RktNodeState spec the controller would write.
fn golden_files(config: &RktNodeConfig, rendering: &Rendering) -> BTreeMap<PathBuf, String> {
    let name = config
        .metadata
        .name
        .as_deref()
        .expect("the example has a name");
    let mut files: BTreeMap<PathBuf, String> = rendering
        .files
        .iter()
        .map(|file| {
            (
                PathBuf::from(file.path.trim_start_matches('/')),
                file.content.clone(),
            )
        })
        .collect();
    files.insert(
        PathBuf::from("state.yaml"),
        serde_saphyr::to_string(&rendering.node_state_spec(name)).expect("the state serialises"),
    );
    files
}

fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(current) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&current) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.push(path.strip_prefix(dir).expect("below dir").to_owned());
            }
        }
    }
    found.sort();
    found
}

fn check_golden(example: &str) {
    let (config, rendering) = render_example(example);
    let expected = golden_files(&config, &rendering);
    let dir = repo_path(&format!("tests/golden/{example}"));
    if std::env::var_os(UPDATE_GOLDEN).is_some() {
        if dir.exists() {
            std::fs::remove_dir_all(&dir).expect("the old golden files are removable");
        }
        for (path, content) in &expected {
            let path = dir.join(path);
            std::fs::create_dir_all(path.parent().expect("a file has a parent"))
                .expect("golden directory is creatable");
            std::fs::write(&path, content).expect("golden file is writable");
        }
        return;
    }
    let regenerate = format!(
        "if the change is intended, run `{UPDATE_GOLDEN}=1 cargo test --test integration render::` and commit tests/golden"
    );
    let present = files_below(&dir);
    let wanted: Vec<PathBuf> = expected.keys().cloned().collect();
    assert_eq!(
        present, wanted,
        "tests/golden/{example} holds other files than e2e/examples/{example}.yaml renders; {regenerate}"
    );
    for (path, content) in &expected {
        let golden = std::fs::read_to_string(dir.join(path)).expect("golden file is readable");
        assert!(
            golden == *content,
            "tests/golden/{example}/{} differs from the rendering of e2e/examples/{example}.yaml; {regenerate}\n\
             --- golden\n{golden}\n--- rendered\n{content}",
            path.display()
        );
    }
}

#[test]
fn bridge_example_renders_as_its_golden_files() {
    check_golden("bridge");
}

#[test]
fn flannel_example_renders_as_its_golden_files() {
    check_golden("flannel");
}

/// Where Debian's containernetworking-plugins puts the CNI plugins.
const CNI_PLUGIN_DIR: &str = "/usr/lib/cni";

/// host-local's default state directory; the rendered config sets no `dataDir`, so the plugin uses it.
const HOST_LOCAL_STATE_DIRS: [&str; 3] = [
    "/var/lib/cni",
    "/var/lib/cni/networks",
    "/var/lib/cni/networks/rkt.kubernetes.io",
];

fn ip(args: &[&str]) -> Output {
    let output = Command::new("ip")
        .args(args)
        .output()
        .expect("`ip` runs (iproute2; run e2e/install-deps.sh)");
    assert!(
        output.status.success(),
        "ip {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The node namespace's NAT rules, where the bridge plugin masquerades the pods' traffic.
fn nat_rules(netns: &str) -> String {
    String::from_utf8_lossy(&ip(&["netns", "exec", netns, "iptables", "-t", "nat", "-S"]).stdout)
        .into_owned()
}

fn ip_json(netns: &str, args: &[&str]) -> Value {
    let mut command = vec!["netns", "exec", netns, "ip", "-j"];
    command.extend_from_slice(args);
    serde_json::from_slice(&ip(&command).stdout).expect("ip -j prints JSON")
}

/// A network namespace that is deleted, with everything in it, when dropped.
struct Netns(String);

impl Netns {
    fn add(name: String) -> Self {
        ip(&["netns", "add", &name]);
        Self(name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

/// A pod attached by the bridge plugin: a "node" namespace standing in for the host (so the bridge, its iptables
/// rules and its sysctls never touch the machine running the tests) and a pod namespace. Dropping it runs the
/// plugin's DEL, removes the host-local state it created and deletes both namespaces, even after a failed
/// assertion.
struct BridgePod {
    config: String,
    container_id: String,
    created_state_dirs: Vec<&'static str>,
    deleted: bool,
    // Declared last: dropped after `drop` ran DEL inside them.
    pod: Netns,
    node: Netns,
}

impl BridgePod {
    fn new(config: String) -> Self {
        let id = format!("rktnetes-test-{}", std::process::id());
        Self {
            config,
            created_state_dirs: HOST_LOCAL_STATE_DIRS
                .into_iter()
                .filter(|dir| !Path::new(dir).exists())
                .collect(),
            deleted: false,
            node: Netns::add(format!("{id}-node")),
            pod: Netns::add(format!("{id}-pod")),
            container_id: id,
        }
    }

    /// Runs the bridge plugin in the node namespace, for the pod namespace's eth0.
    fn plugin(&self, command: &str) -> Output {
        use std::io::Write;
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.node.0])
            .arg(format!("{CNI_PLUGIN_DIR}/bridge"))
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", &self.container_id)
            .env("CNI_NETNS", format!("/var/run/netns/{}", self.pod.0))
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", CNI_PLUGIN_DIR)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("the bridge plugin starts");
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(self.config.as_bytes())
            .expect("the config is written to the plugin");
        child.wait_with_output().expect("the bridge plugin runs")
    }

    fn delete(&mut self) -> Output {
        self.deleted = true;
        self.plugin("DEL")
    }
}

impl Drop for BridgePod {
    fn drop(&mut self) {
        if !self.deleted {
            let _ = self.delete();
        }
        // Deepest first; only what this test created, and the parents only when empty.
        for dir in self.created_state_dirs.iter().rev() {
            if dir.ends_with("rkt.kubernetes.io") {
                let _ = std::fs::remove_dir_all(dir);
            } else {
                let _ = std::fs::remove_dir(dir);
            }
        }
    }
}

#[test]
fn debians_bridge_plugin_brings_up_the_rendered_bridge_network() {
    let plugin = Path::new(CNI_PLUGIN_DIR).join("bridge");
    assert!(
        plugin.exists(),
        "{} is missing: install Debian's CNI plugins with `apt-get install containernetworking-plugins` \
         (or run e2e/install-deps.sh)",
        plugin.display()
    );
    let (_, rendering) = render_example("bridge");
    let config = rendering
        .files
        .iter()
        .find(|file| file.path == "/etc/rkt/net.d/00-rktnetes.conf")
        .expect("the bridge example renders rkt's network")
        .content
        .clone();
    let mut pod = BridgePod::new(config);

    let added = pod.plugin("ADD");
    assert!(
        added.status.success(),
        "the bridge plugin refused the rendered config: {}{}",
        String::from_utf8_lossy(&added.stdout),
        String::from_utf8_lossy(&added.stderr)
    );
    let result: Value =
        serde_json::from_slice(&added.stdout).expect("the plugin prints a JSON result");
    assert_eq!(result["cniVersion"], "0.3.1", "{result}");
    let address = result["ips"][0]["address"]
        .as_str()
        .expect("the result has an address");
    let (pod_ip, prefix) = address
        .split_once('/')
        .expect("the address is in CIDR notation");
    let pod_ip: std::net::Ipv4Addr = pod_ip.parse().expect("the address is IPv4");
    assert!(
        pod_ip.octets()[..2] == [10, 22] && prefix == "16",
        "{address} is not in 10.22.0.0/16"
    );
    assert_eq!(result["ips"][0]["gateway"], "10.22.0.1", "{result}");

    let eth0 = &ip_json(&pod.pod.0, &["addr", "show", "dev", "eth0"])[0];
    assert_eq!(eth0["mtu"], 1460, "{eth0}");
    assert!(
        eth0["addr_info"]
            .as_array()
            .is_some_and(|addresses| addresses
                .iter()
                .any(|a| a["family"] == "inet" && a["local"] == pod_ip.to_string().as_str())),
        "eth0 in the pod does not have {pod_ip}: {eth0}"
    );
    let routes = ip_json(&pod.pod.0, &["route", "show", "default"]);
    assert!(
        routes.as_array().is_some_and(|routes| routes
            .iter()
            .any(|route| route["gateway"] == "10.22.0.1" && route["dev"] == "eth0")),
        "the pod has no default route via 10.22.0.1: {routes}"
    );
    let bridge = &ip_json(&pod.node.0, &["addr", "show", "dev", "mybridge"])[0];
    assert!(
        bridge["addr_info"]
            .as_array()
            .is_some_and(|addresses| addresses.iter().any(|a| a["local"] == "10.22.0.1")),
        "the node's mybridge is not the gateway 10.22.0.1: {bridge}"
    );
    let masquerade = nat_rules(&pod.node.0);
    assert!(
        masquerade.contains("-j MASQUERADE"),
        "ipMasq set no MASQUERADE rule on the node: {masquerade}"
    );

    let deleted = pod.delete();
    assert!(
        deleted.status.success(),
        "the bridge plugin's DEL failed: {}",
        String::from_utf8_lossy(&deleted.stdout)
    );
    let addresses = ip_json(&pod.pod.0, &["addr", "show"]);
    assert!(
        !addresses.to_string().contains(&pod_ip.to_string()),
        "DEL left {pod_ip} in the pod: {addresses}"
    );
    let leftover = nat_rules(&pod.node.0);
    assert!(
        !leftover.contains("CNI-"),
        "DEL left NAT rules on the node: {leftover}"
    );
}

fn rktnetes(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rktnetes"))
        .args(args)
        .current_dir(repo_root())
        .output()
        .expect("rktnetes runs")
}

/// A file in the temporary directory, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, content: &str) -> Self {
        let path = std::env::temp_dir().join(format!("rktnetes-{}-{name}", std::process::id()));
        std::fs::write(&path, content).expect("the temporary file is writable");
        Self(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("the temporary path is UTF-8")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn config_yaml(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: rktnetes.io/v1alpha1\nkind: RktNodeConfig\nmetadata: {{name: {name}}}\nspec: {spec}\n"
    )
}

#[test]
fn render_prints_rkts_network_for_a_node_the_example_selects() {
    let output = rktnetes(&[
        "render",
        "-f",
        "e2e/examples/bridge.yaml",
        "--node-labels",
        "rktnetes.io/network=bridge",
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (_, rendering) = render_example("bridge");
    let net_d = &rendering.files[0];
    assert_eq!(net_d.path, "/etc/rkt/net.d/00-rktnetes.conf");
    assert!(
        stdout.contains(&format!(
            "# /etc/rkt/net.d/00-rktnetes.conf (mode 0644)\n{}",
            net_d.content
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("# hash: {}\n", rendering.hash)),
        "{stdout}"
    );
}

#[test]
fn render_prints_the_node_state_as_yaml() {
    let output = rktnetes(&[
        "render",
        "-f",
        "e2e/examples/bridge.yaml",
        "--node-labels",
        "rktnetes.io/network=bridge",
        "--output",
        "yaml",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (config, rendering) = render_example("bridge");
    let state: rktnetes_operator::api::RktNodeStateSpec =
        serde_saphyr::from_slice(&output.stdout).expect("the output is a RktNodeState spec");
    assert_eq!(
        state,
        rendering.node_state_spec(&config.metadata.name.unwrap())
    );
}

#[test]
fn render_refuses_an_invalid_config_naming_the_field() {
    let file = TempFile::new(
        "invalid.yaml",
        &config_yaml(
            "x",
            "{rkt: {version: 1.30.0}, network: {contained: {bridge: {mtu: 100}}}}",
        ),
    );
    let output = rktnetes(&["render", "-f", file.path()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}: RktNodeConfig \"x\": spec.network.contained.bridge.mtu: ",
            file.path()
        )),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());
}

#[test]
fn render_picks_the_highest_priority_and_refuses_a_tie() {
    let file = TempFile::new(
        "priorities.yaml",
        &[
            config_yaml("low", "{rkt: {version: 1.30.0}}"),
            config_yaml(
                "high",
                "{rkt: {version: 1.30.0}, priority: 5, network: {mode: Kubenet}}",
            ),
            config_yaml(
                "rival",
                "{rkt: {version: 1.30.0}, priority: 5, nodeSelector: {matchLabels: {pool: b}}}",
            ),
        ]
        .join("---\n"),
    );
    let won = rktnetes(&["render", "-f", file.path(), "--node-labels", "pool=a"]);
    let stdout = String::from_utf8_lossy(&won.stdout);
    assert!(
        won.status.success(),
        "{}",
        String::from_utf8_lossy(&won.stderr)
    );
    assert!(
        stdout.starts_with("# RktNodeConfig \"high\" wins this node\n"),
        "{stdout}"
    );
    assert!(stdout.contains("--network-plugin=kubenet"), "{stdout}");

    let tied = rktnetes(&["render", "-f", file.path(), "--node-labels", "pool=b"]);
    let stderr = String::from_utf8_lossy(&tied.stderr);
    assert_eq!(tied.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("high, rival"), "{stderr}");
}

#[test]
fn render_says_when_no_config_selects_the_node() {
    let output = rktnetes(&[
        "render",
        "-f",
        "e2e/examples/bridge.yaml",
        "--node-name",
        "node-1",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr
            .contains("no RktNodeConfig selects a node with labels kubernetes.io/hostname=node-1"),
        "{stderr}"
    );
}
