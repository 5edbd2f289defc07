//! The controller's Prometheus metrics, served on `/metrics`.

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

use crate::api::NodePhase;

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
pub struct PhaseLabels {
    /// A RktNodeState phase, or `Unknown` before its agent reports.
    pub phase: &'static str,
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
        Self {
            registry,
            reconciles,
            errors,
            reconcile_duration,
            writes,
            nodes,
            leader,
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
        let mut counts = [0_i64; 6];
        for phase in phases {
            counts[phase_index(phase)] += 1;
        }
        for (index, count) in counts.iter().enumerate() {
            self.nodes
                .get_or_create(&PhaseLabels {
                    phase: PHASE_NAMES[index],
                })
                .set(*count);
        }
    }

    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

const PHASE_NAMES: [&str; 6] = [
    "Unknown",
    "Pending",
    "Applying",
    "Applied",
    "Degraded",
    "RolledBack",
];

fn phase_index(phase: Option<NodePhase>) -> usize {
    match phase {
        None => 0,
        Some(NodePhase::Pending) => 1,
        Some(NodePhase::Applying) => 2,
        Some(NodePhase::Applied) => 3,
        Some(NodePhase::Degraded) => 4,
        Some(NodePhase::RolledBack) => 5,
    }
}
