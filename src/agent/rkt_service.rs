//! The rkt API service as the agent drives it: started, restarted and stopped through systemd's D-Bus API (its
//! unit file reloaded first when the agent changed it), healthy when it answers GetInfo.

use std::{path::Path, time::Duration};

use super::{
    crash_point,
    step::UnitChange,
    systemd::{Job, Systemd, SystemdError},
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
    #[error("cannot {job} {unit}: systemd is not reachable over D-Bus")]
    NoSystemd { job: Job, unit: String },
    #[error(transparent)]
    Systemd(#[from] SystemdError),
    #[error(transparent)]
    Unhealthy(#[from] HealthError),
    #[error("{unit} answers GetInfo with rkt {reported}, not {expected}, on the new release")]
    WrongVersion {
        unit: String,
        expected: String,
        reported: String,
    },
}

/// How long restarting and checking the service may take.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// systemd's restart job.
    pub restart: Duration,
    /// GetInfo answering after the restart.
    pub health: Duration,
}

/// Restarts the rkt API service through systemd (after reloading its unit file when `unit` changed) and waits
/// until it answers GetInfo; the rkt version it reports.
pub async fn restart(
    systemd: Option<&Systemd>,
    rkt: &RktServiceSpec,
    timeouts: Timeouts,
    unit: UnitChange,
) -> Result<String, RestartError> {
    let systemd = reachable(systemd, Job::Restart, rkt)?;
    reload(systemd, rkt, unit).await?;
    let unit = Path::new(&rkt.api_service_unit);
    crash_point::reached("before asking systemd to restart", unit);
    let started = std::time::Instant::now();
    systemd
        .restart(&rkt.api_service_unit, timeouts.restart)
        .await?;
    let restarted = started.elapsed();
    crash_point::reached("after systemd restarted", unit);
    let started = std::time::Instant::now();
    let version = wait_for_get_info(&rkt.api_endpoint, timeouts.health).await?;
    crash_point::reached("after GetInfo answered from", unit);
    tracing::info!(
        unit = rkt.api_service_unit,
        version,
        restart_ms = restarted.as_millis(),
        health_ms = started.elapsed().as_millis(),
        "restarted the rkt API service; it answers GetInfo"
    );
    Ok(version)
}

/// Starts the stopped rkt API service and waits until it answers GetInfo.
pub async fn start(
    systemd: Option<&Systemd>,
    rkt: &RktServiceSpec,
    timeouts: Timeouts,
) -> Result<(), RestartError> {
    let systemd = reachable(systemd, Job::Start, rkt)?;
    systemd
        .run(Job::Start, &rkt.api_service_unit, timeouts.restart)
        .await?;
    wait_for_get_info(&rkt.api_endpoint, timeouts.health).await?;
    Ok(())
}

/// Stops and disables the rkt API service whose unit file the agent removed, and makes systemd forget the unit.
pub async fn stop(
    systemd: Option<&Systemd>,
    rkt: &RktServiceSpec,
    timeouts: Timeouts,
) -> Result<(), RestartError> {
    let systemd = reachable(systemd, Job::Stop, rkt)?;
    systemd
        .run(Job::Stop, &rkt.api_service_unit, timeouts.restart)
        .await?;
    systemd.disable(&rkt.api_service_unit).await?;
    systemd.reload().await?;
    Ok(())
}

fn reachable<'a>(
    systemd: Option<&'a Systemd>,
    job: Job,
    rkt: &RktServiceSpec,
) -> Result<&'a Systemd, RestartError> {
    systemd.ok_or_else(|| RestartError::NoSystemd {
        job,
        unit: rkt.api_service_unit.clone(),
    })
}

/// Makes systemd read the unit file the agent wrote or removed; a unit file written is enabled too, so the service
/// starts at boot (a failure to enable is logged: the service runs all the same).
async fn reload(
    systemd: &Systemd,
    rkt: &RktServiceSpec,
    unit: UnitChange,
) -> Result<(), SystemdError> {
    if unit == UnitChange::Unchanged {
        return Ok(());
    }
    systemd.reload().await?;
    if unit == UnitChange::Written
        && let Err(error) = systemd.enable(&rkt.api_service_unit).await
    {
        tracing::warn!(%error, unit = rkt.api_service_unit, "could not enable the rkt API service");
    }
    Ok(())
}

/// Polls GetInfo until it answers or `timeout` passes; the rkt version it reports. A restarted service usually
/// answers within milliseconds, so the first polls come quickly (50 ms, then twice as long each time, at most
/// every 500 ms).
pub async fn wait_for_get_info(endpoint: &str, timeout: Duration) -> Result<String, HealthError> {
    let started = std::time::Instant::now();
    let result = poll_get_info(endpoint, timeout).await;
    super::metrics::METRICS
        .health_check_duration
        .observe(started.elapsed().as_secs_f64());
    result
}

async fn poll_get_info(endpoint: &str, timeout: Duration) -> Result<String, HealthError> {
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
