//! A RktNodeConfig's status, from what its nodes report: the counts and the four conditions a person (or a GitOps
//! health check) reads.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::rollout::{Halt, NodeProgress, Wave};
use crate::{
    api::RktNodeConfigStatus,
    conditions::{ConditionUpdate, merge_conditions, name_some},
};

/// Condition types of a RktNodeConfig.
pub mod condition {
    pub const READY: &str = "Ready";
    pub const PROGRESSING: &str = "Progressing";
    pub const DEGRADED: &str = "Degraded";
    pub const CONFLICT: &str = "Conflict";
}

/// The reason of every condition of a config that cannot be rendered.
const RENDER_FAILED: &str = "RenderFailed";

/// How many names a condition message lists before it says "and N more".
const NAMES_IN_MESSAGE: usize = 5;

/// Everything the status of one config is made from.
pub struct ConfigObservation<'a> {
    pub generation: Option<i64>,
    /// The hash of the config's rendering, or why it could not be rendered.
    pub rendering: Result<&'a str, &'a str>,
    /// The nodes the config wins.
    pub nodes: &'a [NodeProgress],
    /// Why degraded nodes failed, by node.
    pub errors: &'a BTreeMap<String, String>,
    /// Nodes the config selects at the same priority as other configs, with all the tied configs.
    pub conflicts: &'a [(String, Vec<String>)],
    pub wave: &'a Wave,
}

/// The status `observation` calls for; conditions keep their transition times from `previous`.
pub fn config_status(
    observation: &ConfigObservation<'_>,
    previous: Option<&RktNodeConfigStatus>,
    now: &Time,
) -> RktNodeConfigStatus {
    let target = observation.rendering.ok();
    let nodes = observation.nodes;
    let matched = nodes.len();
    let updated = nodes
        .iter()
        .filter(|node| node.desired_hash.as_deref() == target)
        .count();
    let ready = nodes.iter().filter(|node| node.is_applied(target)).count();
    let degraded: Vec<&str> = nodes
        .iter()
        .filter(|node| node.is_degraded())
        .map(|node| node.node.as_str())
        .collect();

    let updates = match observation.rendering {
        Ok(_) => [
            ready_condition(matched, ready, observation.conflicts.len()),
            progressing_condition(observation, matched, updated, ready),
            degraded_condition(&degraded, observation.errors),
            conflict_condition(observation.conflicts),
        ],
        Err(error) => {
            let message = format!("This config cannot be rendered, so no node gets it: {error}");
            [
                ConditionUpdate::new(condition::READY, false, RENDER_FAILED, message.clone()),
                ConditionUpdate::new(
                    condition::PROGRESSING,
                    false,
                    RENDER_FAILED,
                    message.clone(),
                ),
                ConditionUpdate::new(condition::DEGRADED, true, RENDER_FAILED, message),
                conflict_condition(observation.conflicts),
            ]
        }
    };
    let previous_conditions = previous
        .map(|status| status.conditions.as_slice())
        .unwrap_or_default();
    RktNodeConfigStatus {
        observed_generation: observation.generation,
        config_hash: target.map(str::to_owned),
        matched_nodes: count(matched),
        updated_nodes: count(updated),
        ready_nodes: count(ready),
        degraded_nodes: count(degraded.len()),
        conditions: merge_conditions(previous_conditions, &updates, observation.generation, now),
    }
}

fn count(value: usize) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

/// Why a config whose every selected node is tied with another config applies to none: it owns no node, so it
/// cannot claim that its nodes are ready or its rollout complete.
const ALL_NODES_IN_CONFLICT: &str = "AllNodesInConflict";

fn all_nodes_in_conflict(type_: &'static str) -> ConditionUpdate {
    ConditionUpdate::new(
        type_,
        false,
        ALL_NODES_IN_CONFLICT,
        "Every node this config selects is selected at the same priority by another RktNodeConfig, so it applies to \
         none of them (see the Conflict condition).",
    )
}

fn ready_condition(matched: usize, ready: usize, conflicts: usize) -> ConditionUpdate {
    if matched == 0 && conflicts == 0 {
        ConditionUpdate::new(
            condition::READY,
            true,
            "NoNodesSelected",
            "No node matches spec.nodeSelector, so there is nothing to apply.",
        )
    } else if matched == 0 {
        all_nodes_in_conflict(condition::READY)
    } else if ready == matched {
        ConditionUpdate::new(
            condition::READY,
            true,
            "AllNodesReady",
            format!(
                "All {matched} selected nodes applied this config and report a healthy rkt API service."
            ),
        )
    } else {
        ConditionUpdate::new(
            condition::READY,
            false,
            "NodesNotReady",
            format!(
                "{ready} of {matched} selected nodes applied this config and report a healthy rkt API service."
            ),
        )
    }
}

fn progressing_condition(
    observation: &ConfigObservation<'_>,
    matched: usize,
    updated: usize,
    ready: usize,
) -> ConditionUpdate {
    let wave = observation.wave;
    match &wave.halt {
        Some(Halt::Paused) => ConditionUpdate::new(
            condition::PROGRESSING,
            false,
            "Paused",
            format!(
                "spec.rollout.paused is set: {} nodes wait for this config. Unset it to go on.",
                wave.waiting
            ),
        ),
        Some(Halt::Degraded(nodes)) => ConditionUpdate::new(
            condition::PROGRESSING,
            false,
            "Halted",
            format!(
                "The rollout is halted because {} failed to apply this config; {} nodes wait. Fix the node or change \
                 the config.",
                name_some(nodes, NAMES_IN_MESSAGE),
                wave.waiting
            ),
        ),
        None if matched == 0 && !observation.conflicts.is_empty() => {
            all_nodes_in_conflict(condition::PROGRESSING)
        }
        None if ready == matched => ConditionUpdate::new(
            condition::PROGRESSING,
            false,
            "Complete",
            format!("All {matched} selected nodes run this config."),
        ),
        None => ConditionUpdate::new(
            condition::PROGRESSING,
            true,
            "RollingOut",
            format!("{updated} of {matched} nodes updated, {ready} ready."),
        ),
    }
}

fn degraded_condition(degraded: &[&str], errors: &BTreeMap<String, String>) -> ConditionUpdate {
    if degraded.is_empty() {
        return ConditionUpdate::new(
            condition::DEGRADED,
            false,
            "NoDegradedNodes",
            "No node failed to apply this config.",
        );
    }
    let details: Vec<String> = degraded
        .iter()
        .map(|node| match errors.get(*node) {
            Some(error) => format!("{node}: {error}"),
            None => (*node).to_owned(),
        })
        .collect();
    ConditionUpdate::new(
        condition::DEGRADED,
        true,
        "NodesDegraded",
        format!(
            "{} nodes failed to apply this config ({}). See their RktNodeStates.",
            degraded.len(),
            name_some(&details, NAMES_IN_MESSAGE)
        ),
    )
}

fn conflict_condition(conflicts: &[(String, Vec<String>)]) -> ConditionUpdate {
    if conflicts.is_empty() {
        return ConditionUpdate::new(
            condition::CONFLICT,
            false,
            "NoConflict",
            "No other config ties with this one.",
        );
    }
    let nodes: Vec<&str> = conflicts.iter().map(|(node, _)| node.as_str()).collect();
    let mut configs: Vec<&str> = conflicts
        .iter()
        .flat_map(|(_, configs)| configs.iter().map(String::as_str))
        .collect();
    configs.sort_unstable();
    configs.dedup();
    ConditionUpdate::new(
        condition::CONFLICT,
        true,
        "TiedPriority",
        format!(
            "Nodes {} are selected at the same priority by RktNodeConfigs {}; they are left as they are. Give one \
             config a higher spec.priority or narrow its spec.nodeSelector.",
            name_some(&nodes, NAMES_IN_MESSAGE),
            configs.join(", ")
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::NodePhase;

    fn now() -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(1_000).unwrap())
    }

    fn progress(name: &str, desired: &str, applied: &str, phase: NodePhase) -> NodeProgress {
        NodeProgress {
            node: name.into(),
            desired_hash: Some(desired.into()),
            applied_hash: Some(applied.into()),
            phase: Some(phase),
        }
    }

    fn condition<'a>(
        status: &'a RktNodeConfigStatus,
        type_: &str,
    ) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
        status.conditions.iter().find(|c| c.type_ == type_).unwrap()
    }

    #[test]
    fn a_converged_config_is_ready_and_complete() {
        let nodes = [
            progress("a", "h", "h", NodePhase::Applied),
            progress("b", "h", "h", NodePhase::Applied),
        ];
        let observation = ConfigObservation {
            generation: Some(3),
            rendering: Ok("h"),
            nodes: &nodes,
            errors: &BTreeMap::new(),
            conflicts: &[],
            wave: &Wave::default(),
        };
        let status = config_status(&observation, None, &now());
        assert_eq!(
            (
                status.matched_nodes,
                status.updated_nodes,
                status.ready_nodes,
                status.degraded_nodes
            ),
            (2, 2, 2, 0)
        );
        assert_eq!(status.observed_generation, Some(3));
        assert_eq!(condition(&status, "Ready").status, "True");
        assert_eq!(condition(&status, "Progressing").reason, "Complete");
        assert_eq!(condition(&status, "Degraded").status, "False");
        assert_eq!(condition(&status, "Conflict").status, "False");
    }

    #[test]
    fn a_degraded_node_is_named_with_its_error() {
        let nodes = [
            progress("a", "h", "g", NodePhase::RolledBack),
            progress("b", "g", "g", NodePhase::Applied),
        ];
        let errors = BTreeMap::from([(
            "a".to_string(),
            "rkt API service failed its health check".to_string(),
        )]);
        let wave = Wave {
            start: vec![],
            halt: Some(Halt::Degraded(vec!["a".into()])),
            waiting: 1,
        };
        let observation = ConfigObservation {
            generation: Some(1),
            rendering: Ok("h"),
            nodes: &nodes,
            errors: &errors,
            conflicts: &[],
            wave: &wave,
        };
        let status = config_status(&observation, None, &now());
        let degraded = condition(&status, "Degraded");
        assert_eq!(degraded.status, "True");
        assert!(
            degraded
                .message
                .contains("a: rkt API service failed its health check"),
            "{}",
            degraded.message
        );
        assert_eq!(condition(&status, "Progressing").reason, "Halted");
        assert_eq!(condition(&status, "Ready").status, "False");
    }

    #[test]
    fn a_conflict_names_the_nodes_and_configs() {
        let conflicts = vec![("n1".to_string(), vec!["x".to_string(), "y".to_string()])];
        let observation = ConfigObservation {
            generation: Some(1),
            rendering: Ok("h"),
            nodes: &[],
            errors: &BTreeMap::new(),
            conflicts: &conflicts,
            wave: &Wave::default(),
        };
        let status = config_status(&observation, None, &now());
        let conflict = condition(&status, "Conflict");
        assert_eq!(conflict.status, "True");
        assert!(
            conflict.message.contains("n1") && conflict.message.contains("x, y"),
            "{}",
            conflict.message
        );
        // It owns no node: neither ready nor complete, and it says why.
        for type_ in ["Ready", "Progressing"] {
            let update = condition(&status, type_);
            assert_eq!(
                (update.status.as_str(), update.reason.as_str()),
                ("False", "AllNodesInConflict"),
                "{type_}: {}",
                update.message
            );
        }
    }
}
