//! Real test nodes: the systemd-nspawn machines of the harness (`rktnetes_e2e::machines`), each with systemd, D-Bus, the rkt stand-in as
//! `rkt-api.service`, Debian's CNI plugins and the rktnetes agent as a systemd unit under the chart's ServiceAccount
//! and RBAC. Started once per test binary.

use std::{
    collections::BTreeMap,
    path::Path,
    process::{Command, Output},
    sync::{LazyLock, OnceLock},
};

use kube::Client;
use rktnetes_e2e::{
    kubeconfig::ClusterEndpoint, machines::Machines, service_accounts::ServiceAccountRef,
};

use super::{
    chart,
    cluster::{TestCluster, cluster},
    kind_profile, repo_root,
};

/// The four test nodes: the harness's nspawn machines, or in the kind profile the workers that
/// `e2e/kind/run.sh` lists in `RKTNETES_KIND_NODES` (in order; the fourth runs the older rkt).
fn node_names() -> &'static [&'static str; 4] {
    static NAMES: LazyLock<[&'static str; 4]> = LazyLock::new(|| {
        let names: Vec<&'static str> = if kind_profile() {
            let listed = std::env::var("RKTNETES_KIND_NODES")
                .expect("the kind profile needs RKTNETES_KIND_NODES (e2e/kind/run.sh sets it)");
            listed
                .split_whitespace()
                .map(|name| &*Box::leak(name.to_owned().into_boxed_str()))
                .collect()
        } else {
            vec![
                "rktnetes-node-1",
                "rktnetes-node-2",
                "rktnetes-node-3",
                "rktnetes-node-4",
            ]
        };
        names
            .try_into()
            .unwrap_or_else(|names: Vec<_>| panic!("the suite needs 4 nodes, got {names:?}"))
    });
    &NAMES
}

/// The nodes the tests apply configs to, labelled `rktnetes.io/pool=e2e`.
pub static POOL: LazyLock<[&'static str; 3]> = LazyLock::new(|| {
    let [a, b, c, _] = *node_names();
    [a, b, c]
});
/// A node whose rkt is older than the configs want, labelled `rktnetes.io/pool=old-rkt`.
pub static OLD_RKT_NODE: LazyLock<&'static str> = LazyLock::new(|| node_names()[3]);
pub const OLD_RKT_VERSION: &str = "1.29.0";

/// Installs the Helm chart, boots the nodes (replacing any left over) and starts the agents under the chart's
/// ServiceAccount; in the kind profile, where `e2e/kind/run.sh` did all that and the agents are the DaemonSet's
/// pods, only labels the nodes. Panics, with the harness's output, when a node cannot start.
pub fn nodes(cluster: &TestCluster) -> &'static [&'static str] {
    static NODES: OnceLock<()> = OnceLock::new();
    NODES.get_or_init(|| {
        if !kind_profile() {
            // The chart, as users install it: the agents below run under its ServiceAccount, RBAC and admission
            // policy, and the tests' controller under its Deployment's arguments and ServiceAccount.
            chart::install(cluster, &[]);
            // The binaries of this build, whatever the target directory.
            let binaries = Path::new(env!("CARGO_BIN_EXE_rktnetes"))
                .parent()
                .expect("the binaries' directory");
            let rkt_versions = BTreeMap::from([(4, OLD_RKT_VERSION.to_owned())]);
            if let Err(error) = machines().with_binaries(binaries).up(4, &rkt_versions) {
                panic!("the test nodes did not start: {error:#}");
            }
            // Node objects for the machines, and their agents started.
            with_harness(async |client, endpoint| {
                rktnetes_e2e::join(
                    &client,
                    &endpoint,
                    &machines(),
                    &BTreeMap::new(),
                    &agent_account(),
                )
                .await
                .map(drop)
            });
        }
        for node in *POOL {
            cluster.kubectl_ok(&["label", "--overwrite", "node", node, "rktnetes.io/pool=e2e"]);
        }
        cluster.kubectl_ok(&[
            "label",
            "--overwrite",
            "node",
            *OLD_RKT_NODE,
            "rktnetes.io/pool=old-rkt",
        ]);
    });
    &*POOL
}

/// (Re)starts the agents with fresh tokens of the chart's agent ServiceAccount. In the kind profile the agents are
/// the DaemonSet's pods, whose tokens the kubelet keeps.
pub fn start_agents() {
    if !kind_profile() {
        with_harness(async |client, endpoint| restart_agents(&client, &endpoint).await);
    }
}

/// (Re)starts the local machines' agents reaching the API server at `endpoint` (a proxy in front of it, on this
/// host; the machines reach it at their host address), with fresh tokens of the chart's agent ServiceAccount.
pub fn start_agents_at(endpoint: &ClusterEndpoint) {
    with_harness(async |client, _| restart_agents(&client, endpoint).await);
}

async fn restart_agents(client: &Client, endpoint: &ClusterEndpoint) -> anyhow::Result<()> {
    let names: Vec<String> = node_names().iter().map(|name| (*name).to_owned()).collect();
    rktnetes_e2e::start_agents(client, endpoint, &machines(), &names, &agent_account()).await
}

/// The address at which the nodes reach this host (a server of a test listening on every address): the local
/// machines' gateway, or in the kind profile the kind network's, which the workers route through.
pub fn host_address() -> String {
    if !kind_profile() {
        return machines()
            .host_address()
            .unwrap_or_else(|error| panic!("{error:#}"));
    }
    let node = node_names()[0];
    let route = node_ok(node, "ip -4 route show default");
    gateway_of(&route)
        .unwrap_or_else(|| panic!("{node} has no default route via a gateway: {route:?}"))
}

/// The gateway of a default route as `ip route` shows it (`default via 172.18.0.1 dev eth0`).
fn gateway_of(route: &str) -> Option<String> {
    let mut words = route.split_whitespace();
    words.find(|word| *word == "via")?;
    words.next().map(str::to_owned)
}

fn machines() -> Machines {
    Machines::of_checkout(repo_root()).unwrap_or_else(|error| panic!("{error:#}"))
}

/// The chart's agent ServiceAccount.
fn agent_account() -> ServiceAccountRef {
    ServiceAccountRef {
        namespace: chart::AGENT_NAMESPACE.to_owned(),
        name: "rktnetes-agent".to_owned(),
    }
}

/// Runs the harness's `work` against the local cluster on a runtime of its own, whether or not the caller is inside
/// a test's runtime; panics with the harness's error.
fn with_harness(work: impl AsyncFnOnce(Client, ClusterEndpoint) -> anyhow::Result<()> + Send) {
    let result = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime for the harness");
                runtime.block_on(async {
                    let cluster = cluster();
                    let endpoint = ClusterEndpoint::of(&cluster.kubeconfig)?;
                    work(cluster.client().await, endpoint).await
                })
            })
            .join()
            .expect("the harness's thread")
    });
    if let Err(error) = result {
        panic!("{error:#}");
    }
}

/// The ServiceAccount token the kubelet projected into the agent pod on `node` (kind lane), read from the node's
/// disk: the very credential the agent uses.
pub fn agent_pod_token(cluster: &TestCluster, node: &str) -> String {
    let uid = cluster.kubectl_ok(&[
        "-n",
        chart::AGENT_NAMESPACE,
        "get",
        "pods",
        "-l",
        "app.kubernetes.io/name=rktnetes-agent",
        "--field-selector",
        &format!("spec.nodeName={node},status.phase=Running"),
        "-o",
        "jsonpath={.items[0].metadata.uid}",
    ]);
    assert!(!uid.trim().is_empty(), "no agent pod runs on {node}");
    node_ok(
        node,
        &format!(
            "cat /var/lib/kubelet/pods/{}/volumes/kubernetes.io~projected/kube-api-access-*/token",
            uid.trim()
        ),
    )
}

/// How to run a command in a node: the harness's machines or, in the kind profile, `RKTNETES_NODE_EXEC`
/// (`e2e/kind/node-exec.sh`, taking `NODE -- COMMAND...`).
fn node_exec(node: &str, command: &[&str]) -> Command {
    match std::env::var_os("RKTNETES_NODE_EXEC") {
        Some(exec) => {
            let mut exec = Command::new(exec);
            exec.args([node, "--"])
                .args(command)
                .current_dir(repo_root());
            exec
        }
        None => machines()
            .command(node, command)
            .unwrap_or_else(|error| panic!("cannot run a command in {node}: {error:#}")),
    }
}

/// A node's root directory as this process sees it, to read the node's files without entering it (local
/// machines only).
pub fn node_root(node: &str) -> std::path::PathBuf {
    machines()
        .root_of(node)
        .unwrap_or_else(|error| panic!("{error:#}"))
}

/// Starts `command` in a node with its output piped, without waiting for it.
pub fn node_spawn(node: &str, command: &[&str]) -> std::process::Child {
    node_exec(node, command)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot run a command in {node}: {error}"))
}

/// Runs a shell command inside a node; returns its output whatever its exit status.
pub fn node_shell(node: &str, script: &str) -> Output {
    node_exec(node, &["sh", "-c", script])
        .output()
        .unwrap_or_else(|error| panic!("cannot run a command in {node}: {error}"))
}

/// Runs a shell command inside a node and returns its stdout; panics when it fails.
pub fn node_ok(node: &str, script: &str) -> String {
    let output = node_shell(node, script);
    assert!(
        output.status.success(),
        "`{script}` failed on {node} ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A sample of the node agent's `/metrics` (served on the node's own address, as the chart has it: the source
/// address of its default route, not a pod network bridge's), or 0 when it has none.
pub fn agent_metric(node: &str, series: &str) -> f64 {
    let port = rktnetes_e2e::machines::AGENT_METRICS_PORT;
    let text = node_ok(
        node,
        &format!(
            "bash -c 'address=$(ip -4 -o route get 192.0.2.1 | sed -n \"s/.* src \\([0-9.]*\\).*/\\1/p\"); \
             exec 3<>/dev/tcp/$address/{port}; printf \"GET /metrics HTTP/1.0\\r\\n\\r\\n\" >&3; cat <&3'"
        ),
    );
    assert!(
        text.starts_with("HTTP/1.0 200"),
        "{node}'s agent answered:\n{text}"
    );
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// A file's content on a node, or `None` when it is not there.
pub fn node_file(node: &str, path: &str) -> Option<String> {
    let output = node_shell(node, &format!("cat '{path}'"));
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

#[test]
fn the_gateway_of_a_default_route_is_the_address_after_via() {
    assert_eq!(
        gateway_of("default via 172.18.0.1 dev eth0 \n").as_deref(),
        Some("172.18.0.1")
    );
    assert_eq!(gateway_of("default dev wg0 scope link"), None);
    assert_eq!(gateway_of(""), None);
}
