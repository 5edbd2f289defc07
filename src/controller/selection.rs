//! Which config each node gets: the highest priority among the configs that select it. A tie at the top priority
//! is a conflict, and the node keeps what it has.

use std::collections::BTreeMap;

use kube::core::{Selector, SelectorExt};

use crate::api::RktNodeConfig;

/// The outcome of selection for one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Assignment {
    /// No config selects the node: it keeps nothing of ours.
    Unselected,
    /// This config wins the node.
    Won(String),
    /// These configs select the node at the same, highest priority (sorted by name).
    Tied(Vec<String>),
}

/// The configs of a pass with their selectors, made once and matched against every node.
pub struct Selection<'a> {
    configs: Vec<(&'a RktNodeConfig, Selector)>,
}

impl<'a> Selection<'a> {
    pub fn new(configs: impl IntoIterator<Item = &'a RktNodeConfig>) -> Self {
        Self {
            configs: configs
                .into_iter()
                .map(|config| (config, config.spec.node_selector.selector()))
                .collect(),
        }
    }

    /// Picks the config that wins a node with these labels.
    pub fn assign(&self, labels: &BTreeMap<String, String>) -> Assignment {
        assign(
            self.configs
                .iter()
                .filter(|(_, selector)| selector.matches(labels))
                .map(|(config, _)| *config),
        )
    }
}

/// The winner among the configs that select a node.
fn assign<'a>(selecting: impl IntoIterator<Item = &'a RktNodeConfig>) -> Assignment {
    let mut best: Option<i32> = None;
    let mut winners: Vec<String> = Vec::new();
    for config in selecting {
        let name = config.metadata.name.clone().unwrap_or_default();
        match best {
            Some(priority) if config.spec.priority < priority => {}
            Some(priority) if config.spec.priority == priority => winners.push(name),
            _ => {
                best = Some(config.spec.priority);
                winners = vec![name];
            }
        }
    }
    winners.sort();
    match winners.len() {
        0 => Assignment::Unselected,
        1 => Assignment::Won(winners.remove(0)),
        _ => Assignment::Tied(winners),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{
        NodeSelector, NodeSelectorOperator, NodeSelectorRequirement, RktNodeConfigSpec,
    };

    fn config(name: &str, priority: i32, selector: NodeSelector) -> RktNodeConfig {
        let spec: RktNodeConfigSpec =
            serde_json::from_value(serde_json::json!({"rkt": {"version": "1.30.0"}})).unwrap();
        RktNodeConfig::new(
            name,
            RktNodeConfigSpec {
                priority,
                node_selector: selector,
                ..spec
            },
        )
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn match_labels(pairs: &[(&str, &str)]) -> NodeSelector {
        NodeSelector {
            match_labels: labels(pairs),
            ..NodeSelector::default()
        }
    }

    #[test]
    fn an_empty_selector_selects_every_node() {
        let configs = [config("all", 0, NodeSelector::default())];
        assert_eq!(
            Selection::new(&configs).assign(&labels(&[])),
            Assignment::Won("all".into())
        );
        assert_eq!(
            Selection::new(&configs).assign(&labels(&[("a", "b")])),
            Assignment::Won("all".into())
        );
    }

    #[test]
    fn a_node_no_config_selects_is_unselected() {
        let configs = [config("gpu", 0, match_labels(&[("pool", "gpu")]))];
        assert_eq!(
            Selection::new(&configs).assign(&labels(&[("pool", "cpu")])),
            Assignment::Unselected
        );
        assert_eq!(
            Selection::new(&[]).assign(&labels(&[("pool", "cpu")])),
            Assignment::Unselected
        );
    }

    #[test]
    fn the_highest_priority_wins() {
        let configs = [
            config("base", 0, NodeSelector::default()),
            config("special", 10, match_labels(&[("pool", "gpu")])),
            config("low", -5, NodeSelector::default()),
        ];
        assert_eq!(
            Selection::new(&configs).assign(&labels(&[("pool", "gpu")])),
            Assignment::Won("special".into())
        );
        assert_eq!(
            Selection::new(&configs).assign(&labels(&[("pool", "cpu")])),
            Assignment::Won("base".into())
        );
    }

    #[test]
    fn a_tie_at_the_top_priority_is_a_conflict_naming_both_configs() {
        let configs = [
            config("zeta", 5, NodeSelector::default()),
            config("alpha", 5, match_labels(&[("pool", "gpu")])),
            config("low", 1, NodeSelector::default()),
        ];
        assert_eq!(
            Selection::new(&configs).assign(&labels(&[("pool", "gpu")])),
            Assignment::Tied(vec!["alpha".into(), "zeta".into()])
        );
        assert_eq!(
            Selection::new(&configs).assign(&labels(&[])),
            Assignment::Won("zeta".into())
        );
    }

    #[test]
    fn a_tie_below_the_winner_is_no_conflict() {
        let configs = [
            config("a", 1, NodeSelector::default()),
            config("b", 1, NodeSelector::default()),
            config("top", 2, NodeSelector::default()),
        ];
        assert_eq!(
            Selection::new(&configs).assign(&labels(&[])),
            Assignment::Won("top".into())
        );
    }

    #[test]
    fn expressions_select_by_operator() {
        let selector = |operator, values: &[&str]| NodeSelector {
            match_expressions: vec![NodeSelectorRequirement {
                key: "zone".into(),
                operator,
                values: values.iter().map(|v| v.to_string()).collect(),
            }],
            ..NodeSelector::default()
        };
        use NodeSelectorOperator::{DoesNotExist, Exists, In, NotIn};
        // (operator, values, the node's zone label, selected)
        let cases = [
            (In, &["a"][..], Some("a"), true),
            (In, &["a"], Some("b"), false),
            (NotIn, &["a"], Some("b"), true),
            (NotIn, &["a"], None, true),
            (NotIn, &["a"], Some("a"), false),
            (Exists, &[], Some("b"), true),
            (Exists, &[], None, false),
            (DoesNotExist, &[], None, true),
            (DoesNotExist, &[], Some("a"), false),
        ];
        for (operator, values, zone, selected) in cases {
            let configs = [config("c", 0, selector(operator, values))];
            let node = match zone {
                Some(zone) => labels(&[("zone", zone)]),
                None => labels(&[]),
            };
            let expected = if selected {
                Assignment::Won("c".into())
            } else {
                Assignment::Unselected
            };
            assert_eq!(
                Selection::new(&configs).assign(&node),
                expected,
                "{operator:?} {values:?} on zone {zone:?}"
            );
        }
    }
}
