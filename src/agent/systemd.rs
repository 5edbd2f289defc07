//! systemd over its D-Bus API: its version, and restarting the rkt API service with the job's result.

use std::{path::Path, time::Duration};

use futures::StreamExt;
use zbus::{OwnedObjectPath, connection, proxy};

/// The oldest systemd Kubernetes' rkt runtime accepts (seed 003).
pub const MIN_SYSTEMD_VERSION: u32 = 219;

#[proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1"
)]
trait Manager {
    fn restart_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;

    fn reset_failed_unit(&self, name: &str) -> zbus::Result<()>;

    fn load_unit(&self, name: &str) -> zbus::Result<OwnedObjectPath>;

    /// Without a subscription systemd does not send job signals.
    fn subscribe(&self) -> zbus::Result<()>;

    #[zbus(signal)]
    fn job_removed(
        &self,
        id: u32,
        job: OwnedObjectPath,
        unit: String,
        result: String,
    ) -> zbus::Result<()>;

    #[zbus(property)]
    fn version(&self) -> zbus::Result<String>;
}

#[proxy(
    interface = "org.freedesktop.systemd1.Service",
    default_service = "org.freedesktop.systemd1"
)]
trait Service {
    /// When the service's main process last started, in microseconds since the epoch (0: never).
    #[zbus(property)]
    fn exec_main_start_timestamp(&self) -> zbus::Result<u64>;
}

#[derive(Debug, thiserror::Error)]
pub enum SystemdError {
    #[error("cannot reach systemd on the system D-Bus: {0}")]
    Bus(#[from] zbus::Error),
    #[error("systemd's restart job for {unit} ended with result {result:?}")]
    JobFailed { unit: String, result: String },
    #[error("systemd's restart job for {unit} did not finish within {timeout:?}")]
    JobTimeout { unit: String, timeout: Duration },
}

/// A connection to the node's systemd.
pub struct Systemd {
    manager: ManagerProxy<'static>,
}

impl Systemd {
    /// Connects through the system bus socket at `socket` (the DaemonSet mounts the host's at the same path), or
    /// wherever `DBUS_SYSTEM_BUS_ADDRESS` says. Not through libdbus' default `/var/run/...`: the agent's image has
    /// no `/var/run`.
    pub async fn connect(socket: &Path) -> Result<Self, SystemdError> {
        let builder = if std::env::var_os("DBUS_SYSTEM_BUS_ADDRESS").is_some() {
            connection::Builder::system()
        } else {
            connection::Builder::address(format!("unix:path={}", socket.display()).as_str())
        };
        let connection = builder.build().await?;
        let manager = ManagerProxy::new(&connection).await?;
        manager.subscribe().await?;
        Ok(Self { manager })
    }

    /// systemd's version string, such as `252.38-1~deb12u1`.
    pub async fn version(&self) -> Result<String, SystemdError> {
        Ok(self.manager.version().await?)
    }

    /// When the main process of service `unit` last started, in microseconds since the epoch (0: never).
    pub async fn main_started_at(&self, unit: &str) -> Result<u64, SystemdError> {
        let path = self.manager.load_unit(unit).await?;
        let service = ServiceProxy::builder(self.manager.inner().connection())
            .path(path)
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await?;
        Ok(service.exec_main_start_timestamp().await?)
    }

    /// Restarts `unit` and waits for systemd's job to finish; the job's result must be `done`.
    pub async fn restart(&self, unit: &str, timeout: Duration) -> Result<(), SystemdError> {
        // A unit that failed too often in a row refuses to start until its failure is reset; a restart asked for
        // by the agent (after a rollback, say) is a new attempt. Resetting a unit that has not failed errors.
        if let Err(error) = self.manager.reset_failed_unit(unit).await {
            tracing::debug!(%error, unit, "nothing to reset");
        }
        // Listen before asking, so the job's end cannot be missed.
        let mut removed = self.manager.receive_job_removed().await?;
        let job = self.manager.restart_unit(unit, "replace").await?;
        let wait = async {
            while let Some(signal) = removed.next().await {
                let args = signal.args()?;
                if args.job == job {
                    return Ok(args.result);
                }
            }
            Err(zbus::Error::Failure(
                "systemd's job signals ended".to_owned(),
            ))
        };
        match tokio::time::timeout(timeout, wait).await {
            Err(_) => Err(SystemdError::JobTimeout {
                unit: unit.to_owned(),
                timeout,
            }),
            Ok(Err(error)) => Err(error.into()),
            Ok(Ok(result)) if result == "done" => Ok(()),
            Ok(Ok(result)) => Err(SystemdError::JobFailed {
                unit: unit.to_owned(),
                result,
            }),
        }
    }
}

/// The major version in a systemd version string (`252.38-1~deb12u1` is 252).
pub fn major_version(version: &str) -> Option<u32> {
    let digits: String = version
        .trim()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::major_version;

    #[test]
    fn systemd_versions_parse() {
        assert_eq!(major_version("252.38-1~deb12u1"), Some(252));
        assert_eq!(major_version("219"), Some(219));
        assert_eq!(major_version("v255"), None);
    }
}
