//! Operating the installed chart as users do: GitOps re-applies, the agent's least privilege checked with real
//! requests, `helm upgrade` and the documented uninstall order.

use k8s_openapi::api::{apps::v1::DaemonSet, core::v1::Node};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use rktnetes_operator::{
    api::{RktNodeConfig, RktNodeState},
    controller::agent_placement::AGENT_LABEL,
};
use serde_json::{Value, json};

use super::*;
use crate::support::{
    chart::{self, AGENT_NAMESPACE, RELEASE, RELEASE_NAMESPACE, helm},
    cluster::{TestCluster, client_from, run},
    controller::ChartController,
    kind_profile,
    nodes::{agent_pod_token, start_agents},
};

/// Writes `object` where kubectl can read it, as a user's manifest file.
fn manifest(name: &str, object: &Value) -> std::path::PathBuf {
    let path = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}.json"));
    std::fs::write(&path, object.to_string()).expect("the manifest can be written");
    path
}

/// The status code and message of a refused request; panics when it was allowed.
fn refused<T: std::fmt::Debug>(what: &str, result: Result<T, kube::Error>) -> (u16, String) {
    match result {
        Err(kube::Error::Api(status)) => (status.code, status.message),
        other => panic!("{what} was not refused: {other:?}"),
    }
}

#[tokio::test]
async fn reapplying_the_same_manifests_after_convergence_changes_nothing() {
    let _serial = serial().lock().await;
    let (client, _controller) = setup().await;
    let cluster = cluster();
    let file = manifest("gitops-bridge", bridge_example().json());
    let apply = || {
        run(cluster
            .kubectl()
            .args(["apply", "--server-side", "--field-manager=gitops", "-f"])
            .arg(&file))
    };
    apply();
    converged(&client, "bridge", POOL.len()).await;
    let before = config_object(&client).await;

    apply();
    let diff = cluster
        .kubectl()
        .args(["diff", "--server-side", "--field-manager=gitops", "-f"])
        .arg(&file)
        .output()
        .expect("kubectl runs");
    assert_eq!(
        diff.status.code(),
        Some(0),
        "kubectl diff --server-side is not empty:\n{}{}",
        String::from_utf8_lossy(&diff.stdout),
        String::from_utf8_lossy(&diff.stderr)
    );
    let after = config_object(&client).await;
    assert_eq!(
        before.resource_version(),
        after.resource_version(),
        "re-applying the same manifest wrote the object"
    );
    // The controller writes only status: it owns no field of the spec (nor of the metadata GitOps manages).
    for entry in after.managed_fields() {
        if entry.manager.as_deref() == Some(rktnetes_operator::controller::FIELD_MANAGER) {
            assert_eq!(
                entry.subresource.as_deref(),
                Some("status"),
                "the controller wrote outside status: {entry:?}"
            );
        }
    }
    // The same for the release: upgrading to the same chart and values writes nothing to the controller.
    let deployment = || chart::controller_deployment(cluster, "{.metadata.resourceVersion}");
    let release_before = deployment();
    chart::install(cluster, &["--reuse-values"]);
    assert_eq!(release_before, deployment());
}

async fn config_object(client: &Client) -> RktNodeConfig {
    Api::<RktNodeConfig>::all(client.clone())
        .get("bridge")
        .await
        .expect("the config")
}

#[tokio::test]
async fn an_agents_token_writes_only_its_own_nodes_status_and_events_and_deletes_nothing() {
    let _serial = serial().lock().await;
    let (client, _controller) = setup().await;
    apply_config(&client, bridge_example()).await;
    converged(&client, "bridge", POOL.len()).await;
    let (own, other) = (POOL[0], POOL[1]);
    // In the kind lane, the token the kubelet gave the agent pod on `own`; locally, one like it: the chart's agent
    // ServiceAccount, bound to that node's Node object.
    let kubeconfig = if kind_profile() {
        let token = agent_pod_token(cluster(), own);
        chart::token_kubeconfig(
            cluster(),
            &format!("agent-pod-{own}"),
            "rktnetes-agent",
            &token,
        )
    } else {
        chart::service_account_kubeconfig(cluster(), AGENT_NAMESPACE, "rktnetes-agent", Some(own))
            .await
    };
    let agent = client_from(&kubeconfig).await;
    let nodes: Api<Node> = Api::all(agent.clone());
    let states: Api<RktNodeState> = Api::all(agent.clone());
    let apply = PatchParams::apply("rktnetes-agent");
    // Forced, so that a refusal comes from authorization or admission, not from a field-ownership conflict.
    let forced = PatchParams::apply("rktnetes-agent").force();
    let condition = |node: &str, type_: &str| {
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}, "status": {"conditions": [{
            "type": type_, "status": "True", "reason": "Probe", "message": "written by the test",
            "lastHeartbeatTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z",
        }]}})
    };

    // Allowed: what the agent does, on its own node (the current condition, re-applied unchanged).
    let current = Api::<Node>::all(client.clone())
        .get(own)
        .await
        .expect("the node");
    let ours = current
        .status
        .and_then(|status| status.conditions)
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "RktNetworkReady")
        .expect("the agent reported RktNetworkReady");
    let same = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": own},
        "status": {"conditions": [ours]}});
    nodes
        .patch_status(own, &apply, &Patch::Apply(&same))
        .await
        .expect("an agent may write its own node's conditions");
    let own_state = Api::<RktNodeState>::all(client.clone())
        .get(own)
        .await
        .expect("the state");
    let own_status = json!({"apiVersion": "rktnetes.io/v1alpha1", "kind": "RktNodeState",
        "status": own_state.status});
    states
        .patch_status(own, &apply, &Patch::Apply(&own_status))
        .await
        .expect("an agent may write its own RktNodeState status");

    // Refused by the admission policy: another node, another kind of condition.
    let (code, message) = refused(
        "another node's condition",
        nodes
            .patch_status(
                other,
                &apply,
                &Patch::Apply(condition(other, "RktNetworkReady")),
            )
            .await,
    );
    assert_eq!(code, 403);
    assert!(
        message.contains(&format!(
            "agent of node {own} may not write the status of nodes {other}"
        )),
        "{message}"
    );
    let (code, message) = refused(
        "the kubelet's condition",
        nodes
            .patch_status(own, &forced, &Patch::Apply(condition(own, "Ready")))
            .await,
    );
    assert_eq!(code, 403);
    assert!(
        message.contains("only write Node conditions of the types"),
        "{message}"
    );
    let other_status = json!({"apiVersion": "rktnetes.io/v1alpha1", "kind": "RktNodeState",
        "status": {"phase": "Applied"}});
    let (code, message) = refused(
        "another node's RktNodeState status",
        states
            .patch_status(other, &forced, &Patch::Apply(&other_status))
            .await,
    );
    assert_eq!(code, 403);
    assert!(
        message.contains(&format!(
            "may not write the status of rktnodestates {other}"
        )),
        "{message}"
    );
    let (code, message) = refused(
        "its own RktNodeState's spec",
        states
            .patch(
                own,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"hash": "0000000000000000"}})),
            )
            .await,
    );
    assert_eq!(code, 403);
    assert!(message.contains("may only update status"), "{message}");

    // Refused by RBAC: every delete, creating, Secrets, other nodes' labels.
    let deletes = [
        (
            "delete its RktNodeState",
            states.delete(own, &DeleteParams::default()).await.map(drop),
        ),
        (
            "delete a node",
            nodes
                .delete(other, &DeleteParams::default())
                .await
                .map(drop),
        ),
        (
            "delete a config",
            Api::<RktNodeConfig>::all(agent.clone())
                .delete("bridge", &DeleteParams::default())
                .await
                .map(drop),
        ),
        (
            "delete the agent DaemonSet",
            Api::<DaemonSet>::namespaced(agent.clone(), AGENT_NAMESPACE)
                .delete("rktnetes-agent", &DeleteParams::default())
                .await
                .map(drop),
        ),
    ];
    for (what, result) in deletes {
        assert_eq!(refused(what, result).0, 403, "{what}");
    }
    let mut state = own_state.clone();
    state.metadata = kube::api::ObjectMeta {
        name: Some("rktnetes-not-a-node".into()),
        ..Default::default()
    };
    assert_eq!(
        refused(
            "create a RktNodeState",
            states.create(&PostParams::default(), &state).await
        )
        .0,
        403
    );
    assert_eq!(
        refused(
            "list Secrets",
            Api::<k8s_openapi::api::core::v1::Secret>::all(agent.clone())
                .list(&Default::default())
                .await
        )
        .0,
        403
    );
    assert_eq!(
        refused(
            "label a node",
            nodes
                .patch(
                    other,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}}))
                )
                .await
        )
        .0,
        403
    );

    // Events: about its own Node, reported as itself, allowed; about another node, or as another reporter,
    // refused by the policy.
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(agent.clone(), "default");
    let event = |about: &str, instance: &str| {
        serde_json::from_value(json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"generateName": "rktnetes-agent-test-"},
            "eventTime": "2026-01-01T00:00:00.000000Z",
            "reportingController": "rktnetes-agent", "reportingInstance": instance,
            "action": "Apply", "reason": "Probe", "type": "Normal", "note": "written by the test",
            "regarding": {"apiVersion": "v1", "kind": "Node", "name": about},
        }))
        .expect("an Event")
    };
    events
        .create(&PostParams::default(), &event(own, own))
        .await
        .expect("an agent may record an Event about its own node");
    for (what, about, instance) in [
        ("an Event about another node", other, own),
        ("an Event reported as another node's agent", own, other),
    ] {
        let (code, message) = refused(
            what,
            events
                .create(&PostParams::default(), &event(about, instance))
                .await,
        );
        assert_eq!(code, 403, "{what}");
        assert!(
            message.contains(&format!(
                "agent of node {own} may only record Events about its own Node"
            )),
            "{what}: {message}"
        );
    }
}

#[tokio::test]
async fn helm_upgrade_rolls_the_controller_and_the_agents_without_disturbing_converged_nodes() {
    let _serial = serial().lock().await;
    let (client, controller) = setup().await;
    let cluster = cluster();
    apply_config(&client, bridge_example()).await;
    let hash = converged(&client, "bridge", POOL.len()).await;
    let files_before: Vec<_> = POOL.iter().map(|node| node_file(node, NET_FILE)).collect();
    let pids_before: Vec<_> = POOL.iter().map(|node| main_pid(node)).collect();
    let states_before: BTreeMap<String, String> = states(&client)
        .await
        .into_iter()
        .map(|(node, state)| (node, state.resource_version().unwrap_or_default()))
        .collect();
    let daemonsets: Api<DaemonSet> = Api::namespaced(client.clone(), AGENT_NAMESPACE);
    let agent_env = |daemonset: &DaemonSet| {
        serde_json::to_value(&daemonset.spec.template.spec).expect("JSON")["containers"][0]["env"]
            .to_string()
    };
    let before = daemonsets
        .get("rktnetes-agent")
        .await
        .expect("the agent DaemonSet");
    let generation = deployment_generation(cluster);

    let values = manifest(
        "upgrade-values",
        &json!({"logLevel": "debug", "agent": {"logLevel": "debug"}}),
    );
    chart::install(
        cluster,
        &["--values", values.to_str().expect("a UTF-8 path")],
    );
    assert!(
        deployment_generation(cluster) > generation,
        "the Deployment did not roll"
    );
    // The controller as the new ReplicaSet runs it: with the upgraded Deployment's arguments (restarted here, or
    // the rolled pods in the kind lane).
    drop(controller);
    let upgraded = ChartController::start(cluster, "e2e-upgraded").await;
    let after = eventually(
        "the controller rolls the agent DaemonSet",
        REACTION,
        async || {
            let after = daemonsets.get("rktnetes-agent").await.ok()?;
            agent_env(&after).contains("debug").then_some(after)
        },
    )
    .await;
    assert_ne!(agent_env(&before), agent_env(&after));
    assert!(after.metadata.generation > before.metadata.generation);

    // The nodes keep what they had: same state objects, files and rkt API service process, after the upgraded
    // controller has made two passes over them.
    upgraded.two_more_passes(&client).await;
    assert_eq!(
        config(&client, "bridge")
            .await
            .status
            .and_then(|s| s.config_hash),
        Some(hash)
    );
    let states_after: BTreeMap<String, String> = states(&client)
        .await
        .into_iter()
        .map(|(node, state)| (node, state.resource_version().unwrap_or_default()))
        .collect();
    assert_eq!(
        states_before, states_after,
        "the upgrade rewrote RktNodeStates"
    );
    let files_after: Vec<_> = POOL.iter().map(|node| node_file(node, NET_FILE)).collect();
    assert_eq!(files_before, files_after);
    let pids_after: Vec<_> = POOL.iter().map(|node| main_pid(node)).collect();
    assert_eq!(
        pids_before, pids_after,
        "the upgrade restarted rkt-api.service"
    );

    chart::install(cluster, &["--reset-values"]);
}

fn deployment_generation(cluster: &TestCluster) -> i64 {
    chart::controller_deployment(cluster, "{.metadata.generation}")
        .trim()
        .parse()
        .expect("a generation")
}

#[tokio::test]
async fn the_controllers_token_may_change_only_the_agent_label_of_a_node() {
    let _serial = serial().lock().await;
    let (client, _controller) = setup().await;
    let node = POOL[0];
    let kubeconfig = chart::service_account_kubeconfig(
        cluster(),
        RELEASE_NAMESPACE,
        "rktnetes-controller",
        None,
    )
    .await;
    let nodes: Api<Node> = Api::all(client_from(&kubeconfig).await);
    let params = PatchParams {
        field_manager: Some("rktnetes-controller".to_owned()),
        ..PatchParams::default()
    };
    let patch = |value: Value| Patch::Merge(json!({"metadata": value}));

    // Allowed: what the controller does. No config selects the node, so the controller takes the label off again.
    nodes
        .patch(
            node,
            &params,
            &patch(json!({"labels": {AGENT_LABEL: "rktnetes-agent"}})),
        )
        .await
        .expect("the controller may put the agent label on a node");
    let admin_nodes: Api<Node> = Api::all(client.clone());
    eventually(
        "the controller takes the label off a node that needs no agent",
        REACTION,
        async || {
            let labels = admin_nodes.get(node).await.ok()?.labels().clone();
            (!labels.contains_key(AGENT_LABEL)).then_some(())
        },
    )
    .await;

    // Refused by the admission policy: another label, an annotation, the spec; by RBAC: delete.
    for (what, change) in [
        (
            "another label",
            json!({"labels": {"rktnetes.io/pool": "taken"}}),
        ),
        (
            "an annotation",
            json!({"annotations": {"example.com/note": "x"}}),
        ),
    ] {
        let (code, message) = refused(what, nodes.patch(node, &params, &patch(change)).await);
        assert_eq!(code, 403, "{what}");
        assert!(
            message.contains("may change only the rktnetes.io/agent label"),
            "{what}: {message}"
        );
    }
    let cordon = Patch::Merge(json!({"spec": {"unschedulable": true}}));
    let (code, message) = refused("cordoning", nodes.patch(node, &params, &cordon).await);
    assert_eq!(code, 403);
    assert!(message.contains("not its annotations or spec"), "{message}");
    let (code, _) = refused(
        "deleting a node",
        nodes.delete(node, &DeleteParams::default()).await,
    );
    assert_eq!(code, 403);
    let labels = admin_nodes
        .get(node)
        .await
        .expect("the node")
        .labels()
        .clone();
    assert_eq!(
        labels.get("rktnetes.io/pool").map(String::as_str),
        Some("e2e")
    );
}

#[tokio::test]
async fn uninstalling_in_the_documented_order_leaves_the_nodes_clean_and_keeps_crds_and_user_objects()
 {
    let _serial = serial().lock().await;
    let (client, controller) = setup().await;
    let cluster = cluster();
    apply_config(&client, bridge_example()).await;
    converged(&client, "bridge", POOL.len()).await;
    // A user's config that selects no node: it must survive the uninstall.
    apply_config(&client, bridge_example().named("kept").in_pool("none")).await;

    // The documented order (NOTES.txt, README): delete the configs that select nodes, wait for their states.
    Api::<RktNodeConfig>::all(client.clone())
        .delete("bridge", &DeleteParams::default())
        .await
        .expect("the config can be deleted");
    run(cluster.kubectl().args([
        "wait",
        "--for=delete",
        "rktnodestates",
        "--all",
        "--timeout=120s",
    ]));
    // Gone means cleaned: the agents removed the finalizer only after taking the files off.
    for node in *POOL {
        assert_eq!(node_file(node, NET_FILE), None, "{node} still has our file");
        assert_eq!(
            node_file(node, STAGE1_FILE),
            None,
            "{node} still has our file"
        );
    }
    // And the nodes need no agent any more: the controller takes its label off.
    let nodes: Api<Node> = Api::all(client.clone());
    eventually("no node carries the agent label", REACTION, async || {
        let labelled = nodes
            .list(&ListParams::default().labels(AGENT_LABEL))
            .await
            .map_err(|error| error.to_string())?;
        match labelled.items.len() {
            0 => Ok(()),
            count => Err(format!("{count} nodes still labelled")),
        }
    })
    .await;
    drop(controller);

    let output = run(helm(cluster).args([
        "uninstall",
        RELEASE,
        "--namespace",
        RELEASE_NAMESPACE,
        "--wait",
        "--timeout=3m",
    ]));
    drop(output);
    for crd in [
        "crd/rktnodeconfigs.rktnetes.io",
        "crd/rktnodestates.rktnetes.io",
    ] {
        cluster.kubectl_ok(&["get", crd]);
    }
    Api::<RktNodeConfig>::all(client.clone())
        .get("kept")
        .await
        .expect("the user's config is kept");
    Api::<RktNodeConfig>::all(client.clone())
        .delete("kept", &DeleteParams::default())
        .await
        .expect("the kept config can be deleted");

    // Back to the installed chart for the other scenarios; the agents need tokens of the new ServiceAccount.
    chart::install(cluster, &[]);
    start_agents();
}
