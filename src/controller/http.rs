//! `/livez`, `/readyz` and `/metrics`.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{Router, extract::State, http::StatusCode, routing::get};

use super::metrics::Metrics;

/// What the probes report: ready once every cache holds its first full list; live while the main loop turns.
#[derive(Default)]
pub struct Health {
    ready: AtomicBool,
    last_beat: AtomicU64,
}

impl Health {
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// Called by the main loop on every turn.
    pub fn beat(&self) {
        self.last_beat.store(now_seconds(), Ordering::Release);
    }

    fn is_live(&self, stall: Duration) -> bool {
        let last = self.last_beat.load(Ordering::Acquire);
        last == 0 || now_seconds().saturating_sub(last) <= stall.as_secs()
    }
}

fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

#[derive(Clone)]
struct Probes {
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    stall: Duration,
}

/// Serves the probes and metrics on `listener` until the process ends. `stall` is how long the main loop may go
/// without a turn before `/livez` fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    stall: Duration,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(Probes {
            health,
            metrics,
            stall,
        });
    tracing::info!(address = %listener.local_addr()?, "serving /livez, /readyz and /metrics");
    axum::serve(listener, app).await
}

async fn livez(State(probes): State<Probes>) -> (StatusCode, &'static str) {
    if probes.health.is_live(probes.stall) {
        (StatusCode::OK, "ok\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the reconcile loop has stalled\n",
        )
    }
}

async fn readyz(State(probes): State<Probes>) -> (StatusCode, &'static str) {
    if probes.health.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ok\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "caches are still syncing\n",
        )
    }
}

async fn metrics_text(State(probes): State<Probes>) -> (StatusCode, String) {
    match probes.metrics.encode() {
        Ok(text) => (StatusCode::OK, text),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()),
    }
}
