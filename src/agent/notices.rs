//! The Events the agent records on its Node, one builder per happening, so their reasons and wording live in one
//! place.

use super::{
    atomic_file::FileError, checks::Outcome, host_files::Changes, report, rkt_service::RestartError,
};
use crate::{
    api::{RktNodeStateSpec, RktServiceSpec},
    events::Notice,
};

/// The release of the spec was downloaded, verified and unpacked beside the one the node runs.
pub fn release_installed(spec: &RktNodeStateSpec, name: &str) -> Notice {
    Notice::normal(
        "ReleaseInstalled",
        format!(
            "Installed rkt {} for {} of RktNodeConfig {} in /opt/rkt/releases/{name}; the node switches to it next.",
            spec.rkt.version, spec.hash, spec.config_name
        ),
    )
}

/// The release of the spec could not be installed; nothing the node runs changed.
pub fn install_failed(spec: &RktNodeStateSpec, reason: &str) -> Notice {
    Notice::warning(
        "InstallFailed",
        format!(
            "Did not apply {} of RktNodeConfig {}: {reason}. The node runs what it ran.",
            spec.hash, spec.config_name
        ),
    )
}

/// A change not made because rkt would refuse the configuration it makes.
pub fn refused(spec: &RktNodeStateSpec, reason: &str) -> Notice {
    Notice::warning(
        "RefusedByRkt",
        format!(
            "Did not apply {} of RktNodeConfig {}: {reason}. Nothing was written and {} was not restarted.",
            spec.hash, spec.config_name, spec.rkt.api_service_unit
        ),
    )
}

/// The rkt API service, found stopped, was started (or starting it failed).
pub fn service_started(
    rkt: &RktServiceSpec,
    was: &str,
    result: &Result<(), RestartError>,
) -> Notice {
    let unit = &rkt.api_service_unit;
    let now = report::now().0;
    match result {
        Ok(()) => Notice::warning(
            "StartedAPIService",
            format!("{unit} was {was}; the agent started it at {now} and it answers GetInfo."),
        ),
        Err(error) => Notice::warning(
            "StartAPIServiceFailed",
            format!("{unit} was {was}; the agent started it at {now}, but: {error}"),
        ),
    }
}

/// The rkt API service whose unit file the agent had written was stopped and disabled, its unit file removed.
pub fn service_removed(rkt: &RktServiceSpec) -> Notice {
    Notice::normal(
        "APIServiceRemoved",
        format!(
            "Stopped and disabled {}, whose unit file the agent had written: no RktNodeConfig selects this node.",
            rkt.api_service_unit
        ),
    )
}

/// How a rollback ended (a rolled-back or failed outcome; an applied one has nothing to say).
pub fn rolled_back(outcome: &Outcome) -> Option<Notice> {
    outcome
        .reason()
        .map(|reason| Notice::warning("RolledBack", reason.to_owned()))
}

pub fn files_removed(changes: &Changes) -> Notice {
    Notice::normal(
        "FilesRemoved",
        format!(
            "Removed {}: no RktNodeConfig selects this node.",
            changes.paths.join(", ")
        ),
    )
}

pub fn drift_repaired(paths: &[String], result: &Result<(), FileError>) -> Notice {
    let paths = paths.join(", ");
    Notice::warning(
        "DriftRepaired",
        match result {
            Ok(()) => format!("{paths} changed on the node; rewrote the managed content."),
            Err(error) => {
                format!("{paths} changed on the node and could not be rewritten: {error}")
            }
        },
    )
}
