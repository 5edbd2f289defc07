//! Real test nodes: the systemd-nspawn machines of `e2e/nodes.sh`, each with systemd, D-Bus, the rkt stand-in as
//! `rkt-api.service`, Debian's CNI plugins and the rktnetes agent as a systemd unit under the chart's ServiceAccount
//! and RBAC. Started once per test binary.

use std::{
    process::{Command, Output},
    sync::OnceLock,
};

use super::{
    chart,
    cluster::{TestCluster, run},
    repo_path, repo_root,
};

/// The nodes the tests apply configs to, labelled `rktnetes.io/pool=e2e`.
pub const POOL: [&str; 3] = ["rktnetes-node-1", "rktnetes-node-2", "rktnetes-node-3"];
/// A node whose rkt is older than the configs want, labelled `rktnetes.io/pool=old-rkt`.
pub const OLD_RKT_NODE: &str = "rktnetes-node-4";
pub const OLD_RKT_VERSION: &str = "1.29.0";

/// Installs the Helm chart, boots the nodes (replacing any left over) and starts the agents under the chart's
/// ServiceAccount. Panics, with the harness's output, when a node cannot start.
pub fn nodes(cluster: &TestCluster) -> &'static [&'static str] {
    static NODES: OnceLock<()> = OnceLock::new();
    NODES.get_or_init(|| {
        // The chart, as users install it: the agents below run under its ServiceAccount, RBAC and admission
        // policy, and the tests' controller under its Deployment's arguments and ServiceAccount.
        chart::install(cluster, &[]);
        run(Command::new(repo_path("e2e/nodes.sh"))
            .args(["up", "4", "--rkt-version", &format!("4={OLD_RKT_VERSION}")])
            .env(
                "RKTNETES_BIN_DIR",
                env!("CARGO_BIN_EXE_rktnetes")
                    .rsplit_once('/')
                    .map_or(".", |(dir, _)| dir),
            ));
        for node in POOL {
            cluster.kubectl_ok(&["label", "--overwrite", "node", node, "rktnetes.io/pool=e2e"]);
        }
        cluster.kubectl_ok(&[
            "label",
            "--overwrite",
            "node",
            OLD_RKT_NODE,
            "rktnetes.io/pool=old-rkt",
        ]);
        run(Command::new(repo_path("e2e/nodes.sh")).arg("start-agents"));
    });
    &POOL
}

/// Runs a shell command inside a node; returns its output whatever its exit status.
pub fn node_shell(node: &str, script: &str) -> Output {
    Command::new(repo_path("e2e/nodes.sh"))
        .args(["exec", node, "--", "sh", "-c", script])
        .current_dir(repo_root())
        .output()
        .unwrap_or_else(|error| panic!("cannot run e2e/nodes.sh exec {node}: {error}"))
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

/// A file's content on a node, or `None` when it is not there.
pub fn node_file(node: &str, path: &str) -> Option<String> {
    let output = node_shell(node, &format!("cat '{path}'"));
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}
