//! The kind lane's own checks (`e2e/kind/run.sh` runs them beside the node suite): the chart's pods on real
//! kubelets, the agent in its pod acting on its node, and nothing pulled from a registry.
//!
//! Only the kind lane has pods and images, so these tests are ignored by a plain `cargo test`; the lane runs them
//! with `--include-ignored`. They need `RKTNETES_E2E_PROFILE=kind` and fail without it.

use std::collections::{BTreeMap, BTreeSet};

use rktnetes_e2e::kind_lane::pulls::pull_requests;
use serde_json::Value;

use crate::support::{
    chart::{AGENT_NAMESPACE, RELEASE_NAMESPACE},
    cluster::{TestCluster, cluster, serial},
    controller::{apply_config, converged, states},
    kind_profile,
    nodes::{POOL, node_file, node_ok},
    scenario::{bridge_example, main_pid, setup},
};

fn require_kind_lane() -> &'static TestCluster {
    assert!(
        kind_profile(),
        "these tests run in the kind lane: e2e/kind/run.sh (RKTNETES_E2E_PROFILE=kind)"
    );
    cluster()
}

fn kubectl_json(cluster: &TestCluster, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.extend(["-o", "json"]);
    serde_json::from_str(&cluster.kubectl_ok(&args)).expect("kubectl prints JSON")
}

/// What the lane reports of a pod: its node, phase, readiness and restarts.
#[derive(Debug)]
struct PodReport {
    name: String,
    node: String,
    phase: String,
    ready: bool,
    restarts: u64,
}

fn pods(cluster: &TestCluster, namespace: &str, selector: &str) -> Vec<PodReport> {
    let list = kubectl_json(cluster, &["-n", namespace, "get", "pods", "-l", selector]);
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|pod| pod["metadata"]["deletionTimestamp"].is_null())
        .map(|pod| PodReport {
            name: pod["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            node: pod["spec"]["nodeName"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            phase: pod["status"]["phase"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            ready: pod["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True"),
            restarts: pod["status"]["containerStatuses"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["restartCount"].as_u64())
                .sum(),
        })
        .collect()
}

#[tokio::test]
#[ignore = "needs the kind cluster of e2e/kind/run.sh (RKTNETES_E2E_PROFILE=kind)"]
async fn the_chart_runs_on_real_kubelets_and_each_selected_worker_has_its_agent_pod() {
    let cluster = require_kind_lane();
    let _serial = serial().lock().await;
    let (client, _controller) = setup().await;
    let pids_before: Vec<String> = POOL.iter().map(|node| main_pid(node)).collect();

    apply_config(&client, bridge_example()).await;
    converged(&client, "bridge", POOL.len()).await;
    let listing = cluster.kubectl_ok(&["get", "pods", "-A", "-o", "wide"]);
    println!("kubectl get pods -A -o wide, the bridge config converged:\n{listing}");

    // The controller: every replica of the Deployment Running, Ready (its readiness probe: caches synced) and never
    // restarted (its liveness probe), in a namespace that enforces the restricted Pod Security level.
    let deployment = kubectl_json(
        cluster,
        &[
            "-n",
            RELEASE_NAMESPACE,
            "get",
            "deployment",
            "rktnetes-controller",
        ],
    );
    let replicas = deployment["spec"]["replicas"].as_u64().expect("replicas");
    let controllers = pods(
        cluster,
        RELEASE_NAMESPACE,
        "app.kubernetes.io/component=controller",
    );
    assert_eq!(controllers.len() as u64, replicas, "{controllers:?}");
    for pod in &controllers {
        assert!(
            pod.phase == "Running" && pod.ready && pod.restarts == 0,
            "{pod:?}"
        );
    }
    let namespace = kubectl_json(cluster, &["get", "namespace", RELEASE_NAMESPACE]);
    assert_eq!(
        namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    let budget = kubectl_json(
        cluster,
        &[
            "-n",
            RELEASE_NAMESPACE,
            "get",
            "poddisruptionbudget",
            "rktnetes-controller",
        ],
    );
    assert_eq!(budget["status"]["currentHealthy"].as_u64(), Some(replicas));
    assert_eq!(
        budget["status"]["disruptionsAllowed"].as_u64(),
        Some(replicas - 1)
    );

    // The agents: exactly one Running and Ready pod on each worker the config selects, none elsewhere, once the
    // DaemonSet has rolled out (an earlier scenario's `helm upgrade` may have changed the agents' settings).
    cluster.kubectl_ok(&[
        "-n",
        AGENT_NAMESPACE,
        "rollout",
        "status",
        "daemonset/rktnetes-agent",
        "--timeout=300s",
    ]);
    let agents = pods(
        cluster,
        AGENT_NAMESPACE,
        "app.kubernetes.io/name=rktnetes-agent",
    );
    let mut per_node: BTreeMap<&str, Vec<&PodReport>> = BTreeMap::new();
    for pod in &agents {
        per_node.entry(pod.node.as_str()).or_default().push(pod);
    }
    assert_eq!(
        per_node.keys().copied().collect::<BTreeSet<_>>(),
        POOL.iter().copied().collect::<BTreeSet<_>>(),
        "agent pods: {agents:?}"
    );
    for (node, pods) in &per_node {
        assert_eq!(pods.len(), 1, "{node}: {pods:?}");
        assert!(
            pods[0].phase == "Running" && pods[0].ready,
            "{node}: {:?}",
            pods[0]
        );
    }

    // What the agent in its pod did on its node, seen from the node itself (docker exec): the rendered files are
    // there, and systemd restarted rkt-api.service (a new MainPID).
    let states = states(&client).await;
    for (node, pid_before) in POOL.iter().zip(&pids_before) {
        for file in &states[*node].spec.files {
            assert_eq!(
                node_file(node, &file.path).as_deref(),
                Some(file.content.as_str()),
                "{node}:{}",
                file.path
            );
        }
        let pid_after = main_pid(node);
        assert!(
            pid_after != "0" && pid_after != *pid_before,
            "{node}: rkt-api.service was not restarted ({pid_before} -> {pid_after})"
        );
        let agent = &per_node[node][0].name;
        let log = cluster.kubectl_ok(&["-n", AGENT_NAMESPACE, "logs", agent]);
        assert!(
            log.contains("the host's mount namespace"),
            "{node}: the agent does not run the node's programs on the host:\n{log}"
        );
    }
}

#[tokio::test]
#[ignore = "needs the kind cluster of e2e/kind/run.sh (RKTNETES_E2E_PROFILE=kind)"]
async fn every_image_came_from_the_node_image_or_kind_load_and_nothing_was_pulled() {
    let cluster = require_kind_lane();
    let _serial = serial().lock().await;
    let (client, _controller) = setup().await;
    apply_config(&client, bridge_example()).await;
    converged(&client, "bridge", POOL.len()).await;

    // Kubelets record `Pulling` before a pull; `Pulled` says whether the image was already there.
    let events = kubectl_json(cluster, &["get", "events", "-A"]);
    for event in events["items"].as_array().into_iter().flatten() {
        let message = event["message"].as_str().unwrap_or_default();
        assert_ne!(event["reason"], "Pulling", "a pull: {message}");
        if event["reason"] == "Pulled" {
            assert!(message.contains("already present on machine"), "{message}");
        }
    }
    // containerd logs every pull it is asked for (and the node image sends them to a closed port).
    let control_plane = format!(
        "{}-control-plane",
        std::env::var("RKTNETES_KIND_CLUSTER").unwrap_or_else(|_| "rktnetes".into())
    );
    for node in POOL.iter().copied().chain([control_plane.as_str()]) {
        let log = node_ok(node, "journalctl -u containerd --no-pager -o cat");
        let pulls = pull_requests(&log);
        assert!(
            pulls.is_empty(),
            "{node}: containerd was asked to pull: {pulls:?}"
        );
        let registries = node_ok(node, "cat /etc/containerd/certs.d/_default/hosts.toml");
        assert!(
            registries.contains("server = \"http://127.0.0.1:1\""),
            "{node}: {registries}"
        );
    }
    // Every container of every pod runs an image the node already had.
    let all = kubectl_json(cluster, &["get", "pods", "-A"]);
    for pod in all["items"].as_array().into_iter().flatten() {
        for status in pod["status"]["containerStatuses"]
            .as_array()
            .into_iter()
            .flatten()
        {
            assert!(
                status["imageID"].as_str().is_some_and(|id| !id.is_empty()),
                "{}: {status}",
                pod["metadata"]["name"]
            );
        }
    }
}
