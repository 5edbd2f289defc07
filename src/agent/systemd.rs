//! systemd over its D-Bus API: its version; starting, restarting and stopping the rkt API service with the job's
//! result; reloading unit files, enabling and disabling the service's unit, and reading its state.

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

    fn start_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;

    fn stop_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;

    /// `systemctl daemon-reload`.
    fn reload(&self) -> zbus::Result<()>;

    /// `systemctl enable`: whether the units have an [Install] section, and the links made.
    fn enable_unit_files(
        &self,
        files: &[&str],
        runtime: bool,
        force: bool,
    ) -> zbus::Result<(bool, Vec<(String, String, String)>)>;

    /// `systemctl disable`: the links removed.
    fn disable_unit_files(
        &self,
        files: &[&str],
        runtime: bool,
    ) -> zbus::Result<Vec<(String, String, String)>>;

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
    interface = "org.freedesktop.systemd1.Unit",
    default_service = "org.freedesktop.systemd1"
)]
trait Unit {
    #[zbus(property)]
    fn load_state(&self) -> zbus::Result<String>;

    #[zbus(property)]
    fn active_state(&self) -> zbus::Result<String>;

    /// The unit file systemd loaded the unit from (empty: none).
    #[zbus(property)]
    fn fragment_path(&self) -> zbus::Result<String>;
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
    #[error("systemd's {job} job for {unit} ended with result {result:?}")]
    JobFailed {
        job: Job,
        unit: String,
        result: String,
    },
    #[error("systemd's {job} job for {unit} did not finish within {timeout:?}")]
    JobTimeout {
        job: Job,
        unit: String,
        timeout: Duration,
    },
}

/// A job the agent asks systemd to run on a unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Job {
    Start,
    Restart,
    Stop,
}

impl std::fmt::Display for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Start => "start",
            Self::Restart => "restart",
            Self::Stop => "stop",
        })
    }
}

/// What systemd says of a unit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitState {
    /// `loaded`, `not-found`, `error`, `masked`...
    pub load_state: String,
    /// `active`, `inactive`, `failed`, `activating`, `deactivating`...
    pub active_state: String,
    /// The unit file it was loaded from; empty when there is none.
    pub fragment_path: String,
}

impl UnitState {
    /// Stopped, by someone or by its own failure: neither running nor on its way up or down.
    pub fn is_stopped(&self) -> bool {
        self.active_state == "inactive" || self.active_state == "failed"
    }
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

    /// What systemd says of `unit` (a unit it has no file for is `not-found`).
    pub async fn unit_state(&self, unit: &str) -> Result<UnitState, SystemdError> {
        let path = self.manager.load_unit(unit).await?;
        let proxy = UnitProxy::builder(self.manager.inner().connection())
            .path(path)
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await?;
        Ok(UnitState {
            load_state: proxy.load_state().await?,
            active_state: proxy.active_state().await?,
            fragment_path: proxy.fragment_path().await?,
        })
    }

    /// Makes systemd read its unit files again (`daemon-reload`).
    pub async fn reload(&self) -> Result<(), SystemdError> {
        Ok(self.manager.reload().await?)
    }

    /// Enables `unit` as its [Install] section says (`systemctl enable`).
    pub async fn enable(&self, unit: &str) -> Result<(), SystemdError> {
        self.manager.enable_unit_files(&[unit], false, true).await?;
        Ok(())
    }

    /// Disables `unit` (`systemctl disable`).
    pub async fn disable(&self, unit: &str) -> Result<(), SystemdError> {
        self.manager.disable_unit_files(&[unit], false).await?;
        Ok(())
    }

    /// Restarts `unit` and waits for systemd's job to finish; the job's result must be `done`.
    pub async fn restart(&self, unit: &str, timeout: Duration) -> Result<(), SystemdError> {
        self.run(Job::Restart, unit, timeout).await
    }

    /// Runs `job` on `unit` and waits for it to finish; the job's result must be `done`.
    pub async fn run(&self, job: Job, unit: &str, timeout: Duration) -> Result<(), SystemdError> {
        // A unit that failed too often in a row refuses to start until its failure is reset; a start asked for
        // by the agent (after a rollback, say) is a new attempt. Resetting a unit that has not failed errors.
        if job != Job::Stop
            && let Err(error) = self.manager.reset_failed_unit(unit).await
        {
            tracing::debug!(%error, unit, "nothing to reset");
        }
        // Listen before asking, so the job's end cannot be missed.
        let mut removed = self.manager.receive_job_removed().await?;
        let queued = match job {
            Job::Start => self.manager.start_unit(unit, "replace").await?,
            Job::Restart => self.manager.restart_unit(unit, "replace").await?,
            Job::Stop => self.manager.stop_unit(unit, "replace").await?,
        };
        let wait = async {
            while let Some(signal) = removed.next().await {
                let args = signal.args()?;
                if args.job == queued {
                    return Ok(args.result);
                }
            }
            Err(zbus::Error::Failure(
                "systemd's job signals ended".to_owned(),
            ))
        };
        match tokio::time::timeout(timeout, wait).await {
            Err(_) => Err(SystemdError::JobTimeout {
                job,
                unit: unit.to_owned(),
                timeout,
            }),
            Ok(Err(error)) => Err(error.into()),
            Ok(Ok(result)) if result == "done" => Ok(()),
            Ok(Ok(result)) => Err(SystemdError::JobFailed {
                job,
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
