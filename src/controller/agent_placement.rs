//! Where the agents run: on every node that some config selects, and on every node whose agent still has to take
//! our files off; nowhere else. The controller marks those nodes with the label [`AGENT_LABEL`] (its value the
//! DaemonSet's name) and the DaemonSet selects that one label, so its template is the same whichever nodes, and
//! however many, are selected or releasing: the agents roll only when their own settings change, and the DaemonSet
//! stays the same size at any number of nodes.

use std::{collections::BTreeSet, sync::Arc};

use k8s_openapi::api::core::v1::Node;
use kube::{ResourceExt, core::PartialObjectMeta};
use serde_json::json;

/// The label that puts an agent on a node; its value is the agent DaemonSet's name.
pub const AGENT_LABEL: &str = "rktnetes.io/agent";

/// A change of one node's agent label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeLabel {
    pub node: String,
    /// Whether the node gets the label (and so an agent) or loses it.
    pub agent: bool,
}

impl NodeLabel {
    /// The JSON merge patch that makes the change, labelling the node for the DaemonSet `agent_name`.
    pub fn patch(&self, agent_name: &str) -> serde_json::Value {
        let value = self.agent.then_some(agent_name);
        json!({"metadata": {"labels": {AGENT_LABEL: value}}})
    }
}

/// The label changes that give an agent of the DaemonSet `agent_name` to exactly the nodes in `agent_nodes`: the
/// label added where it is missing (or names another DaemonSet), removed where it names ours and no agent is
/// needed. A node labelled for another DaemonSet that needs none of ours is left alone. In node order.
pub fn label_changes(
    nodes: &[Arc<PartialObjectMeta<Node>>],
    agent_nodes: &BTreeSet<String>,
    agent_name: &str,
) -> Vec<NodeLabel> {
    let mut changes: Vec<NodeLabel> = nodes
        .iter()
        .filter_map(|node| {
            let name = node.name_any();
            let labelled = node.labels().get(AGENT_LABEL).map(String::as_str) == Some(agent_name);
            let needed = agent_nodes.contains(&name);
            (labelled != needed).then_some(NodeLabel {
                node: name,
                agent: needed,
            })
        })
        .collect();
    changes.sort_by(|a, b| a.node.cmp(&b.node));
    changes
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn node(name: &str, label: Option<&str>) -> Arc<PartialObjectMeta<Node>> {
        let labels =
            label.map(|value| BTreeMap::from([(AGENT_LABEL.to_owned(), value.to_owned())]));
        Arc::new(PartialObjectMeta {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                labels,
                ..ObjectMeta::default()
            },
            ..PartialObjectMeta::default()
        })
    }

    fn names(nodes: &[&str]) -> BTreeSet<String> {
        nodes.iter().map(|node| (*node).to_owned()).collect()
    }

    #[test]
    fn nodes_that_need_an_agent_get_the_label_and_the_others_lose_it() {
        let nodes = [
            node("keeps", Some("rktnetes-agent")),
            node("gets", None),
            node("loses", Some("rktnetes-agent")),
            node("unselected", None),
            node("taken-over", Some("another-agent")),
            node("someone-elses", Some("another-agent")),
        ];
        let changes = label_changes(
            &nodes,
            &names(&["keeps", "gets", "taken-over"]),
            "rktnetes-agent",
        );
        assert_eq!(
            changes,
            [
                NodeLabel {
                    node: "gets".into(),
                    agent: true
                },
                NodeLabel {
                    node: "loses".into(),
                    agent: false
                },
                NodeLabel {
                    node: "taken-over".into(),
                    agent: true
                },
            ]
        );
    }

    #[test]
    fn a_converged_cluster_needs_no_label_change() {
        let nodes = [node("a", Some("rktnetes-agent")), node("b", None)];
        assert!(label_changes(&nodes, &names(&["a"]), "rktnetes-agent").is_empty());
    }

    #[test]
    fn the_patch_sets_or_removes_only_the_agent_label() {
        let add = NodeLabel {
            node: "n".into(),
            agent: true,
        };
        assert_eq!(
            add.patch("rktnetes-agent"),
            json!({"metadata": {"labels": {"rktnetes.io/agent": "rktnetes-agent"}}})
        );
        let remove = NodeLabel {
            node: "n".into(),
            agent: false,
        };
        assert_eq!(
            remove.patch("rktnetes-agent"),
            json!({"metadata": {"labels": {"rktnetes.io/agent": null}}})
        );
    }
}
