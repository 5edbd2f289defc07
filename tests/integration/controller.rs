//! Integration tier: `rktnetes controller` against the real control plane, with Node objects and simulated agents
//! that write RktNodeState status. Scenarios run one at a time (they share cluster-scoped objects).

use std::{collections::BTreeMap, time::Duration};

use k8s_openapi::api::{apps::v1::DaemonSet, core::v1::Node};
use kube::{
    Api, Client, ResourceExt,
    api::{ListParams, Patch, PatchParams},
};
use rktnetes_operator::api::RktNodeConfig;
use serde_json::json;

use crate::support::{
    cluster::{cluster, serial},
    controller::{
        ControllerProcess, NAMESPACE, SIMULATED_POOL, SimulatedAgents, UnavailableWatch,
        apply_config, condition, config, converged, create_nodes, ensure_namespace,
        forget_previous_replicas, reset, states,
    },
    eventually,
    fixtures::{POOL_LABEL, TestConfig},
};

/// The seed's bridge example named `name`, over the simulated nodes.
fn bridge(name: &str) -> TestConfig {
    TestConfig::example("bridge")
        .named(name)
        .in_pool(SIMULATED_POOL)
}

/// A cluster with `node_count` simulated nodes and nothing else of ours; returns their names.
async fn setup(node_count: usize) -> (Client, Vec<String>) {
    let client = cluster().client().await;
    ensure_namespace(&client).await;
    reset(&client).await;
    forget_previous_replicas(&client).await;
    let names = create_nodes(&client, node_count).await;
    (client, names)
}

/// How long the controller may take to act on a change.
const REACTION: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_change_reaches_every_node_in_waves_of_max_unavailable() {
    let _serial = serial().lock().await;
    let (client, nodes) = setup(10).await;
    let controller = ControllerProcess::start(cluster(), "waves").await;
    let _agents = SimulatedAgents::start(client.clone(), Duration::from_millis(400));

    let unavailable = UnavailableWatch::start(client.clone()).await;
    apply_config(&client, bridge("waves").max_unavailable(3)).await;
    let first = converged(&client, "waves", nodes.len()).await;
    let most = unavailable.most();
    assert!(
        most <= 3,
        "{most} nodes were unavailable at once with maxUnavailable 3"
    );
    assert_eq!(most, 3, "the rollout should use its whole budget");

    let unavailable = UnavailableWatch::start(client.clone()).await;
    apply_config(&client, bridge("waves").mtu(1400).max_unavailable("20%")).await;
    let second = converged(&client, "waves", nodes.len()).await;
    let most = unavailable.most();
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
    let controller = ControllerProcess::start(cluster(), "degraded").await;
    let agents = SimulatedAgents::start(client.clone(), Duration::from_millis(200));
    apply_config(&client, bridge("halt")).await;
    let first = converged(&client, "halt", nodes.len()).await;

    agents.fail("node-02");
    apply_config(&client, bridge("halt").mtu(1400)).await;
    // node-00 and node-01 update, node-02 rolls back, and nothing after it moves.
    let halted = eventually("the config reports Degraded", REACTION, async || {
        let config = config(&client, "halt").await;
        (condition(&config, "Degraded").0 == "True").then_some(config)
    })
    .await;
    let (_, reason, message) = condition(&halted, "Degraded");
    assert_eq!(reason, "NodesDegraded");
    assert!(
        message.contains("node-02") && message.contains("GetInfo"),
        "{message}"
    );
    assert_eq!(condition(&halted, "Progressing").1, "Halted");
    controller.two_more_passes().await;
    let states = states(&client).await;
    let target = halted
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
    apply_config(&client, bridge("halt").mtu(1450)).await;
    converged(&client, "halt", nodes.len()).await;
    assert_eq!(
        condition(&config(&client, "halt").await, "Degraded").0,
        "False"
    );
}

#[tokio::test]
async fn pausing_halts_the_rollout() {
    let _serial = serial().lock().await;
    let (client, nodes) = setup(3).await;
    let controller = ControllerProcess::start(cluster(), "paused").await;
    let _agents = SimulatedAgents::start(client.clone(), Duration::from_millis(100));
    apply_config(&client, bridge("paused")).await;
    let first = converged(&client, "paused", nodes.len()).await;

    apply_config(&client, bridge("paused").mtu(1400).paused(true)).await;
    eventually("the config reports Paused", REACTION, async || {
        (condition(&config(&client, "paused").await, "Progressing").1 == "Paused").then_some(())
    })
    .await;
    controller.two_more_passes().await;
    assert!(
        states(&client)
            .await
            .values()
            .all(|state| state.spec.hash == first),
        "a paused rollout moved a node"
    );

    apply_config(&client, bridge("paused").mtu(1400)).await;
    assert_ne!(converged(&client, "paused", nodes.len()).await, first);
}

#[tokio::test]
async fn a_tie_reports_conflict_on_both_configs_and_touches_no_node() {
    let _serial = serial().lock().await;
    let (client, nodes) = setup(2).await;
    let controller = ControllerProcess::start(cluster(), "tie").await;
    let _agents = SimulatedAgents::start(client.clone(), Duration::from_millis(100));
    apply_config(&client, bridge("first")).await;
    converged(&client, "first", nodes.len()).await;
    let before: BTreeMap<String, Option<String>> = states(&client)
        .await
        .into_iter()
        .map(|(node, state)| (node, state.resource_version()))
        .collect();

    apply_config(&client, bridge("second").mtu(1400)).await;
    for name in ["first", "second"] {
        let message = eventually(&format!("{name} reports Conflict"), REACTION, async || {
            let (status, _, message) = condition(&config(&client, name).await, "Conflict");
            (status == "True").then_some(message)
        })
        .await;
        assert!(
            message.contains("node-00")
                && message.contains("node-01")
                && message.contains("first, second"),
            "{message}"
        );
    }
    controller.two_more_passes().await;
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
    let _controller = ControllerProcess::start(cluster(), "unselect").await;
    let _agents = SimulatedAgents::start(client.clone(), Duration::from_millis(100));
    apply_config(&client, bridge("unselect").max_unavailable(3)).await;
    converged(&client, "unselect", nodes.len()).await;

    let api: Api<Node> = Api::all(client.clone());
    let unlabel = json!({"metadata": {"labels": {POOL_LABEL: null}}});
    api.patch("node-01", &PatchParams::default(), &Patch::Merge(&unlabel))
        .await
        .expect("labels can change");
    let states = eventually("node-01's RktNodeState is removed", REACTION, async || {
        let states = states(&client).await;
        (!states.contains_key("node-01")).then_some(states)
    })
    .await;
    assert_eq!(states.len(), 2, "the other nodes keep their states");
    converged(&client, "unselect", 2).await;
}

#[tokio::test]
async fn reapplying_an_unchanged_config_writes_nothing() {
    let _serial = serial().lock().await;
    let (client, nodes) = setup(4).await;
    let controller = ControllerProcess::start(cluster(), "steady").await;
    let _agents = SimulatedAgents::start(client.clone(), Duration::from_millis(100));
    apply_config(&client, bridge("steady").max_unavailable(2)).await;
    converged(&client, "steady", nodes.len()).await;
    // Let the last status write land before counting.
    controller.two_more_passes().await;

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
    apply_config(&client, bridge("steady").max_unavailable(2)).await;
    controller.two_more_passes().await;
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
    let first = ControllerProcess::start(cluster(), "replica-a").await;
    let second = ControllerProcess::start(cluster(), "replica-b").await;
    let _agents = SimulatedAgents::start(client.clone(), Duration::from_millis(100));
    let leader = eventually("a replica leads", REACTION, async || {
        match (first.is_leader(), second.is_leader()) {
            (true, false) => Some(0),
            (false, true) => Some(1),
            (true, true) => panic!("both replicas lead"),
            (false, false) => None,
        }
    })
    .await;
    let replicas = [first, second];
    let follower = 1 - leader;
    apply_config(&client, bridge("leader")).await;
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
    apply_config(&client, bridge("leader").mtu(1400)).await;
    converged(&client, "leader", nodes.len()).await;
    assert!(
        survivor.is_leader() && survivor.writes() > 0.0,
        "{} did not take over",
        survivor.identity
    );
}

#[tokio::test]
async fn agents_go_to_the_labelled_nodes_and_the_daemonset_stays_the_same_while_nodes_release() {
    let _serial = serial().lock().await;
    let (client, nodes) = setup(12).await;
    let _controller = ControllerProcess::start(cluster(), "daemonset").await;
    let daemonsets: Api<DaemonSet> = Api::namespaced(client.clone(), NAMESPACE);
    let node_api: Api<Node> = Api::all(client.clone());
    let labelled = async || -> Vec<String> {
        let mut labelled: Vec<String> = node_api
            .list(&ListParams::default().labels("rktnetes.io/agent=rktnetes-agent"))
            .await
            .map(|list| list.into_iter().map(|node| node.name_any()).collect())
            .unwrap_or_default();
        labelled.sort();
        labelled
    };
    // Ten of the twelve nodes in the pool the config selects.
    for node in &nodes[10..] {
        node_api
            .patch(
                node,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {POOL_LABEL: "elsewhere"}}})),
            )
            .await
            .expect("the node can be relabelled");
    }
    let selected: Vec<String> = nodes[..10].to_vec();
    // All at once: every selected node gets its state in the first wave.
    apply_config(&client, bridge("agents").max_unavailable("100%")).await;
    let daemonset = eventually(
        "the controller labels the selected nodes and creates the agent DaemonSet",
        REACTION,
        async || {
            (labelled().await == selected)
                .then_some(())
                .ok_or("the labels")?;
            daemonsets
                .get("rktnetes-agent")
                .await
                .map_err(|_| "the DaemonSet")
        },
    )
    .await;
    let template = daemonset.spec.template.clone();
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
    // One label, whatever the configs and however many nodes: the DaemonSet never grows with the nodes.
    assert_eq!(
        pod.node_selector,
        Some(BTreeMap::from([(
            "rktnetes.io/agent".to_owned(),
            "rktnetes-agent".to_owned()
        )]))
    );
    assert!(pod.affinity.is_none());
    let generation = daemonset.metadata.generation;

    // Each state carries the agent's cleanup finalizer: after the last config goes, the nodes keep their agents
    // (their label) until each agent has taken the files off and let its state go; the DaemonSet stays as it is.
    let state = eventually("the nodes have their states", REACTION, async || {
        let mut states = states(&client).await;
        (states.len() == selected.len()).then(|| states.remove(&selected[0]))?
    })
    .await;
    assert_eq!(state.finalizers(), ["rktnetes.io/agent-cleanup"]);
    Api::<RktNodeConfig>::all(client.clone())
        .delete("agents", &Default::default())
        .await
        .expect("the config can be deleted");
    eventually("every state is being deleted", REACTION, async || {
        states(&client)
            .await
            .values()
            .all(|state| state.metadata.deletion_timestamp.is_some())
            .then_some(())
    })
    .await;
    assert_eq!(
        labelled().await,
        selected,
        "releasing nodes keep their agent"
    );
    let releasing = daemonsets
        .get("rktnetes-agent")
        .await
        .expect("the agents stay while the nodes release");
    assert_eq!(
        releasing.metadata.generation, generation,
        "the DaemonSet changed while nodes released"
    );

    let _agents = SimulatedAgents::start(client.clone(), Duration::ZERO);
    eventually(
        "the labels and the agent DaemonSet go with the last state",
        REACTION,
        async || {
            let gone = matches!(daemonsets.get("rktnetes-agent").await, Err(kube::Error::Api(s)) if s.code == 404);
            (gone && labelled().await.is_empty()).then_some(())
        },
    )
    .await;
    assert!(states(&client).await.is_empty());
}
