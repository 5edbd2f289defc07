//! The rkt API service as the agent drives it: restarted through systemd's D-Bus API, healthy when it answers
//! GetInfo.

use std::{path::Path, time::Duration};

use super::{
    crash_point,
    systemd::{Systemd, SystemdError},
};
use crate::{
    api::RktServiceSpec,
    rkt::client::{RktApiError, get_info},
};

/// Why the rkt API service did not answer GetInfo in time.
#[derive(Debug, thiserror::Error)]
#[error("GetInfo on {endpoint} failed for {timeout:?}: {last_error}")]
pub struct HealthError {
    pub endpoint: String,
    pub timeout: Duration,
    /// The last attempt's failure, which names the endpoint and what went wrong there.
    pub last_error: RktApiError,
}

/// Why restarting the rkt API service did not bring it back healthy.
#[derive(Debug, thiserror::Error)]
pub enum RestartError {
    #[error("cannot restart {unit}: systemd is not reachable over D-Bus")]
    NoSystemd { unit: String },
    #[error(transparent)]
    Systemd(#[from] SystemdError),
    #[error(transparent)]
    Unhealthy(#[from] HealthError),
}

/// How long restarting and checking the service may take.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// systemd's restart job.
    pub restart: Duration,
    /// GetInfo answering after the restart.
    pub health: Duration,
}

/// Restarts the rkt API service through systemd and waits until it answers GetInfo.
pub async fn restart(
    systemd: Option<&Systemd>,
    rkt: &RktServiceSpec,
    timeouts: Timeouts,
) -> Result<(), RestartError> {
    let systemd = systemd.ok_or_else(|| RestartError::NoSystemd {
        unit: rkt.api_service_unit.clone(),
    })?;
    let unit = Path::new(&rkt.api_service_unit);
    crash_point::reached("before asking systemd to restart", unit);
    systemd
        .restart(&rkt.api_service_unit, timeouts.restart)
        .await?;
    crash_point::reached("after systemd restarted", unit);
    wait_for_get_info(&rkt.api_endpoint, timeouts.health).await?;
    crash_point::reached("after GetInfo answered from", unit);
    Ok(())
}

/// Polls GetInfo until it answers or `timeout` passes; the rkt version it reports. A restarted service usually
/// answers within milliseconds, so the first polls come quickly (50 ms, then twice as long each time, at most
/// every 500 ms).
pub async fn wait_for_get_info(endpoint: &str, timeout: Duration) -> Result<String, HealthError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut pause = Duration::from_millis(50);
    loop {
        match get_info(endpoint, Duration::from_secs(2)).await {
            Ok(info) => return Ok(info.rkt_version),
            Err(last_error) if tokio::time::Instant::now() >= deadline => {
                return Err(HealthError {
                    endpoint: endpoint.to_owned(),
                    timeout,
                    last_error,
                });
            }
            Err(_) => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(500));
            }
        }
    }
}
