//! Integration tier: `rktnetes controller` against the real control plane, with Node objects and simulated agents
//! that write RktNodeState status. Scenarios run one at a time (they share cluster-scoped objects).

mod support;

use std::{collections::BTreeMap, time::Duration};

use k8s_openapi::api::{apps::v1::DaemonSet, core::v1::Node};
use kube::{
    Api, Client, ResourceExt,
    api::{Patch, PatchParams},
};
use rktnetes_operator::api::RktNodeConfig;
use serde_json::{Value, json};
use support::{
    cluster::cluster,
    controller::{
        ControllerProcess, NAMESPACE, SimulatedAgents, UnavailableSampler, apply_config, condition,
        config, converged, create_nodes, ensure_namespace, reset, serial, states,
    },
};

const POOL: (&str, &str) = ("rktnetes.io/pool", "test");

fn node_names(count: usize) -> Vec<String> {
    (0..count).map(|index| format!("node-{index:02}")).collect()
}

/// A bridge config over the test pool.
fn bridge(name: &str, mtu: i32, max_unavailable: Value, paused: bool) -> Value {
    json!({
        "apiVersion": "rktnetes.io/v1alpha1",
        "kind": "RktNodeConfig",
        "metadata": {"name": name},
        "spec": {
            "nodeSelector": {"matchLabels": {POOL.0: POOL.1}},
            "network": {"mode": "Contained", "contained": {"plugin": "Bridge", "bridge": {"mtu": mtu}}},
            "rkt": {"version": "1.30.0"},
            "rollout": {"maxUnavailable": max_unavailable, "paused": paused},
        }
    })
}

async fn setup(node_count: usize) -> (Client, Vec<String>) {
    let client = cluster().client().await;
    ensure_namespace(&client).await;
    reset(&client).await;
    let names = node_names(node_count);
    create_nodes(&client, &names, &BTreeMap::from([POOL])).await;
    (client, names)
}

#[tokio::test]
async fn a_change_reaches_every_node_in_waves_of_max_unavailable() {
    let _serial = serial().lock().await;
    let (client, nodes) = setup(10).await;
    let controller = ControllerProcess::start(cluster(), "waves");
    let _agents = SimulatedAgents::start(client.clone(), Duration::from_millis(400));

    let sampler = UnavailableSampler::start(client.clone());
    apply_config(&client, bridge("waves", 1460, json!(3), false)).await;
    let first = converged(&client, "waves", nodes.len()).await;
    let most = sampler.most().await;
    assert!(
        most <= 3,
        "{most} nodes were unavailable at once with maxUnavailable 3"
    );
    assert_eq!(most, 3, "the rollout should use its whole budget");

    let sampler = UnavailableSampler::start(client.clone());
    apply_config(&client, bridge("waves", 1400, json!("20%"), false)).await;
    let second = converged(&client, "waves", nodes.len()).await;
    let most = sampler.most().await;
    assert_ne!(first, second, "a changed mtu is a new rendering");
    assert!(
        most <= 2,
        "{most} nodes were unavailable at once with maxUnavailable 20% of 10"
    );
    for state in states(&client).await.values() {
        let net = state
            .spec
            .files
            .iter()
            .find(|f| f.path.starts_with("/etc/rkt/net.d/"))
            .expect("a net.d file");
        assert!(
            net.content.contains("\"mtu\": 1400"),
            "{} lacks the new mtu:\n{}",
            state.name_any(),
            net.content
        );
    }
    let config = config(&client, "waves").await;
    assert_eq!(condition(&config, "Ready").0, "True");
    assert_eq!(condition(&config, "Progressing").1, "Complete");
    drop(controller);
}

#[tokio::test]
async fn a_degraded_node_halts_the_rollout_until_the_config_changes() {
    let _serial = serial().lock().await;
    let (client, nodes) = setup(5).await;
    let _controller = ControllerProcess::start(cluster(), "degraded");
    let agents = SimulatedAgents::start(client.clone(), Duration::from_millis(200));
    apply_config(&client, bridge("halt", 1460, json!(1), false)).await;
    let first = converged(&client, "halt", nodes.len()).await;

    agents.fail("node-02");
    apply_config(&client, bridge("halt", 1400, json!(1), false)).await;
    // node-00 and node-01 update, node-02 rolls back, and nothing after it moves.
    let mut halted = None;
    for _ in 0..300 {
        let config = config(&client, "halt").await;
        if condition(&config, "Degraded").0 == "True" {
            halted = Some(config);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let config = halted.expect("the config never reported Degraded");
    let (_, reason, message) = condition(&config, "Degraded");
    assert_eq!(reason, "NodesDegraded");
    assert!(
        message.contains("node-02") && message.contains("GetInfo"),
        "{message}"
    );
    assert_eq!(condition(&config, "Progressing").1, "Halted");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let states = states(&client).await;
    let target = config
        .status
        .as_ref()
        .and_then(|s| s.config_hash.clone())
        .expect("a hash");
    for node in ["node-03", "node-04"] {
        assert_eq!(
            states[node].spec.hash, first,
            "{node} moved past the degraded node"
        );
    }
    for node in ["node-00", "node-01", "node-02"] {
        assert_eq!(
            states[node].spec.hash, target,
            "{node} should have been given the new rendering"
        );
    }

    // A new config (the fix) goes on, starting with the degraded node.
    agents.heal("node-02");
    apply_config(&client, bridge("halt", 1450, json!(1), false)).await;
    converged(&client, "halt", nodes.len()).await;
    assert_eq!(
        condition(&config_now(&client, "halt").await, "Degraded").0,
        "False"
    );
}

async fn config_now(client: &Client, name: &str) -> RktNodeConfig {
    config(client, name).await
}

#[tokio::test]
async fn pausing_halts_the_rollout() {
    let _serial = serial().lock().await;
    let (client, nodes) = setup(3).await;
    let _controller = ControllerProcess::start(cluster(), "paused");
    let _agents = SimulatedAgents::start(client.clone(), Duration::from_millis(100));
    apply_config(&client, bridge("paused", 1460, json!(1), false)).await;
    let first = converged(&client, "paused", nodes.len()).await;

    apply_config(&client, bridge("paused", 1400, json!(1), true)).await;
    let mut paused = false;
    for _ in 0..100 {
        if condition(&config(&client, "paused").await, "Progressing").1 == "Paused" {
            paused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(paused, "the config never reported Paused");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        states(&client)
            .await
            .values()
            .all(|state| state.spec.hash == first),
        "a paused rollout moved a node"
    );

    apply_config(&client, bridge("paused", 1400, json!(1), false)).await;
    assert_ne!(converged(&client, "paused", nodes.len()).await, first);
}

#[tokio::test]
async fn a_tie_reports_conflict_on_both_configs_and_touches_no_node() {
    let _serial = serial().lock().await;
    let (client, nodes) = setup(2).await;
    let _controller = ControllerProcess::start(cluster(), "tie");
    let _agents = SimulatedAgents::start(client.clone(), Duration::from_millis(100));
    apply_config(&client, bridge("first", 1460, json!(1), false)).await;
    converged(&client, "first", nodes.len()).await;
    let before: BTreeMap<String, Option<String>> = states(&client)
        .await
        .into_iter()
        .map(|(node, state)| (node, state.resource_version()))
        .collect();

    apply_config(&client, bridge("second", 1400, json!(1), false)).await;
    for name in ["first", "second"] {
        let mut conflict = None;
        for _ in 0..100 {
            let (status, _, message) = condition(&config(&client, name).await, "Conflict");
            if status == "True" {
                conflict = Some(message);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let message = conflict.unwrap_or_else(|| panic!("{name} never reported Conflict"));
        assert!(
            message.contains("node-00")
                && message.contains("node-01")
                && message.contains("first, second"),
            "{message}"
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after: BTreeMap<String, Option<String>> = states(&client)
        .await
        .into_iter()
        .map(|(node, state)| (node, state.resource_version()))
        .collect();
    assert_eq!(before, after, "a tied node's state was touched");
}

#[tokio::test]
async fn a_node_no_config_selects_loses_its_state() {
    let _serial = serial().lock().await;
    let (client, nodes) = setup(3).await;
    let _controller = ControllerProcess::start(cluster(), "unselect");
    let _agents = SimulatedAgents::start(client.clone(), Duration::from_millis(100));
    apply_config(&client, bridge("unselect", 1460, json!(3), false)).await;
    converged(&client, "unselect", nodes.len()).await;

    let api: Api<Node> = Api::all(client.clone());
    let unlabel = json!({"metadata": {"labels": {POOL.0: null}}});
    api.patch("node-01", &PatchParams::default(), &Patch::Merge(&unlabel))
        .await
        .expect("labels can change");
    let mut gone = false;
    for _ in 0..100 {
        let states = states(&client).await;
        if !states.contains_key("node-01") {
            assert_eq!(states.len(), 2, "the other nodes keep their states");
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "node-01's RktNodeState was not removed");
    converged(&client, "unselect", 2).await;
}

#[tokio::test]
async fn reapplying_an_unchanged_config_writes_nothing() {
    let _serial = serial().lock().await;
    let (client, nodes) = setup(4).await;
    let controller = ControllerProcess::start(cluster(), "steady");
    let _agents = SimulatedAgents::start(client.clone(), Duration::from_millis(100));
    apply_config(&client, bridge("steady", 1460, json!(2), false)).await;
    converged(&client, "steady", nodes.len()).await;
    // Let the last status write land before counting.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let versions = |client: Client| async move {
        let mut versions: BTreeMap<String, Option<String>> = states(&client)
            .await
            .into_iter()
            .map(|(node, state)| (node, state.resource_version()))
            .collect();
        versions.insert(
            "config".into(),
            config(&client, "steady").await.resource_version(),
        );
        versions.insert(
            "daemonset".into(),
            Api::<DaemonSet>::namespaced(client.clone(), NAMESPACE)
                .get("rktnetes-agent")
                .await
                .expect("the agent DaemonSet exists")
                .resource_version(),
        );
        versions
    };
    let before = versions(client.clone()).await;
    let writes_before = controller.writes();
    apply_config(&client, bridge("steady", 1460, json!(2), false)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        versions(client.clone()).await,
        before,
        "re-applying an unchanged config changed an object"
    );
    assert_eq!(
        controller.writes(),
        writes_before,
        "the controller wrote although nothing changed"
    );
}

#[tokio::test]
async fn only_the_leader_writes() {
    let _serial = serial().lock().await;
    let (client, nodes) = setup(3).await;
    let first = ControllerProcess::start(cluster(), "replica-a");
    let second = ControllerProcess::start(cluster(), "replica-b");
    let _agents = SimulatedAgents::start(client.clone(), Duration::from_millis(100));
    let mut leader = None;
    for _ in 0..200 {
        match (first.is_leader(), second.is_leader()) {
            (true, false) => leader = Some(0),
            (false, true) => leader = Some(1),
            (true, true) => panic!("both replicas lead"),
            (false, false) => {}
        }
        if leader.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let replicas = [first, second];
    let leader = leader.expect("no replica became leader");
    let follower = 1 - leader;
    apply_config(&client, bridge("leader", 1460, json!(1), false)).await;
    converged(&client, "leader", nodes.len()).await;
    assert!(replicas[leader].writes() > 0.0, "the leader wrote nothing");
    assert_eq!(replicas[follower].writes(), 0.0, "the follower wrote");

    // When the leader goes, the other replica takes over and acts.
    let [a, b] = replicas;
    let survivor = if leader == 0 {
        drop(a);
        b
    } else {
        drop(b);
        a
    };
    apply_config(&client, bridge("leader", 1400, json!(1), false)).await;
    converged(&client, "leader", nodes.len()).await;
    assert!(
        survivor.is_leader() && survivor.writes() > 0.0,
        "{} did not take over",
        survivor.identity
    );
}

#[tokio::test]
async fn the_agent_daemonset_follows_the_configs() {
    let _serial = serial().lock().await;
    let (client, nodes) = setup(1).await;
    let _controller = ControllerProcess::start(cluster(), "daemonset");
    let daemonsets: Api<DaemonSet> = Api::namespaced(client.clone(), NAMESPACE);
    apply_config(&client, bridge("agents", 1460, json!(1), false)).await;
    let mut daemonset = None;
    for _ in 0..100 {
        if let Ok(found) = daemonsets.get("rktnetes-agent").await {
            daemonset = Some(found);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let daemonset = daemonset.expect("the controller created no agent DaemonSet");
    let template = daemonset.spec.template;
    assert_eq!(
        template
            .metadata
            .and_then(|m| m.annotations)
            .unwrap_or_default()["rkt.alpha.kubernetes.io/stage1-name-override"],
        "coreos.com/rkt/stage1-fly"
    );
    let pod = template.spec.expect("a pod spec");
    assert_eq!(
        pod.containers[0]
            .security_context
            .as_ref()
            .and_then(|s| s.privileged),
        Some(true)
    );
    let terms = pod
        .affinity
        .and_then(|a| a.node_affinity)
        .and_then(|a| a.required_during_scheduling_ignored_during_execution)
        .expect("agents go only where a config selects")
        .node_selector_terms;
    assert_eq!(terms.len(), 1);

    // The node's state carries the agent's cleanup finalizer: after the last config goes, the node keeps its
    // agent (selected by name) until the agent has taken the files off and let the state go.
    let mut state = None;
    for _ in 0..100 {
        state = states(&client).await.remove(&nodes[0]);
        if state.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        state.expect("the node's state").finalizers(),
        ["rktnetes.io/agent-cleanup"]
    );
    Api::<RktNodeConfig>::all(client.clone())
        .delete("agents", &Default::default())
        .await
        .expect("the config can be deleted");
    let mut by_name = None;
    for _ in 0..100 {
        let terms = daemonsets.get("rktnetes-agent").await.ok().and_then(|d| {
            d.spec
                .template
                .spec?
                .affinity?
                .node_affinity?
                .required_during_scheduling_ignored_during_execution
        });
        if let Some(terms) = terms
            && terms
                .node_selector_terms
                .iter()
                .all(|t| t.match_fields.is_some())
        {
            by_name = Some(terms.node_selector_terms);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let by_name = by_name.expect("the agent DaemonSet went before the node was cleaned");
    assert_eq!(
        by_name[0].match_fields.as_ref().expect("a field selector")[0].values,
        Some(vec![nodes[0].clone()])
    );

    let _agents = SimulatedAgents::start(client.clone(), Duration::ZERO);
    let mut removed = false;
    for _ in 0..100 {
        if matches!(daemonsets.get("rktnetes-agent").await, Err(kube::Error::Api(s)) if s.code == 404)
        {
            removed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(removed, "the agent DaemonSet outlived the last state");
    assert!(states(&client).await.is_empty());
}
