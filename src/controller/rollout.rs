//! Which nodes get a config's new rendering next. Pure: the controller feeds it what the RktNodeStates say.
//!
//! A node is unavailable while it is updating (its desired state is not yet applied) or degraded. A new node is
//! started only while fewer than `maxUnavailable` nodes of the config are unavailable; a node that degraded on the
//! current rendering halts the rollout until it recovers or the config changes; `paused` halts it too. Nodes are
//! taken in name order, so a rollout is repeatable.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::api::NodePhase;

/// What the controller knows of one node of a config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeProgress {
    /// The node's name.
    pub node: String,
    /// The hash in its RktNodeState's spec, if it has one.
    pub desired_hash: Option<String>,
    /// The hash its agent reports as applied.
    pub applied_hash: Option<String>,
    /// The phase its agent reports.
    pub phase: Option<NodePhase>,
}

impl NodeProgress {
    /// The agent reported a failure.
    pub fn is_degraded(&self) -> bool {
        matches!(
            self.phase,
            Some(NodePhase::Degraded | NodePhase::RolledBack)
        )
    }

    /// The node was given a desired state that its agent has not applied yet.
    pub fn is_updating(&self) -> bool {
        self.desired_hash.is_some()
            && !self.is_degraded()
            && !self.is_applied(self.desired_hash.as_deref())
    }

    /// The agent applied `hash` and says so.
    pub fn is_applied(&self, hash: Option<&str>) -> bool {
        hash.is_some()
            && self.applied_hash.as_deref() == hash
            && self.phase == Some(NodePhase::Applied)
    }

    fn is_unavailable(&self) -> bool {
        self.is_degraded() || self.is_updating()
    }

    fn wants(&self, target: &str) -> bool {
        self.desired_hash.as_deref() == Some(target)
    }
}

/// Why no new node is started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Halt {
    /// `spec.rollout.paused` is set.
    Paused,
    /// These nodes degraded on the current rendering.
    Degraded(Vec<String>),
}

/// The next step of a rollout.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Wave {
    /// Nodes to give the target rendering now, in order.
    pub start: Vec<String>,
    /// Why the rollout does not go further, if it is halted.
    pub halt: Option<Halt>,
    /// Nodes that still lack the target rendering after this wave.
    pub waiting: usize,
}

/// How many of `nodes` nodes may be unavailable at once: a count, or a percentage rounded down; at least one.
pub fn max_unavailable(value: &IntOrString, nodes: usize) -> usize {
    let allowed = match value {
        IntOrString::Int(count) => usize::try_from(*count).unwrap_or(0),
        IntOrString::String(text) => text
            .strip_suffix('%')
            .and_then(|percent| percent.parse::<usize>().ok())
            .map_or(0, |percent| nodes.saturating_mul(percent) / 100),
    };
    allowed.max(1)
}

/// Plans the next wave towards `target` over `nodes` (every node the config wins).
pub fn next_wave(
    target: &str,
    max_unavailable: usize,
    paused: bool,
    nodes: &[NodeProgress],
) -> Wave {
    let mut ordered: Vec<&NodeProgress> = nodes.iter().collect();
    ordered.sort_by(|a, b| a.node.cmp(&b.node));

    let degraded_on_target: Vec<String> = ordered
        .iter()
        .filter(|node| node.is_degraded() && node.wants(target))
        .map(|node| node.node.clone())
        .collect();
    let outdated: Vec<&NodeProgress> = ordered
        .iter()
        .copied()
        .filter(|node| !node.wants(target))
        .collect();
    let halt = if paused && !outdated.is_empty() {
        Some(Halt::Paused)
    } else if !degraded_on_target.is_empty() {
        Some(Halt::Degraded(degraded_on_target))
    } else {
        None
    };
    if halt.is_some() {
        return Wave {
            start: Vec::new(),
            halt,
            waiting: outdated.len(),
        };
    }

    // Moving a node that is already unavailable onto the target costs nothing; others spend the budget.
    let unavailable = ordered.iter().filter(|node| node.is_unavailable()).count();
    let mut budget = max_unavailable.saturating_sub(unavailable);
    let mut start = Vec::new();
    for node in outdated.iter().filter(|node| node.is_unavailable()) {
        start.push(node.node.clone());
    }
    for node in outdated.iter().filter(|node| !node.is_unavailable()) {
        if budget == 0 {
            break;
        }
        budget -= 1;
        start.push(node.node.clone());
    }
    Wave {
        waiting: outdated.len() - start.len(),
        start,
        halt: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(
        name: &str,
        desired: Option<&str>,
        applied: Option<&str>,
        phase: Option<NodePhase>,
    ) -> NodeProgress {
        NodeProgress {
            node: name.into(),
            desired_hash: desired.map(Into::into),
            applied_hash: applied.map(Into::into),
            phase,
        }
    }

    fn applied(name: &str, hash: &str) -> NodeProgress {
        node(name, Some(hash), Some(hash), Some(NodePhase::Applied))
    }

    fn fresh(name: &str) -> NodeProgress {
        node(name, None, None, None)
    }

    #[test]
    fn max_unavailable_counts_and_percentages() {
        assert_eq!(max_unavailable(&IntOrString::Int(3), 10), 3);
        assert_eq!(max_unavailable(&IntOrString::String("25%".into()), 10), 2);
        assert_eq!(max_unavailable(&IntOrString::String("100%".into()), 10), 10);
        assert_eq!(
            max_unavailable(&IntOrString::String("1%".into()), 10),
            1,
            "at least one"
        );
        assert_eq!(max_unavailable(&IntOrString::String("50%".into()), 0), 1);
    }

    #[test]
    fn new_nodes_start_in_name_order_within_the_budget() {
        let nodes = [fresh("c"), fresh("a"), fresh("b")];
        let wave = next_wave("h1", 2, false, &nodes);
        assert_eq!(wave.start, ["a", "b"]);
        assert_eq!(wave.waiting, 1);
        assert_eq!(wave.halt, None);
    }

    #[test]
    fn updating_nodes_use_up_the_budget() {
        let nodes = [
            node("a", Some("h2"), Some("h1"), Some(NodePhase::Applying)),
            applied("b", "h1"),
            applied("c", "h1"),
        ];
        assert_eq!(
            next_wave("h2", 1, false, &nodes).start,
            Vec::<String>::new()
        );
        assert_eq!(next_wave("h2", 2, false, &nodes).start, ["b"]);
    }

    #[test]
    fn a_node_degraded_on_the_target_halts_the_rollout() {
        let nodes = [
            node("a", Some("h2"), Some("h1"), Some(NodePhase::RolledBack)),
            applied("b", "h1"),
        ];
        let wave = next_wave("h2", 5, false, &nodes);
        assert!(wave.start.is_empty());
        assert_eq!(wave.halt, Some(Halt::Degraded(vec!["a".into()])));
    }

    #[test]
    fn a_new_rendering_moves_degraded_nodes_first_without_spending_budget() {
        let nodes = [
            node("a", Some("h2"), Some("h1"), Some(NodePhase::Degraded)),
            applied("b", "h1"),
            applied("c", "h1"),
        ];
        let wave = next_wave("h3", 1, false, &nodes);
        assert_eq!(
            wave.start,
            ["a"],
            "a is unavailable already, and the budget of 1 is spent by it"
        );
        assert_eq!(wave.halt, None);
        let wave = next_wave("h3", 2, false, &nodes);
        assert_eq!(wave.start, ["a", "b"]);
    }

    #[test]
    fn paused_starts_nothing() {
        let nodes = [applied("a", "h1"), applied("b", "h1")];
        let wave = next_wave("h2", 2, true, &nodes);
        assert!(wave.start.is_empty());
        assert_eq!(wave.halt, Some(Halt::Paused));
        assert_eq!(
            next_wave("h1", 2, true, &nodes).halt,
            None,
            "nothing to do is no halt"
        );
    }

    #[test]
    fn a_rollout_never_has_more_than_max_unavailable_nodes_unavailable() {
        // Simulate whole rollouts: each round the agents of updating nodes finish, then the next wave starts.
        for max in 1..=4 {
            let mut nodes: Vec<NodeProgress> =
                (0..10).map(|i| applied(&format!("n{i}"), "old")).collect();
            let mut rounds = 0;
            loop {
                let wave = next_wave("new", max, false, &nodes);
                for node in nodes
                    .iter_mut()
                    .filter(|node| wave.start.contains(&node.node))
                {
                    node.desired_hash = Some("new".into());
                    node.phase = Some(NodePhase::Applying);
                }
                let unavailable = nodes.iter().filter(|node| node.is_unavailable()).count();
                assert!(
                    unavailable <= max,
                    "{unavailable} unavailable with maxUnavailable {max}"
                );
                if nodes.iter().all(|node| node.is_applied(Some("new"))) {
                    break;
                }
                for node in nodes.iter_mut().filter(|node| node.is_updating()) {
                    node.applied_hash = node.desired_hash.clone();
                    node.phase = Some(NodePhase::Applied);
                }
                rounds += 1;
                assert!(rounds <= 10, "the rollout must finish");
            }
            assert_eq!(rounds, 10_usize.div_ceil(max), "waves of {max}");
        }
    }
}
