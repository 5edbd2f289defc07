//! The kind cluster of `e2e/kind/kind-config.yaml`: created with the rkt node image, or reused while that image is
//! unchanged, its workers in order, and the fourth worker's older rkt.

use std::{fs, thread, time::Duration, time::Instant};

use anyhow::{Context, bail};

use super::{
    Lane, disk,
    lane::{output, run_quiet, run_to_stderr},
    log,
};
use crate::output::last_lines;

/// The worker (1-based, in kind's order) whose stand-in reports an older rkt, and that version: the suite wants its
/// fourth node so (`tests/integration/support/nodes.rs`: `OLD_RKT_VERSION`).
const OLD_RKT_WORKER: usize = 4;
const OLD_RKT_VERSION: &str = "1.29.0";

/// Whether the lane's cluster exists on the engine.
pub fn exists(lane: &Lane) -> anyhow::Result<bool> {
    // kind prints "No kind clusters found." on stderr when there are none.
    let listed = output(
        lane.kind()
            .args(["get", "clusters"])
            .stderr(std::process::Stdio::null()),
        "kind get clusters",
    )?;
    Ok(listed.lines().any(|name| name.trim() == lane.cluster))
}

/// The cluster's workers, in order: `<cluster>-worker`, `<cluster>-worker2`, ...
pub fn workers(lane: &Lane) -> anyhow::Result<Vec<String>> {
    let listed = output(
        lane.kind().args(["get", "nodes", "--name", &lane.cluster]),
        "kind get nodes",
    )?;
    Ok(workers_in(&listed, &lane.cluster))
}

/// Every node of the cluster, its control plane too.
pub fn nodes(lane: &Lane) -> anyhow::Result<Vec<String>> {
    let listed = output(
        lane.kind().args(["get", "nodes", "--name", &lane.cluster]),
        "kind get nodes",
    )?;
    Ok(listed
        .split_whitespace()
        .map(str::to_owned)
        .collect::<Vec<_>>())
}

/// Writes the cluster's admin kubeconfig where the lane keeps it.
pub fn export_kubeconfig(lane: &Lane) -> anyhow::Result<()> {
    run_quiet(
        lane.kind()
            .args([
                "export",
                "kubeconfig",
                "--name",
                &lane.cluster,
                "--kubeconfig",
            ])
            .arg(lane.kubeconfig())
            .stderr(std::process::Stdio::null()),
        "kind export kubeconfig",
    )
    .with_context(|| {
        format!(
            "cannot get the kubeconfig of the kind cluster {}",
            lane.cluster
        )
    })
}

/// Creates the cluster with `node_image`, or reuses it when it was made with that image (a changed image means
/// changed nodes: the cluster is made again), and waits for every node to be Ready.
pub fn create_or_reuse(lane: &Lane, node_image: &str) -> anyhow::Result<()> {
    let state = lane.state_dir();
    fs::create_dir_all(&state).with_context(|| format!("creating {}", state.display()))?;
    let image_file = state.join("node-image");
    let made_with = fs::read_to_string(&image_file).unwrap_or_default();
    if exists(lane)? && made_with.trim() != node_image {
        log(format!(
            "the node image changed: recreating the kind cluster {}",
            lane.cluster
        ));
        run_to_stderr(
            lane.kind()
                .args(["delete", "cluster", "--name", &lane.cluster]),
            "kind delete cluster",
        )?;
    }
    if exists(lane)? {
        log(format!("reusing the kind cluster {}", lane.cluster));
        export_kubeconfig(lane)?;
    } else {
        disk::make_room(lane)?;
        log(format!(
            "creating the kind cluster {} ({node_image}: one control plane, four workers)",
            lane.cluster
        ));
        let started = Instant::now();
        run_to_stderr(
            lane.kind()
                .args(["create", "cluster", "--name", &lane.cluster, "--config"])
                .arg(lane.settings.script("kind/kind-config.yaml"))
                .args(["--image", node_image, "--kubeconfig"])
                .arg(lane.kubeconfig())
                .args(["--wait", &format!("{}s", lane.timeout)]),
            "kind create cluster",
        )
        .with_context(|| {
            format!(
                "kind could not create the cluster (kind export logs --name {} collects the nodes' logs)",
                lane.cluster
            )
        })?;
        log(format!(
            "cluster created in {}s",
            started.elapsed().as_secs()
        ));
    }
    fs::write(&image_file, format!("{node_image}\n"))
        .with_context(|| format!("writing {}", image_file.display()))?;
    lane.kubectl_quiet(&[
        "wait",
        "--for=condition=Ready",
        "nodes",
        "--all",
        &lane.timeout_arg(),
    ])
    .with_context(|| {
        format!(
            "the nodes of {} did not become Ready within {}s",
            lane.cluster, lane.timeout
        )
    })
}

/// The fourth worker's stand-in reports an older rkt: a drop-in of its `rkt-api.service`.
pub fn set_old_rkt(lane: &Lane) -> anyhow::Result<()> {
    let workers = workers(lane)?;
    let node = workers.get(OLD_RKT_WORKER - 1).with_context(|| {
        format!(
            "the kind cluster {} has no worker {OLD_RKT_WORKER}",
            lane.cluster
        )
    })?;
    let script = format!(
        "mkdir -p /etc/systemd/system/rkt-api.service.d && \
         printf '[Service]\\nEnvironment=RKT_STANDIN_VERSION=%s\\n' {OLD_RKT_VERSION} \
         >/etc/systemd/system/rkt-api.service.d/10-rkt-version.conf && \
         systemctl daemon-reload && systemctl restart rkt-api.service"
    );
    run_to_stderr(
        lane.node_exec(node).args(["sh", "-c", &script]),
        &format!("{node}: setting rkt-api.service's rkt version"),
    )?;
    for _ in 0..50 {
        let active = lane
            .node_exec(node)
            .args(["systemctl", "is-active", "--quiet", "rkt-api.service"])
            .stdout(std::process::Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if active {
            log(format!(
                "{node}: rkt-api.service runs with RKT_STANDIN_VERSION={OLD_RKT_VERSION}"
            ));
            return Ok(());
        }
        thread::sleep(Duration::from_millis(200));
    }
    let status = lane
        .node_exec(node)
        .args(["systemctl", "status", "--no-pager", "rkt-api.service"])
        .output()
        .map(|output| last_lines(&String::from_utf8_lossy(&output.stdout), 5))
        .unwrap_or_default();
    bail!("{node}: rkt-api.service is not active after setting its version: {status}")
}

/// The workers among `kind get nodes` lines, in kind's order: `<cluster>-worker` first, then by number (as
/// `sort -V` orders them: `worker2` before `worker10`).
fn workers_in(listed: &str, cluster: &str) -> Vec<String> {
    let prefix = format!("{cluster}-worker");
    let mut workers: Vec<(u64, &str)> = listed
        .split_whitespace()
        .filter_map(|name| {
            let number = name.strip_prefix(&prefix)?;
            if number.is_empty() {
                Some((1, name))
            } else if number.bytes().all(|byte| byte.is_ascii_digit()) {
                number.parse().ok().map(|number| (number, name))
            } else {
                None
            }
        })
        .collect();
    workers.sort();
    workers
        .into_iter()
        .map(|(_, name)| name.to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_come_in_kinds_order_without_the_control_plane() {
        let listed = "rktnetes-worker10\nrktnetes-control-plane\nrktnetes-worker3\nrktnetes-worker\n\
                      rktnetes-worker2\nother-worker\nrktnetes-workerx\n";
        assert_eq!(
            workers_in(listed, "rktnetes"),
            [
                "rktnetes-worker",
                "rktnetes-worker2",
                "rktnetes-worker3",
                "rktnetes-worker10"
            ]
        );
        assert!(workers_in("", "rktnetes").is_empty());
    }
}
