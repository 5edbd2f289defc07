//! The controller's decisions, as one pure function from what the caches hold to the writes that bring the cluster
//! closer to what the configs ask: which RktNodeStates to write or delete, which statuses change, which Events to
//! record. Writing nothing is the normal outcome once the cluster has converged.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

use k8s_openapi::{
    api::core::v1::Node,
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time},
};
use kube::{Resource, ResourceExt, core::PartialObjectMeta};

use super::{
    config_status::{ConfigObservation, config_status},
    rollout::{NodeProgress, Wave, max_unavailable, next_wave},
    selection::{Assignment, Selection},
};
use crate::{
    api::{
        NodePhase, RktNodeConfig, RktNodeConfigStatus, RktNodeState,
        node_state::{AGENT_CLEANUP_FINALIZER, Release},
    },
    conditions::{name_some, transitions},
    events::Notice,
    render::{Rendering, render},
};

/// The label on each RktNodeState naming the config it was rendered from.
pub const CONFIG_LABEL: &str = "rktnetes.io/config";

/// What the caches hold at one moment.
pub struct Snapshot {
    pub configs: Vec<Arc<RktNodeConfig>>,
    pub nodes: Vec<Arc<PartialObjectMeta<Node>>>,
    pub states: Vec<Arc<RktNodeState>>,
}

/// The writes one pass makes.
#[derive(Debug, Default)]
pub struct Plan {
    /// RktNodeStates to create or update (server-side apply), in node order.
    pub apply_states: Vec<RktNodeState>,
    /// RktNodeStates to delete: their node is gone or no config selects it.
    pub delete_states: Vec<String>,
    /// RktNodeStates being deleted whose node is gone: no agent will remove the cleanup finalizer, so the
    /// controller does.
    pub release_states: Vec<Release>,
    /// Nodes that still carry our files while their state is deleted: they keep an agent until it has cleaned up.
    pub releasing_nodes: Vec<String>,
    /// Every node that needs an agent: those some config selects (or that configs tie over), and the releasing ones.
    pub agent_nodes: BTreeSet<String>,
    /// Config statuses that differ from what the config shows, by config name.
    pub statuses: Vec<(String, RktNodeConfigStatus)>,
    /// Events to record on configs.
    pub events: Vec<PlannedEvent>,
}

/// An Event about a config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedEvent {
    pub config: String,
    pub notice: Notice,
}

/// Whether the config that owns `state` (its controller owner reference) is no longer among `config_uids`: the
/// garbage collector deletes such a state. A state without an owner reference is never left to it.
fn owner_is_gone(state: &RktNodeState, config_uids: &BTreeSet<&str>) -> bool {
    state
        .owner_references()
        .iter()
        .find(|owner| owner.controller == Some(true))
        .is_some_and(|owner| !config_uids.contains(owner.uid.as_str()))
}

/// Decides everything for `snapshot` at time `now`.
pub fn plan(snapshot: &Snapshot, now: &Time) -> Plan {
    let mut plan = Plan::default();
    let states: BTreeMap<&str, &RktNodeState> = snapshot
        .states
        .iter()
        .map(|state| (state_name(state), state.as_ref()))
        .collect();
    // A config being deleted (its dependents first, in a foreground deletion) selects nothing any more: its states
    // are the garbage collector's, and writing them again would fight it.
    let configs: Vec<&RktNodeConfig> = snapshot
        .configs
        .iter()
        .map(AsRef::as_ref)
        .filter(|config| config.metadata.deletion_timestamp.is_none())
        .collect();

    // Who wins each node.
    let mut won: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    let mut conflicts: BTreeMap<String, Vec<(String, Vec<String>)>> = BTreeMap::new();
    let mut keep: BTreeSet<&str> = BTreeSet::new();
    let mut nodes: Vec<&PartialObjectMeta<Node>> =
        snapshot.nodes.iter().map(AsRef::as_ref).collect();
    nodes.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let selection = Selection::new(configs.iter().copied());
    for node in nodes {
        let name = node.metadata.name.as_deref().unwrap_or_default();
        match selection.assign(node.labels()) {
            Assignment::Won(config) => {
                won.entry(config).or_default().push(name);
                keep.insert(name);
            }
            Assignment::Tied(tied) => {
                for config in &tied {
                    conflicts
                        .entry(config.clone())
                        .or_default()
                        .push((name.to_owned(), tied.clone()));
                }
                keep.insert(name);
            }
            Assignment::Unselected => {}
        }
    }

    // A state whose node is gone, or that no config selects, goes; a tied node keeps what it has. Deletion waits
    // for the node's agent to clean up (the finalizer), so the node keeps its agent meanwhile. A state whose config
    // is gone is the garbage collector's to delete (its owner reference): one deleter, not two racing.
    let existing: BTreeSet<&str> = snapshot
        .nodes
        .iter()
        .filter_map(|node| node.metadata.name.as_deref())
        .collect();
    let config_uids: BTreeSet<&str> = configs
        .iter()
        .filter_map(|config| config.metadata.uid.as_deref())
        .collect();
    for (node, state) in &states {
        let terminating = state.metadata.deletion_timestamp.is_some();
        if !terminating && !keep.contains(node) && !owner_is_gone(state, &config_uids) {
            plan.delete_states.push((*node).to_owned());
        }
        if (terminating || !keep.contains(node)) && existing.contains(node) {
            plan.releasing_nodes.push((*node).to_owned());
        }
        if terminating && !existing.contains(node) {
            plan.release_states.extend(Release::of(state));
        }
    }

    plan.agent_nodes = keep
        .iter()
        .map(|node| (*node).to_owned())
        .chain(plan.releasing_nodes.iter().cloned())
        .collect();

    for config in &configs {
        let name = config.name_any();
        let nodes_won = won.remove(&name).unwrap_or_default();
        let config_conflicts = conflicts.remove(&name).unwrap_or_default();
        plan_config(
            config,
            &nodes_won,
            &config_conflicts,
            &states,
            now,
            &mut plan,
        );
    }
    plan
}

fn plan_config(
    config: &RktNodeConfig,
    nodes: &[&str],
    conflicts: &[(String, Vec<String>)],
    states: &BTreeMap<&str, &RktNodeState>,
    now: &Time,
    plan: &mut Plan,
) {
    let name = config.name_any();
    let rendering = render(&config.spec);
    let progress: Vec<NodeProgress> = nodes
        .iter()
        .map(|node| {
            let state = states
                .get(node)
                .filter(|state| state.spec.config_name == name);
            let status = state.and_then(|state| state.status.as_ref());
            NodeProgress {
                node: (*node).to_owned(),
                desired_hash: state.map(|state| state.spec.hash.clone()),
                applied_hash: status.and_then(|status| status.applied_hash.clone()),
                phase: state.and_then(|state| state.current_phase()),
            }
        })
        .collect();
    let errors: BTreeMap<String, String> = nodes
        .iter()
        .filter_map(|node| {
            let state = states.get(node)?;
            // An error reported on an earlier spec is not this one's.
            if state.current_phase() == Some(NodePhase::Pending) {
                return None;
            }
            let error = state.status.as_ref()?.last_error.clone()?;
            Some(((*node).to_owned(), error))
        })
        .collect();
    let (wave, target) = match &rendering {
        Ok(rendering) => {
            let rollout = &config.spec.rollout;
            let wave = next_wave(
                &rendering.hash,
                max_unavailable(&rollout.max_unavailable, nodes.len()),
                rollout.paused,
                &progress,
            );
            // The rollout of a rendering begins when no node has been given it yet.
            let beginning = !progress
                .iter()
                .any(|node| node.desired_hash.as_deref() == Some(rendering.hash.as_str()));
            start_wave(config, rendering, &wave, beginning, states, plan);
            (wave, Ok(rendering.hash.as_str()))
        }
        // Admission refuses what cannot be rendered; a spec that slips through is reported, not applied.
        Err(error) => (Wave::default(), Err(error.to_string())),
    };
    let observation = ConfigObservation {
        generation: config.metadata.generation,
        rendering: target.as_ref().map(|hash| *hash).map_err(String::as_str),
        nodes: &progress,
        errors: &errors,
        conflicts,
        wave: &wave,
    };
    let previous = config.status.as_ref();
    let status = config_status(&observation, previous, now);
    if previous != Some(&status) {
        let old_conditions = previous
            .map(|status| status.conditions.as_slice())
            .unwrap_or_default();
        for condition in transitions(old_conditions, &status.conditions) {
            let was_known = old_conditions
                .iter()
                .any(|old| old.type_ == condition.type_);
            if condition.status == "False" && !was_known {
                continue; // a condition that starts out False is no news
            }
            let notice = if is_warning(&condition.type_, &condition.status, &condition.reason) {
                Notice::warning(&condition.reason, condition.message.clone())
            } else {
                Notice::normal(&condition.reason, condition.message.clone())
            };
            plan.events.push(PlannedEvent {
                config: name.clone(),
                notice,
            });
        }
        plan.statuses.push((name, status));
    }
}

/// Gives the wave's nodes the rendering; the first wave of a rollout with an Event naming its nodes (later waves
/// show in the config's status and the states: an Event each would cost a write per wave).
fn start_wave(
    config: &RktNodeConfig,
    rendering: &Rendering,
    wave: &Wave,
    beginning: bool,
    states: &BTreeMap<&str, &RktNodeState>,
    plan: &mut Plan,
) {
    let name = config.name_any();
    let spec = rendering.node_state_spec(&name);
    for node in &wave.start {
        if states
            .get(node.as_str())
            .is_some_and(|state| state.metadata.deletion_timestamp.is_some())
        {
            continue; // the old state is still being cleaned up; the node gets its new one once that is gone
        }
        let mut state = RktNodeState::new(node, spec.clone());
        state.metadata = ObjectMeta {
            name: Some(node.clone()),
            labels: Some(BTreeMap::from([(CONFIG_LABEL.to_owned(), name.clone())])),
            owner_references: config.controller_owner_ref(&()).map(|owner| vec![owner]),
            finalizers: Some(vec![AGENT_CLEANUP_FINALIZER.to_owned()]),
            ..ObjectMeta::default()
        };
        plan.apply_states.push(state);
    }
    if beginning && !wave.start.is_empty() {
        plan.events.push(PlannedEvent {
            config: name,
            notice: Notice::normal(
                "UpdatingNodes",
                format!(
                    "Rolling out rendering {}: first to {}; {} nodes wait.",
                    rendering.hash,
                    name_some(&wave.start, 5),
                    wave.waiting
                ),
            ),
        });
    }
}

fn is_warning(type_: &str, status: &str, reason: &str) -> bool {
    use super::config_status::condition::{CONFLICT, DEGRADED};
    ((type_ == DEGRADED || type_ == CONFLICT) && status == "True") || reason == "Halted"
}

fn state_name(state: &RktNodeState) -> &str {
    state.metadata.name.as_deref().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{api::RktNodeStateStatus, events::EventType};

    fn now() -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(1_000).unwrap())
    }

    fn config(name: &str, spec: serde_json::Value) -> Arc<RktNodeConfig> {
        let mut spec = spec;
        spec["rkt"] = serde_json::json!({"version": "1.30.0"});
        let mut config = RktNodeConfig::new(name, serde_json::from_value(spec).unwrap());
        config.metadata.uid = Some(format!("uid-{name}"));
        config.metadata.generation = Some(1);
        Arc::new(config)
    }

    fn node(name: &str, labels: &[(&str, &str)]) -> Arc<PartialObjectMeta<Node>> {
        let mut node = PartialObjectMeta::<Node>::default();
        node.metadata.name = Some(name.into());
        node.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        Arc::new(node)
    }

    /// The state the controller would write, as the agent reports it applied.
    fn applied_state(state: &RktNodeState) -> Arc<RktNodeState> {
        let mut state = state.clone();
        state.status = Some(RktNodeStateStatus {
            phase: Some(NodePhase::Applied),
            applied_hash: Some(state.spec.hash.clone()),
            ..RktNodeStateStatus::default()
        });
        Arc::new(state)
    }

    fn snapshot(
        configs: &[Arc<RktNodeConfig>],
        nodes: &[Arc<PartialObjectMeta<Node>>],
        states: &[Arc<RktNodeState>],
    ) -> Snapshot {
        Snapshot {
            configs: configs.to_vec(),
            nodes: nodes.to_vec(),
            states: states.to_vec(),
        }
    }

    #[test]
    fn a_new_config_starts_max_unavailable_nodes_in_order() {
        let configs = [config(
            "c",
            serde_json::json!({"rollout": {"maxUnavailable": 2}}),
        )];
        let nodes: Vec<_> = ["n3", "n1", "n2"].iter().map(|n| node(n, &[])).collect();
        let plan = plan(&snapshot(&configs, &nodes, &[]), &now());
        let started: Vec<_> = plan.apply_states.iter().map(|s| s.name_any()).collect();
        assert_eq!(started, ["n1", "n2"]);
        let state = &plan.apply_states[0];
        assert_eq!(state.labels()[CONFIG_LABEL], "c");
        assert_eq!(state.owner_references()[0].uid, "uid-c");
        assert_eq!(plan.statuses.len(), 1);
        assert!(
            plan.events
                .iter()
                .any(|e| e.notice.reason == "UpdatingNodes")
        );
    }

    #[test]
    fn a_converged_cluster_needs_no_writes() {
        let configs = [config("c", serde_json::json!({}))];
        let nodes = [node("n1", &[])];
        let first = plan(&snapshot(&configs, &nodes, &[]), &now());
        let states = [applied_state(&first.apply_states[0])];
        let second = plan(&snapshot(&configs, &nodes, &states), &now());
        // Give the config the status the second pass computed, as the apiserver would hold it.
        let mut converged = (*configs[0]).clone();
        converged.status = Some(second.statuses[0].1.clone());
        let third = plan(&snapshot(&[Arc::new(converged)], &nodes, &states), &now());
        assert!(
            third.apply_states.is_empty()
                && third.delete_states.is_empty()
                && third.statuses.is_empty()
        );
        assert!(third.events.is_empty());
    }

    #[test]
    fn a_rollback_reported_on_an_earlier_spec_does_not_halt_the_current_one() {
        let configs = [config(
            "c",
            serde_json::json!({"rollout": {"maxUnavailable": 1}}),
        )];
        let nodes = [node("n1", &[]), node("n2", &[])];
        let first = plan(&snapshot(&configs, &nodes, &[]), &now());
        // n1 has the current spec; its agent's last status rolled back an earlier one.
        let rolled_back = |observed: &str| {
            let mut state = first.apply_states[0].clone();
            state.status = Some(RktNodeStateStatus {
                phase: Some(NodePhase::RolledBack),
                observed_hash: Some(observed.to_owned()),
                last_error: Some("the earlier spec broke GetInfo".to_owned()),
                ..RktNodeStateStatus::default()
            });
            Arc::new(state)
        };
        let degraded = |plan: &Plan| {
            let condition = plan.statuses[0]
                .1
                .conditions
                .iter()
                .find(|c| c.type_ == "Degraded")
                .cloned()
                .unwrap();
            (condition.status, condition.message)
        };

        let stale = plan(
            &snapshot(&configs, &nodes, &[rolled_back("earlier")]),
            &now(),
        );
        assert_eq!(stale.apply_states.len(), 0, "n1 is still updating");
        let (status, message) = degraded(&stale);
        assert_eq!(status, "False", "{message}");

        let current_hash = first.apply_states[0].spec.hash.clone();
        let current = plan(
            &snapshot(&configs, &nodes, &[rolled_back(&current_hash)]),
            &now(),
        );
        assert!(current.apply_states.is_empty(), "the rollout halts at n1");
        let (status, message) = degraded(&current);
        assert_eq!(status, "True");
        assert!(
            message.contains("the earlier spec broke GetInfo"),
            "{message}"
        );
    }

    #[test]
    fn an_unselected_or_vanished_node_loses_its_state() {
        let configs = [config(
            "c",
            serde_json::json!({"nodeSelector": {"matchLabels": {"pool": "a"}}}),
        )];
        let nodes = [node("n1", &[("pool", "a")])];
        let first = plan(&snapshot(&configs, &nodes, &[]), &now());
        let state = applied_state(&first.apply_states[0]);
        let relabelled = [node("n1", &[("pool", "b")])];
        assert_eq!(
            plan(
                &snapshot(&configs, &relabelled, std::slice::from_ref(&state)),
                &now()
            )
            .delete_states,
            ["n1"]
        );
        assert_eq!(
            plan(&snapshot(&configs, &[], &[state]), &now()).delete_states,
            ["n1"]
        );
    }

    #[test]
    fn a_state_whose_config_is_gone_is_left_to_the_garbage_collector() {
        let configs = [config(
            "c",
            serde_json::json!({"rollout": {"maxUnavailable": 2}}),
        )];
        let nodes = [node("n1", &[]), node("n2", &[])];
        let first = plan(&snapshot(&configs, &nodes, &[]), &now());
        let owned = applied_state(&first.apply_states[0]);
        let mut orphaned = (*applied_state(&first.apply_states[1])).clone();
        // What the garbage collector leaves after `kubectl delete --cascade=orphan`.
        orphaned.metadata.owner_references = None;
        let gone = plan(&snapshot(&[], &nodes, &[owned, Arc::new(orphaned)]), &now());
        assert_eq!(gone.delete_states, ["n2"]);
        // Both nodes keep their agent until the states are gone.
        assert_eq!(gone.releasing_nodes, ["n1", "n2"]);
        // A foreground deletion: the config stays, being deleted, until the collector has deleted its states.
        let mut terminating = (*configs[0]).clone();
        terminating.metadata.deletion_timestamp = Some(now());
        let owned = applied_state(&first.apply_states[0]);
        let going = plan(
            &snapshot(&[Arc::new(terminating)], &nodes, &[owned]),
            &now(),
        );
        assert!(going.delete_states.is_empty() && going.apply_states.is_empty());
        assert_eq!(going.releasing_nodes, ["n1"]);
    }

    #[test]
    fn a_state_being_deleted_waits_for_its_agent_unless_its_node_is_gone() {
        let configs = [config(
            "c",
            serde_json::json!({"nodeSelector": {"matchLabels": {"pool": "a"}}}),
        )];
        let nodes = [node("n1", &[("pool", "a")])];
        let first = plan(&snapshot(&configs, &nodes, &[]), &now());
        assert_eq!(
            first.apply_states[0].finalizers(),
            [AGENT_CLEANUP_FINALIZER]
        );
        let mut terminating = (*applied_state(&first.apply_states[0])).clone();
        terminating.metadata.deletion_timestamp = Some(now());
        terminating.metadata.resource_version = Some("7".into());
        terminating
            .metadata
            .finalizers
            .as_mut()
            .unwrap()
            .push("example.com/other".into());
        let terminating = Arc::new(terminating);

        // The node is still there: its agent must clean up, so it keeps its agent and the state is left alone.
        let relabelled = [node("n1", &[("pool", "b")])];
        let waiting = plan(
            &snapshot(&configs, &relabelled, std::slice::from_ref(&terminating)),
            &now(),
        );
        assert!(waiting.delete_states.is_empty());
        assert!(waiting.release_states.is_empty());
        assert_eq!(waiting.releasing_nodes, ["n1"]);
        assert_eq!(
            waiting.agent_nodes.iter().collect::<Vec<_>>(),
            ["n1"],
            "a releasing node keeps its agent"
        );
        // Selected again while the old state goes: no write until it is gone.
        let reselected = plan(
            &snapshot(&configs, &nodes, std::slice::from_ref(&terminating)),
            &now(),
        );
        assert!(reselected.apply_states.is_empty());

        // The node is gone: no agent will come, so the controller lets the state go, keeping other finalizers.
        let gone = plan(&snapshot(&configs, &[], &[terminating]), &now());
        assert_eq!(
            gone.release_states,
            [Release {
                name: "n1".into(),
                resource_version: Some("7".into()),
                finalizers: vec!["example.com/other".into()],
            }]
        );
        assert!(gone.releasing_nodes.is_empty());
        assert!(gone.agent_nodes.is_empty());
    }

    #[test]
    fn a_tie_touches_no_node_and_reports_conflict_on_both() {
        let configs = [
            config("a", serde_json::json!({})),
            config("b", serde_json::json!({})),
        ];
        let nodes = [node("n1", &[])];
        let plan = plan(&snapshot(&configs, &nodes, &[]), &now());
        assert!(plan.apply_states.is_empty());
        assert!(plan.delete_states.is_empty());
        assert!(
            plan.agent_nodes.contains("n1"),
            "a tied node keeps its agent"
        );
        for (_, status) in &plan.statuses {
            let conflict = status
                .conditions
                .iter()
                .find(|c| c.type_ == "Conflict")
                .unwrap();
            assert_eq!(conflict.status, "True");
            assert!(conflict.message.contains("n1"));
        }
        assert_eq!(
            plan.events
                .iter()
                .filter(
                    |e| e.notice.reason == "TiedPriority" && e.notice.type_ == EventType::Warning
                )
                .count(),
            2
        );
    }

    #[test]
    fn a_node_moving_to_another_config_is_rolled_like_a_new_one() {
        let old = config("old", serde_json::json!({}));
        let first = plan(
            &snapshot(std::slice::from_ref(&old), &[node("n1", &[])], &[]),
            &now(),
        );
        let state = applied_state(&first.apply_states[0]);
        let new = config(
            "new",
            serde_json::json!({"priority": 5, "network": {"contained": {"bridge": {"mtu": 1400}}}}),
        );
        let second = plan(&snapshot(&[old, new], &[node("n1", &[])], &[state]), &now());
        assert_eq!(second.apply_states.len(), 1);
        assert_eq!(second.apply_states[0].spec.config_name, "new");
        assert_eq!(second.apply_states[0].owner_references()[0].uid, "uid-new");
    }

    #[test]
    fn a_config_that_cannot_be_rendered_is_degraded_and_touches_no_node() {
        // Admission refuses this; a config written around admission must still not crash or reach nodes.
        let broken = config(
            "broken",
            serde_json::json!({"network": {"mode": "KubernetesCNI"}}),
        );
        let plan = plan(&snapshot(&[broken], &[node("n1", &[])], &[]), &now());
        assert!(plan.apply_states.is_empty());
        let status = &plan.statuses[0].1;
        let degraded = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Degraded")
            .unwrap();
        assert_eq!(
            (degraded.status.as_str(), degraded.reason.as_str()),
            ("True", "RenderFailed")
        );
        assert!(
            degraded.message.contains("spec.network.kubernetesCNI"),
            "{}",
            degraded.message
        );
        assert!(
            plan.events
                .iter()
                .any(|e| e.notice.type_ == EventType::Warning && e.notice.reason == "RenderFailed")
        );
    }
}
