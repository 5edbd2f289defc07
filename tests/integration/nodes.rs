//! Node end-to-end tier: the controller on the host, agents inside systemd-nspawn machines with real systemd, D-Bus
//! and CNI plugins, and the rkt stand-in as `rkt-api.service`. Scenarios run one at a time on the same nodes.
//!
//! With `RKTNETES_E2E_PROFILE=kind` (set by `e2e/kind/run.sh`) the same scenarios run on a kind cluster's workers,
//! with the agents as the DaemonSet's pods.

mod install;
mod operating;

use std::collections::BTreeMap;

use k8s_openapi::api::{core::v1::Node, events::v1::Event};
use kube::{
    Api, ResourceExt,
    api::{ListParams, Patch, PatchParams},
};
use rktnetes_operator::api::{NodePhase, RktNodeConfig};
use serde_json::{Value, json};

use crate::support::{
    cluster::{cluster, serial},
    controller::{UnavailableWatch, apply_config, condition, config, converged, states},
    eventually,
    fixtures::TestConfig,
    nodes::{OLD_RKT_NODE, OLD_RKT_VERSION, POOL, agent_metric, node_file, node_ok, node_shell},
    scenario::{
        Cleanup, FAULT_FILE, NET_FILE, REACTION, STAGE1_FILE, UNIT_FILE, VENDOR_STAGE1,
        bridge_example, degraded_with, in_phase, last_error, main_pid, node_conditions, node_event,
        setup, two_more_checks,
    },
};

#[tokio::test]
async fn the_bridge_config_converges_and_its_network_works_on_every_node() {
    let _serial = serial().lock().await;
    let (client, _controller) = setup().await;
    let pids_before: Vec<String> = POOL.iter().map(|node| main_pid(node)).collect();

    apply_config(&client, bridge_example()).await;
    converged(&client, "bridge", POOL.len()).await;

    let states = states(&client).await;
    for (node, pid_before) in POOL.iter().zip(&pids_before) {
        let spec = &states[*node].spec;
        for file in &spec.files {
            assert_eq!(
                node_file(node, &file.path).as_deref(),
                Some(file.content.as_str()),
                "{node}:{}",
                file.path
            );
        }
        assert!(
            node_file(node, STAGE1_FILE).is_some(),
            "{node} has no stage1.d file"
        );
        let pid_after = main_pid(node);
        assert!(
            pid_after != "0" && pid_after != *pid_before,
            "{node}: rkt-api.service was not restarted"
        );

        // The real bridge plugin, with exactly the file the agent wrote, in a fresh network namespace.
        let result = node_ok(
            node,
            &format!(
                "ip netns add e2e-pod && CNI_COMMAND=ADD CNI_CONTAINERID=e2e CNI_NETNS=/var/run/netns/e2e-pod \
                 CNI_IFNAME=eth0 CNI_PATH=/usr/lib/cni /usr/lib/cni/bridge < {NET_FILE}"
            ),
        );
        let routes = node_ok(node, "ip netns exec e2e-pod ip -j route");
        node_shell(
            node,
            &format!(
                "CNI_COMMAND=DEL CNI_CONTAINERID=e2e CNI_NETNS=/var/run/netns/e2e-pod CNI_IFNAME=eth0 \
                 CNI_PATH=/usr/lib/cni /usr/lib/cni/bridge < {NET_FILE}; ip netns delete e2e-pod; \
                 ip link delete mybridge"
            ),
        );
        let result: Value = serde_json::from_str(&result).expect("the plugin answers JSON");
        let address = result["ips"][0]["address"].as_str().expect("an address");
        assert!(
            address.starts_with("10.22."),
            "{node}: {address} is outside 10.22.0.0/16"
        );
        assert_eq!(result["ips"][0]["gateway"], "10.22.0.1");
        let routes: Value = serde_json::from_str(&routes).expect("ip -j route");
        assert!(
            routes
                .as_array()
                .into_iter()
                .flatten()
                .any(|r| r["dst"] == "default" && r["gateway"] == "10.22.0.1"),
            "{node}: no default route via 10.22.0.1 in {routes}"
        );

        // The agent writes the RktNodeState status first and the Node's conditions after it.
        let nodes = Api::<Node>::all(client.clone());
        let conditions = eventually("the node's rkt conditions are True", REACTION, async || {
            let conditions = node_conditions(&nodes.get(node).await.ok()?);
            [
                "RktNetworkReady",
                "RktAPIServiceReady",
                "RktVersionMatches",
                "RktSystemdSupported",
            ]
            .iter()
            .all(|type_| conditions.get(*type_).map(|c| c.0.as_str()) == Some("True"))
            .then_some(conditions)
        })
        .await;
        // True because the agent ran the bridge plugin with that file on the node, not because it wrote it.
        let (_, reason, message) = &conditions["RktNetworkReady"];
        assert_eq!(reason, "Proven", "{node}: {message}");
        assert!(
            message.contains("bridge ADD and DEL") && message.contains("10.22."),
            "{node}: {message}"
        );
    }
    let config = config(&client, "bridge").await;
    assert_eq!(config.status.as_ref().map(|s| s.ready_nodes), Some(3));
    assert_eq!(condition(&config, "Ready").0, "True");
}

#[tokio::test]
async fn a_new_subnet_rolls_over_one_node_at_a_time_and_each_file_changes_whole() {
    let _serial = serial().lock().await;
    let (client, _controller) = setup().await;
    apply_config(&client, bridge_example()).await;
    converged(&client, "bridge", POOL.len()).await;
    let old = node_ok(POOL[0], &format!("sha256sum < {NET_FILE}"));

    // Readers that hash the file as fast as they can for the whole rollout: a partial file shows as a third hash.
    let readers: Vec<_> = POOL
        .iter()
        .map(|node| {
            let node = node.to_string();
            std::thread::spawn(move || {
                node_ok(
                    &node,
                    &format!(
                        "rm -f /run/e2e-stop; while [ ! -e /run/e2e-stop ]; do sha256sum < {NET_FILE}; done | sort -u"
                    ),
                )
            })
        })
        .collect();
    let unavailable = UnavailableWatch::start(client.clone()).await;
    let changed = bridge_example()
        .set("/spec/network/contained/bridge/subnet", "10.23.0.0/16")
        .set("/spec/network/contained/bridge/gateway", "10.23.0.1");
    apply_config(&client, changed).await;
    converged(&client, "bridge", POOL.len()).await;
    let most = unavailable.most();
    for node in *POOL {
        node_ok(node, "touch /run/e2e-stop");
    }
    let new = node_ok(POOL[0], &format!("sha256sum < {NET_FILE}"));
    assert_ne!(old, new);
    assert!(
        most <= 1,
        "{most} nodes were unavailable at once with maxUnavailable 1"
    );
    for (node, reader) in POOL.iter().zip(readers) {
        let seen: Vec<String> = reader
            .join()
            .expect("the reader ran")
            .lines()
            .map(str::to_owned)
            .collect();
        assert!(
            seen.iter()
                .all(|hash| *hash == old.trim() || *hash == new.trim()),
            "{node}: a reader saw a file that was neither the old nor the new one: {seen:?}"
        );
        assert!(node_file(node, NET_FILE).is_some_and(|content| content.contains("10.23.0.0/16")));
    }
}

#[tokio::test]
async fn a_change_that_breaks_the_rkt_api_service_is_rolled_back_and_halts_the_rollout() {
    let _serial = serial().lock().await;
    let (client, controller) = setup().await;
    let base = bridge_example()
        .named("rollback")
        .set("/spec/stage1", json!({}));
    apply_config(&client, base.clone()).await;
    let first = converged(&client, "rollback", POOL.len()).await;
    let broken_node = POOL[1];
    let old_file = node_file(broken_node, NET_FILE).expect("the net.d file");

    // On one node, rkt's API service exits at start while the network config has an MTU of 1400 (the stand-in's
    // fault switch, which a configuration check cannot foresee, as a real rkt failing on its host).
    node_ok(
        broken_node,
        &format!(
            "mkdir -p /run/rkt-standin && printf 'exit\\n{NET_FILE}\\n\"mtu\": 1400\\n' > {FAULT_FILE}"
        ),
    );
    let _fault_cleared = Cleanup(broken_node, format!("rm -f {FAULT_FILE}"));
    let watch = UnavailableWatch::start(client.clone()).await;
    apply_config(&client, base.mtu(1400)).await;

    let rolled_back = in_phase(&client, broken_node, NodePhase::RolledBack).await;
    let error = last_error(&rolled_back);
    assert!(error.contains("GetInfo"), "{error}");
    // The change took longer than the agent's ANNOUNCE_AFTER (a restart, then 5 s of GetInfo failing), so it said
    // `Applying` on the new spec first; each status named the spec it reported on.
    let reported = &watch.finish().phases[broken_node];
    let failing = Some(rolled_back.spec.hash.clone());
    let applying = reported
        .iter()
        .position(|seen| *seen == (failing.clone(), Some(NodePhase::Applying)));
    let rolled = reported
        .iter()
        .position(|seen| *seen == (failing.clone(), Some(NodePhase::RolledBack)));
    assert!(
        matches!((applying, rolled), (Some(a), Some(r)) if a < r),
        "{broken_node} reported {reported:?}"
    );
    assert_eq!(
        node_file(broken_node, NET_FILE).as_deref(),
        Some(old_file.as_str()),
        "the old file is not restored"
    );
    assert_eq!(
        node_ok(broken_node, "systemctl is-active rkt-api.service").trim(),
        "active"
    );
    // What the agents count says so too.
    assert!(agent_metric(broken_node, "rktnetes_agent_rollbacks_total") >= 1.0);
    assert!(
        agent_metric(
            broken_node,
            r#"rktnetes_agent_api_service_restarts_total{result="Failed"}"#
        ) >= 1.0
    );
    assert!(
        agent_metric(
            broken_node,
            "rktnetes_agent_health_check_duration_seconds_count"
        ) >= 1.0
    );
    assert!(agent_metric(POOL[0], "rktnetes_agent_applies_total") >= 1.0);

    let config = eventually("the config reports Degraded", REACTION, async || {
        let config = config(&client, "rollback").await;
        (condition(&config, "Degraded").0 == "True").then_some(config)
    })
    .await;
    assert!(condition(&config, "Degraded").2.contains(broken_node));
    // Whatever the controller would do after the rollback, it has done within two passes.
    controller.two_more_passes(&client).await;
    let states = states(&client).await;
    assert_ne!(
        states[POOL[0]].spec.hash, first,
        "the node before the broken one was updated"
    );
    assert_eq!(
        states[POOL[2]].spec.hash, first,
        "the rollout went past the broken node"
    );
}

#[tokio::test]
async fn a_network_whose_plugin_fails_on_the_node_is_rolled_back_with_the_plugins_error() {
    let _serial = serial().lock().await;
    let (client, controller) = setup().await;
    let base = bridge_example().named("unworkable");
    apply_config(&client, base.clone()).await;
    let first = converged(&client, "unworkable", POOL.len()).await;
    let node = POOL[0];
    let old_file = node_file(node, NET_FILE).expect("the net.d file");

    // A bridge named after the node's own uplink: rkt would start, but the bridge plugin refuses it at ADD, as it
    // would for every pod.
    let uplink = node_ok(node, "ip -o route show default | awk '{print $5; exit}'")
        .trim()
        .to_owned();
    assert!(!uplink.is_empty(), "{node} has no default route");
    apply_config(
        &client,
        base.set("/spec/network/contained/bridge/name", uplink.as_str()),
    )
    .await;

    let error = last_error(&in_phase(&client, node, NodePhase::RolledBack).await);
    assert!(
        error.contains("the network config does not work on this node")
            && error.contains("bridge ADD")
            && error.contains("is not a bridge"),
        "the plugin's own error: {error}"
    );
    assert_eq!(
        node_file(node, NET_FILE).as_deref(),
        Some(old_file.as_str()),
        "the previous network config is not back"
    );
    let nodes = Api::<Node>::all(client.clone());
    let (status, _, message) = eventually("the Node says why", REACTION, async || {
        let conditions = node_conditions(&nodes.get(node).await.ok()?);
        let network = conditions.get("RktNetworkReady")?.clone();
        (network.1 == "RolledBack").then_some(network)
    })
    .await;
    assert_eq!(status, "False");
    assert!(message.contains("is not a bridge"), "{message}");
    controller.two_more_passes(&client).await;
    assert_eq!(
        states(&client).await[POOL[1]].spec.hash,
        first,
        "the rollout went past the node whose network does not work"
    );
}

#[tokio::test]
async fn flannel_not_running_and_a_plugin_not_on_the_node_are_reported() {
    let _serial = serial().lock().await;
    let (client, _controller) = setup().await;
    let node = POOL[0];
    let _flannel_gone = Cleanup(node, "rm -rf /run/flannel".to_owned());
    apply_config(
        &client,
        TestConfig::example("flannel")
            .in_pool("e2e")
            .set("/spec/priority", 0),
    )
    .await;
    let nodes = Api::<Node>::all(client.clone());
    let network_ready = async |reason: &str| {
        let conditions = node_conditions(&nodes.get(node).await.ok()?);
        let network = conditions.get("RktNetworkReady")?.clone();
        (network.1 == reason).then_some(network)
    };
    let (status, _, message) = eventually(
        "the node says flannel is not running",
        REACTION,
        async || network_ready("FlannelNotRunning").await,
    )
    .await;
    assert_eq!(status, "False");
    assert!(message.contains("/run/flannel/subnet.env"), "{message}");
    let state = &states(&client).await[node];
    let status = state.status.as_ref().expect("a status");
    assert_eq!(
        (state.current_phase(), status.applied_hash.as_deref()),
        (Some(NodePhase::Degraded), Some(state.spec.hash.as_str())),
        "written, not rolled back: the config waits for flannel"
    );

    // flanneld's subnet file appears; the node has no flannel plugin (Debian's CNI plugins do not ship it).
    node_ok(
        node,
        "mkdir -p /run/flannel && printf 'FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_SUBNET=10.1.17.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n' > /run/flannel/subnet.env",
    );
    let (status, _, message) = eventually(
        "the node says the plugin is missing",
        REACTION,
        async || network_ready("PluginNotFound").await,
    )
    .await;
    assert_eq!(status, "False");
    assert!(
        message.contains("\"flannel\"") && message.contains("/usr/lib/rkt/plugins/net"),
        "{message}"
    );
}

#[tokio::test]
async fn a_stage1_change_rkt_would_refuse_is_refused_before_any_restart() {
    let _serial = serial().lock().await;
    let (client, controller) = setup().await;
    let base = bridge_example()
        .named("refused")
        .set("/spec/stage1", json!({}));
    apply_config(&client, base.clone()).await;
    let first = converged(&client, "refused", POOL.len()).await;
    let node = POOL[1];
    let old_file = node_file(node, NET_FILE).expect("the net.d file");

    // A vendor stage1 default on one node: with the operator's, stage1.d defines `name` twice, which rkt refuses
    // at start.
    node_ok(
        node,
        &format!(
            r#"mkdir -p /etc/rkt/stage1.d && printf '{{"rktKind":"stage1","rktVersion":"v1","name":"example.com/vendor-stage1","version":"1.0.0"}}' > {VENDOR_STAGE1}"#
        ),
    );
    let _vendor_removed = Cleanup(node, format!("rm -f {VENDOR_STAGE1}"));
    let pid_before = main_pid(node);
    let changed = base.mtu(1400).set(
        "/spec/stage1",
        json!({"name": "coreos.com/rkt/stage1-coreos", "version": "1.30.0"}),
    );
    apply_config(&client, changed).await;

    let state = degraded_with(&client, node, "rkt would refuse").await;
    let error = last_error(&state);
    assert!(
        error.contains("both")
            && error.contains(VENDOR_STAGE1)
            && error.contains(STAGE1_FILE)
            && error.contains("define the default stage1 image"),
        "rkt's reason, naming both files: {error}"
    );
    let nodes = Api::<Node>::all(client.clone());
    let (status, reason, _) = eventually("the Node says why", REACTION, async || {
        let conditions = node_conditions(&nodes.get(node).await.ok()?);
        let network = conditions.get("RktNetworkReady")?.clone();
        (network.1 == "RefusedByRkt").then_some(network)
    })
    .await;
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "RefusedByRkt")
    );
    assert_eq!(
        node_file(node, NET_FILE).as_deref(),
        Some(old_file.as_str()),
        "the network config was written"
    );
    assert!(
        node_file(node, STAGE1_FILE).is_none(),
        "the refused stage1.d file was written"
    );
    assert_eq!(main_pid(node), pid_before, "rkt-api.service was restarted");

    let config = eventually("the config reports Degraded", REACTION, async || {
        let config = config(&client, "refused").await;
        (condition(&config, "Degraded").0 == "True").then_some(config)
    })
    .await;
    assert!(condition(&config, "Degraded").2.contains(node));
    controller.two_more_passes(&client).await;
    assert_eq!(
        states(&client).await[POOL[2]].spec.hash,
        first,
        "the rollout went past the refused node"
    );

    // Without the vendor's file the change is no longer refused: the agent applies it on its next check, and
    // the rollout goes on.
    node_ok(node, &format!("rm -f {VENDOR_STAGE1}"));
    converged(&client, "refused", POOL.len()).await;
    assert!(node_file(node, STAGE1_FILE).is_some());
}

#[tokio::test]
async fn a_hand_edit_is_repaired_and_a_shadowing_file_is_reported() {
    let _serial = serial().lock().await;
    let (client, _controller) = setup().await;
    apply_config(&client, bridge_example()).await;
    converged(&client, "bridge", POOL.len()).await;
    let node = POOL[0];
    let expected = node_file(node, NET_FILE).expect("the net.d file");

    node_ok(
        node,
        &format!("echo '{{\"edited\": \"by hand\"}}' > {NET_FILE}"),
    );
    eventually("the agent repairs the file", REACTION, async || {
        (node_file(node, NET_FILE).as_deref() == Some(&expected)).then_some(())
    })
    .await;
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    eventually(
        "a DriftRepaired Event names the file",
        REACTION,
        async || {
            let list = events.list(&ListParams::default()).await.ok()?;
            list.items
                .into_iter()
                .find(|event| {
                    event.reason.as_deref() == Some("DriftRepaired")
                        && event.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(node)
                        && event
                            .note
                            .as_deref()
                            .is_some_and(|note| note.contains(NET_FILE))
                })
                .map(drop)
        },
    )
    .await;

    node_ok(
        node,
        r#"printf '{"name":"rkt.kubernetes.io","type":"ptp"}' > /etc/rkt/net.d/00-admin.conf"#,
    );
    let nodes: Api<Node> = Api::all(client.clone());
    let shadowed = eventually(
        "the node reports the shadowing file",
        REACTION,
        async || {
            let conditions = node_conditions(&nodes.get(node).await.ok()?);
            let network = conditions.get("RktNetworkReady")?.clone();
            (network.1 == "ShadowedByForeignConfig").then_some(network)
        },
    )
    .await;
    assert!(
        shadowed.2.contains("/etc/rkt/net.d/00-admin.conf"),
        "{}",
        shadowed.2
    );
    node_ok(node, "rm /etc/rkt/net.d/00-admin.conf");

    // A file rkt cannot decode (Go's encoding/json refuses a string for the int `mtu`) fails every pod's network,
    // whatever network it defines.
    node_ok(
        node,
        r#"printf '{"name":"admin","type":"ptp","mtu":"1500"}' > /etc/rkt/net.d/90-admin.conf"#,
    );
    let broken = eventually("the node reports the broken file", REACTION, async || {
        let conditions = node_conditions(&nodes.get(node).await.ok()?);
        let network = conditions.get("RktNetworkReady")?.clone();
        (network.1 == "NetDBroken").then_some(network)
    })
    .await;
    assert!(
        broken.2.contains("/etc/rkt/net.d/90-admin.conf") && broken.2.contains("NetConf.mtu"),
        "{}",
        broken.2
    );
    node_ok(node, "rm /etc/rkt/net.d/90-admin.conf");
    eventually("the network is ready again", REACTION, async || {
        let conditions = node_conditions(&nodes.get(node).await.ok()?);
        (conditions.get("RktNetworkReady")?.0 == "True").then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_node_with_an_older_rkt_reports_the_mismatch() {
    let _serial = serial().lock().await;
    let (client, _controller) = setup().await;
    apply_config(
        &client,
        bridge_example().named("old-rkt").in_pool("old-rkt"),
    )
    .await;
    let state = in_phase(&client, *OLD_RKT_NODE, NodePhase::Degraded).await;
    let status = state.status.expect("a status");
    assert_eq!(
        status.observed_rkt_version.as_deref(),
        Some(OLD_RKT_VERSION)
    );
    let mismatch = status
        .conditions
        .iter()
        .find(|c| c.type_ == "RktVersionMatches")
        .expect("the condition");
    assert_eq!(
        (mismatch.status.as_str(), mismatch.reason.as_str()),
        ("False", "VersionMismatch")
    );
    assert!(
        mismatch.message.contains(OLD_RKT_VERSION)
            && mismatch.message.contains("1.30.0")
            && mismatch.message.contains("waits for a manual upgrade"),
        "{}",
        mismatch.message
    );
    // The agent writes the RktNodeState status first and the Node's conditions after it.
    let nodes = Api::<Node>::all(client.clone());
    eventually(
        "the Node's RktVersionMatches is False",
        REACTION,
        async || {
            let conditions = node_conditions(&nodes.get(*OLD_RKT_NODE).await.ok()?);
            (conditions.get("RktVersionMatches")?.0 == "False").then_some(())
        },
    )
    .await;
    // Without an install source, the config says plainly that the node waits for someone.
    eventually(
        "the config says the node waits for a manual upgrade",
        REACTION,
        async || {
            let (status, _, message) = condition(&config(&client, "old-rkt").await, "Degraded");
            (status == "True" && message.contains("waits for a manual upgrade")).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn deleting_the_config_removes_our_files_and_leaves_foreign_ones() {
    let _serial = serial().lock().await;
    let (client, _controller) = setup().await;
    let foreign = r#"{"name":"admin-net","type":"bridge"}"#;
    // Before any config: on a node no scenario has used yet, net.d is not there.
    node_ok(
        POOL[0],
        &format!("mkdir -p /etc/rkt/net.d && printf '{foreign}' > /etc/rkt/net.d/50-admin.conf"),
    );
    // What a kubelet does: a strategic-merge patch of the Node's status with its own conditions.
    let nodes: Api<Node> = Api::all(client.clone());
    let kubelet_condition = json!({"status": {"conditions": [{
        "type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory",
        "message": "kubelet has sufficient memory available",
        "lastHeartbeatTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z",
    }]}});
    nodes
        .patch_status(
            POOL[0],
            &PatchParams::default(),
            &Patch::Strategic(kubelet_condition),
        )
        .await
        .expect("the kubelet's condition is written");
    apply_config(&client, bridge_example()).await;
    converged(&client, "bridge", POOL.len()).await;

    Api::<RktNodeConfig>::all(client.clone())
        .delete("bridge", &Default::default())
        .await
        .expect("the config can be deleted");
    for node in *POOL {
        eventually("the agent removes its files", REACTION, async || {
            (node_file(node, NET_FILE).is_none() && node_file(node, STAGE1_FILE).is_none())
                .then_some(())
        })
        .await;
    }
    assert_eq!(
        node_file(POOL[0], "/etc/rkt/net.d/50-admin.conf").as_deref(),
        Some(foreign)
    );
    let conditions = eventually(
        "the agent takes its Node conditions away",
        REACTION,
        async || {
            let conditions = node_conditions(&nodes.get(POOL[0]).await.ok()?);
            (!conditions.keys().any(|type_| type_.starts_with("Rkt"))).then_some(conditions)
        },
    )
    .await;
    // The kubelet's condition is untouched.
    assert!(
        conditions.contains_key("MemoryPressure"),
        "the kubelet's conditions went too: {conditions:?}"
    );
    node_ok(POOL[0], "rm /etc/rkt/net.d/50-admin.conf");
    // Each state goes once its agent has cleaned up and lifted the finalizer.
    eventually("the pool's states are gone", REACTION, async || {
        let states = states(&client).await;
        POOL.iter()
            .all(|node| !states.contains_key(*node))
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_stopped_rkt_api_service_is_started_and_one_that_does_not_answer_is_reported() {
    let _serial = serial().lock().await;
    let (client, _controller) = setup().await;
    // The node's rkt binary by path (the kubelet's --rkt-path): the agent's fallback when GetInfo fails. It exists
    // on the node, not in the agent's image, so in the kind lane only a run in the host's mount namespace finds it.
    apply_config(
        &client,
        bridge_example().set("/spec/rkt/path", "/usr/bin/rkt"),
    )
    .await;
    converged(&client, "bridge", POOL.len()).await;
    let node = POOL[2];

    // The agent checks its node every few seconds (3 s here); at rest those checks write nothing.
    let before = states(&client).await[node].resource_version();
    two_more_checks(node).await;
    assert_eq!(
        states(&client).await[node].resource_version(),
        before,
        "a node at rest wrote its RktNodeState"
    );

    let nodes: Api<Node> = Api::all(client.clone());
    // The node's RktAPIServiceReady condition, its reason and message, once its status is `wanted`.
    let api_service_ready = async |wanted: &str| {
        let conditions = node_conditions(&nodes.get(node).await.ok()?);
        let (status, reason, message) = conditions.get("RktAPIServiceReady")?.clone();
        (status == wanted).then_some((reason, message))
    };
    // No event the agent watches: only its periodic check can notice, and it starts the service again.
    let pid_before = main_pid(node);
    node_ok(node, "systemctl stop rkt-api.service");
    let (_, message) = eventually(
        "the agent starts the stopped rkt API service and says so",
        REACTION,
        async || {
            let (reason, message) = api_service_ready("True").await?;
            message
                .contains("Last start by the agent")
                .then_some((reason, message))
        },
    )
    .await;
    assert!(message.contains("was inactive"), "{message}");
    let pid_after = main_pid(node);
    assert!(
        pid_after != "0" && pid_after != pid_before,
        "rkt-api.service was not started again ({pid_before} -> {pid_after})"
    );
    node_event(
        &client,
        node,
        "StartedAPIService",
        "rkt-api.service was inactive",
    )
    .await;

    // A service that runs but does not answer (the stand-in's fault switch: GetInfo fails while the network config
    // has an MTU): reported, not restarted, and the version comes from `/usr/bin/rkt version` on the node.
    let _fault_cleared = Cleanup(
        node,
        format!("rm -f {FAULT_FILE} && systemctl restart rkt-api.service"),
    );
    node_ok(
        node,
        &format!(
            "mkdir -p /run/rkt-standin && printf 'getinfo\\n{NET_FILE}\\nmtu\\n' > {FAULT_FILE} && \
             systemctl restart rkt-api.service"
        ),
    );
    let (_, message) = eventually(
        "the agent reports the rkt API service that does not answer",
        REACTION,
        async || api_service_ready("False").await,
    )
    .await;
    assert!(message.contains("GetInfo"), "{message}");
    let state = &states(&client).await[node];
    let status = state.status.as_ref().expect("a status");
    assert_eq!(status.api_service_healthy, Some(false));
    assert_eq!(
        status.observed_rkt_version.as_deref(),
        Some("1.30.0"),
        "the agent did not learn the version from `/usr/bin/rkt version` on the node"
    );

    node_ok(
        node,
        &format!("rm -f {FAULT_FILE} && systemctl restart rkt-api.service"),
    );
    eventually(
        "the agent reports the rkt API service back",
        REACTION,
        async || api_service_ready("True").await,
    )
    .await;
}

#[tokio::test]
async fn the_agent_writes_a_missing_rkt_api_service_unit_and_leaves_a_hand_written_one() {
    let _serial = serial().lock().await;
    let (client, _controller) = setup().await;
    apply_config(&client, bridge_example()).await;
    converged(&client, "bridge", POOL.len()).await;
    let nodes: Api<Node> = Api::all(client.clone());
    let unit_condition = async |node: &str, reason: &str| {
        let conditions = node_conditions(&nodes.get(node).await.ok()?);
        let condition = conditions.get("RktAPIServiceUnitManaged")?.clone();
        (condition.1 == reason).then_some(condition)
    };

    // The nodes' own unit (e2e/node/rkt-api.service) was written by hand: left as it is, and how it differs from
    // the agent's is reported.
    let hand_written = POOL[0];
    let before = node_ok(hand_written, &format!("sha256sum {UNIT_FILE}"));
    let (status, _, message) =
        eventually("the hand-written unit is reported", REACTION, async || {
            unit_condition(hand_written, "NotWrittenByAgent").await
        })
        .await;
    assert_eq!(status, "False");
    assert!(
        message.contains(UNIT_FILE)
            && message.contains("-ExecStart=/usr/bin/rkt api-service")
            && message.contains("+ExecStart=/usr/bin/rkt api-service --listen=localhost:15441"),
        "{message}"
    );
    assert_eq!(
        node_ok(hand_written, &format!("sha256sum {UNIT_FILE}")),
        before,
        "the hand-written unit was changed"
    );

    // Without any unit, the agent writes its own, enables it, starts the service and reports it. (The node keeps
    // the agent's unit for the scenarios after this one; the hand-written one stays on the first node.)
    let missing = POOL[1];
    node_ok(
        missing,
        &format!(
            "systemctl disable --now rkt-api.service; rm -f {UNIT_FILE} && systemctl daemon-reload"
        ),
    );
    let (status, _, message) =
        eventually("the agent writes the missing unit", REACTION, async || {
            unit_condition(missing, "WrittenByAgent").await
        })
        .await;
    assert_eq!(status, "True", "{message}");
    let unit = node_file(missing, UNIT_FILE).expect("the agent's unit");
    assert!(
        unit.contains("\nExecStart=/usr/bin/rkt api-service --listen=localhost:15441\n")
            && unit.contains("\nBefore=kubelet.service\n"),
        "{unit}"
    );
    assert_eq!(
        node_ok(missing, "systemctl is-enabled rkt-api.service").trim(),
        "enabled"
    );
    eventually("the service it started answers", REACTION, async || {
        let conditions = node_conditions(&nodes.get(missing).await.ok()?);
        (conditions.get("RktAPIServiceReady")?.0 == "True").then_some(())
    })
    .await;
    eventually(
        "its state names the unit among what it wrote",
        REACTION,
        async || {
            let state = states(&client).await.remove(missing)?;
            let status = state.status?;
            status
                .last_applied_paths
                .iter()
                .any(|path| path == UNIT_FILE)
                .then_some(())
        },
    )
    .await;

    // An edit of the agent's unit is drift: put back.
    node_ok(missing, &format!("echo '# edited' >> {UNIT_FILE}"));
    eventually("the agent repairs its unit", REACTION, async || {
        (node_file(missing, UNIT_FILE).as_deref() == Some(unit.as_str())).then_some(())
    })
    .await;

    // A node no config selects any more has nothing of the agent's: its unit is removed and the service it ran
    // stopped and disabled; the hand-written one stays.
    Api::<RktNodeConfig>::all(client.clone())
        .delete("bridge", &Default::default())
        .await
        .expect("the config is deleted");
    eventually("the agent removes its unit", REACTION, async || {
        node_file(missing, UNIT_FILE).is_none().then_some(())
    })
    .await;
    eventually("the service it ran is stopped", REACTION, async || {
        let active = node_shell(missing, "systemctl is-active rkt-api.service");
        let state = String::from_utf8_lossy(&active.stdout).trim().to_owned();
        (state == "inactive" || state == "unknown").then_some(())
    })
    .await;
    assert_ne!(
        node_ok(missing, "systemctl is-enabled rkt-api.service 2>&1 || true").trim(),
        "enabled"
    );
    assert_eq!(
        node_ok(hand_written, &format!("sha256sum {UNIT_FILE}")),
        before
    );
}
