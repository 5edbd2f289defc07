//! The controller's Prometheus metrics, served on `/metrics`.

use std::collections::HashMap;

use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeLabelValue, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

use crate::api::{NodePhase, RktNodeConfig};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    /// `rktnodestate`, `rktnodeconfig_status`, `daemonset` or `event`.
    pub resource: &'static str,
    /// `apply` or `delete`.
    pub verb: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub resource: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConfigNodeLabels {
    pub config: String,
    pub state: ConfigNodeState,
}

/// A count of a config's status, as a label value.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum ConfigNodeState {
    /// `status.matchedNodes`: nodes the config selects and wins.
    Matched,
    /// `status.updatedNodes`: nodes given its current rendering.
    Updated,
    /// `status.readyNodes`: nodes that applied it and report a healthy rkt API service.
    Ready,
    /// `status.degradedNodes`: nodes that failed to apply it.
    Degraded,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConfigLabels {
    pub config: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub phase: Phase,
}

/// A RktNodeState's phase as a label value: the phase its agent reported, or `Unknown` before it reports.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum Phase {
    Unknown,
    Pending,
    Applying,
    Applied,
    Degraded,
    RolledBack,
}

impl Phase {
    /// Every value, so that a phase no node is in shows 0 rather than its last count.
    const ALL: [Self; 6] = [
        Self::Unknown,
        Self::Pending,
        Self::Applying,
        Self::Applied,
        Self::Degraded,
        Self::RolledBack,
    ];
}

impl From<Option<NodePhase>> for Phase {
    fn from(phase: Option<NodePhase>) -> Self {
        match phase {
            None => Self::Unknown,
            Some(NodePhase::Pending) => Self::Pending,
            Some(NodePhase::Applying) => Self::Applying,
            Some(NodePhase::Applied) => Self::Applied,
            Some(NodePhase::Degraded) => Self::Degraded,
            Some(NodePhase::RolledBack) => Self::RolledBack,
        }
    }
}

/// Every metric the controller keeps.
pub struct Metrics {
    registry: Registry,
    /// Reconcile passes over the cluster.
    pub reconciles: Counter,
    /// Failed writes, by resource.
    pub errors: Family<ErrorLabels, Counter>,
    /// How long a pass takes, planning and writing.
    pub reconcile_duration: Histogram,
    /// Writes to the API, by resource and verb: zero in steady state.
    pub writes: Family<WriteLabels, Counter>,
    /// RktNodeStates by phase.
    pub nodes: Family<PhaseLabels, Gauge>,
    /// 1 while this replica holds the leader Lease.
    pub leader: Gauge,
    /// Each config's node counts, from its status.
    pub config_nodes: Family<ConfigNodeLabels, Gauge>,
    /// 1 for a config whose rollout is paused.
    pub config_paused: Family<ConfigLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("rktnetes_controller");
        let reconciles = Counter::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let reconcile_duration =
            Histogram::new([0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0]);
        let writes = Family::<WriteLabels, Counter>::default();
        let nodes = Family::<PhaseLabels, Gauge>::default();
        let leader = Gauge::default();
        let config_nodes = Family::<ConfigNodeLabels, Gauge>::default();
        let config_paused = Family::<ConfigLabels, Gauge>::default();
        registry.register(
            "reconciles",
            "Reconcile passes over the cluster",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Failed API writes, by resource",
            errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Duration of a reconcile pass, planning and writing",
            reconcile_duration.clone(),
        );
        registry.register(
            "api_writes",
            "Writes to the Kubernetes API, by resource and verb",
            writes.clone(),
        );
        registry.register("nodes", "RktNodeStates by phase", nodes.clone());
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease",
            leader.clone(),
        );
        registry.register(
            "config_nodes",
            "Each RktNodeConfig's nodes by state, as its status counts them",
            config_nodes.clone(),
        );
        registry.register(
            "config_paused",
            "1 for a RktNodeConfig whose rollout is paused",
            config_paused.clone(),
        );
        Self {
            registry,
            reconciles,
            errors,
            reconcile_duration,
            writes,
            nodes,
            leader,
            config_nodes,
            config_paused,
        }
    }
}

impl Metrics {
    /// Counts one write.
    pub fn wrote(&self, resource: &'static str, verb: &'static str) {
        self.writes
            .get_or_create(&WriteLabels { resource, verb })
            .inc();
    }

    /// Counts one failed write.
    pub fn failed(&self, resource: &'static str) {
        self.errors.get_or_create(&ErrorLabels { resource }).inc();
    }

    /// Sets the node gauge from the phases the RktNodeStates report.
    pub fn set_phases(&self, phases: impl IntoIterator<Item = Option<NodePhase>>) {
        let mut counts: HashMap<Phase, i64> = Phase::ALL.map(|phase| (phase, 0)).into();
        for phase in phases {
            *counts.entry(Phase::from(phase)).or_default() += 1;
        }
        for (phase, count) in counts {
            self.nodes.get_or_create(&PhaseLabels { phase }).set(count);
        }
    }

    /// Sets the config gauges from the configs' statuses; a config that is gone loses its series.
    pub fn set_configs<'a>(&self, configs: impl IntoIterator<Item = &'a RktNodeConfig>) {
        self.config_nodes.clear();
        self.config_paused.clear();
        for config in configs {
            let name = config.metadata.name.clone().unwrap_or_default();
            let status = config.status.clone().unwrap_or_default();
            for (state, count) in [
                (ConfigNodeState::Matched, status.matched_nodes),
                (ConfigNodeState::Updated, status.updated_nodes),
                (ConfigNodeState::Ready, status.ready_nodes),
                (ConfigNodeState::Degraded, status.degraded_nodes),
            ] {
                let labels = ConfigNodeLabels {
                    config: name.clone(),
                    state,
                };
                self.config_nodes.get_or_create(&labels).set(count.into());
            }
            let labels = ConfigLabels { config: name };
            self.config_paused
                .get_or_create(&labels)
                .set(config.spec.rollout.paused.into());
        }
    }

    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_gauge_counts_every_phase_and_zero_for_the_others() {
        let metrics = Metrics::default();
        metrics.set_phases([None, Some(NodePhase::Applied), Some(NodePhase::Applied)]);
        metrics.set_phases([Some(NodePhase::Applied), Some(NodePhase::RolledBack)]);
        let text = metrics.encode().unwrap();
        for line in [
            r#"rktnetes_controller_nodes{phase="Applied"} 1"#,
            r#"rktnetes_controller_nodes{phase="RolledBack"} 1"#,
            r#"rktnetes_controller_nodes{phase="Unknown"} 0"#,
            r#"rktnetes_controller_nodes{phase="Pending"} 0"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in:\n{text}");
        }
    }

    #[test]
    fn config_gauges_follow_the_configs_that_exist() {
        let config = |name: &str, paused: bool, ready: i32| {
            let mut config = RktNodeConfig::new(
                name,
                serde_json::from_value(serde_json::json!({"rkt": {"version": "1.30.0"}, "rollout": {"paused": paused}}))
                    .unwrap(),
            );
            config.status = Some(crate::api::RktNodeConfigStatus {
                matched_nodes: 3,
                ready_nodes: ready,
                ..Default::default()
            });
            config
        };
        let metrics = Metrics::default();
        metrics.set_configs(&[config("gone", false, 1), config("edge", true, 2)]);
        metrics.set_configs(&[config("edge", true, 3)]);
        let text = metrics.encode().unwrap();
        for line in [
            r#"rktnetes_controller_config_nodes{config="edge",state="Matched"} 3"#,
            r#"rktnetes_controller_config_nodes{config="edge",state="Ready"} 3"#,
            r#"rktnetes_controller_config_paused{config="edge"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in:\n{text}");
        }
        assert!(!text.contains("gone"), "{text}");
    }
}
