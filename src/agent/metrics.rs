//! What the agent counts, for Prometheus: served at `/metrics` on `--metrics-address` when it is given (the chart's
//! `agent.metrics.port`, off by default). One set per process, as the agent serves one node.

use std::sync::LazyLock;

use axum::{Router, http::StatusCode, routing::get};
use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeLabelValue, text::encode},
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::Registry,
};

/// The agent's metrics.
pub static METRICS: LazyLock<AgentMetrics> = LazyLock::new(AgentMetrics::default);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RestartLabels {
    pub result: RestartResult,
}

/// How a restart of the rkt API service ended.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum RestartResult {
    /// It came back and answered GetInfo with the expected version.
    Healthy,
    /// systemd could not restart it, or it did not answer in time.
    Failed,
}

/// Every metric the agent keeps.
pub struct AgentMetrics {
    registry: Registry,
    /// Changes committed: a spec's files written and, where they need it, the rkt API service restarted healthy.
    pub applies: Counter,
    /// Changes undone because the rkt API service or the network failed on them.
    pub rollbacks: Counter,
    /// Restarts of the rkt API service, by result.
    pub restarts: Family<RestartLabels, Counter>,
    /// How long the rkt API service took to answer GetInfo when the agent checked it (after a restart, a start,
    /// and at each periodic check).
    pub health_check_duration: Histogram,
    /// Managed files found changed on the host and written back.
    pub drift_repairs: Counter,
    /// Times the watch of the node's RktNodeState failed or listed again after its first list.
    pub watch_restarts: Counter,
}

impl Default for AgentMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("rktnetes_agent");
        let applies = Counter::default();
        let rollbacks = Counter::default();
        let restarts = Family::<RestartLabels, Counter>::default();
        let health_check_duration =
            Histogram::new([0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0]);
        let drift_repairs = Counter::default();
        let watch_restarts = Counter::default();
        registry.register("applies", "Changes the agent committed", applies.clone());
        registry.register(
            "rollbacks",
            "Changes the agent undid because they failed",
            rollbacks.clone(),
        );
        registry.register(
            "api_service_restarts",
            "Restarts of the rkt API service, by result",
            restarts.clone(),
        );
        registry.register(
            "health_check_duration_seconds",
            "Time until the rkt API service answered GetInfo (or the check gave up)",
            health_check_duration.clone(),
        );
        registry.register(
            "drift_repairs",
            "Managed files found changed on the host and written back",
            drift_repairs.clone(),
        );
        registry.register(
            "watch_restarts",
            "Failures or relists of the watch of the node's RktNodeState",
            watch_restarts.clone(),
        );
        Self {
            registry,
            applies,
            rollbacks,
            restarts,
            health_check_duration,
            drift_repairs,
            watch_restarts,
        }
    }
}

impl AgentMetrics {
    /// Counts one restart of the rkt API service.
    pub fn restarted(&self, result: RestartResult) {
        self.restarts.get_or_create(&RestartLabels { result }).inc();
    }

    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// Serves `/metrics` on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener) -> std::io::Result<()> {
    let app = Router::new().route("/metrics", get(metrics_text));
    tracing::info!(address = %listener.local_addr()?, "serving /metrics");
    axum::serve(listener, app).await
}

async fn metrics_text() -> (StatusCode, String) {
    match METRICS.encode() {
        Ok(text) => (StatusCode::OK, text),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_served_with_its_prefix_before_anything_happened() {
        let metrics = AgentMetrics::default();
        metrics.restarted(RestartResult::Failed);
        let text = metrics.encode().unwrap();
        for line in [
            "rktnetes_agent_applies_total 0",
            "rktnetes_agent_rollbacks_total 0",
            r#"rktnetes_agent_api_service_restarts_total{result="Failed"} 1"#,
            "rktnetes_agent_health_check_duration_seconds_count 0",
            "rktnetes_agent_drift_repairs_total 0",
            "rktnetes_agent_watch_restarts_total 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in:\n{text}");
        }
    }
}
