//! The node's rkt binary, which the agent runs as root (`rkt version`, when GetInfo fails): only a file named `rkt`
//! where rkt is installed, checked on the node with every symlink resolved, so a link cannot lead it to another
//! program. The CRD refuses any other `spec.rkt.path`; this holds against what is on the node.

use std::time::Duration;

use super::host_namespace::HostPrograms;
use crate::{
    api::host_paths::{self, RKT_BIN_DIRS, RKT_INSTALL_TREE},
    rkt::client::{RktApiError, version_from_cli},
};

/// How long `realpath` and `rkt version` may take.
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum RktBinaryError {
    #[error("cannot resolve spec.rkt.path {path} on the node: {reason}")]
    Unresolvable { path: String, reason: String },
    #[error(
        "spec.rkt.path {path} resolves to {resolved} on the node, which is not a file named rkt in {} or below \
         {RKT_INSTALL_TREE}; the agent does not run it",
        RKT_BIN_DIRS.join(", ")
    )]
    NotRkt { path: String, resolved: String },
    #[error(transparent)]
    Version(#[from] RktApiError),
}

/// `rkt version` of the node's rkt: `path` once it is checked, or `rkt` on the node's PATH.
pub async fn version(
    programs: &HostPrograms,
    path: Option<&str>,
) -> Result<String, RktBinaryError> {
    let program = match path {
        None => "rkt".to_owned(),
        Some(path) => resolve(programs, path).await?,
    };
    Ok(version_from_cli(programs.command(&program), TIMEOUT).await?)
}

/// `path` with every symlink resolved on the node, when that is a rkt binary.
async fn resolve(programs: &HostPrograms, path: &str) -> Result<String, RktBinaryError> {
    let unresolvable = |reason: String| RktBinaryError::Unresolvable {
        path: path.to_owned(),
        reason,
    };
    let mut realpath = programs.command("realpath");
    realpath.args(["-e", "--", path]).kill_on_drop(true);
    let output = tokio::time::timeout(TIMEOUT, realpath.output())
        .await
        .map_err(|_| unresolvable(format!("realpath did not finish within {TIMEOUT:?}")))?
        .map_err(|error| unresolvable(format!("cannot run realpath: {error}")))?;
    if !output.status.success() {
        return Err(unresolvable(
            String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        ));
    }
    let resolved = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if host_paths::is_rkt_binary(&resolved) {
        Ok(resolved)
    } else {
        Err(RktBinaryError::NotRkt {
            path: path.to_owned(),
            resolved,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_link_to_another_program_is_not_run() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("rkt");
        std::os::unix::fs::symlink("/bin/sh", &link).unwrap();
        let programs = HostPrograms::new(None).unwrap();
        let error = version(&programs, Some(&link.display().to_string()))
            .await
            .unwrap_err();
        assert!(matches!(error, RktBinaryError::NotRkt { .. }), "{error}");
        let message = error.to_string();
        assert!(
            message.contains(&link.display().to_string()) && message.contains("does not run it"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn a_path_that_is_not_there_says_so() {
        let programs = HostPrograms::new(None).unwrap();
        let error = version(&programs, Some("/opt/rkt/v0.0.0-missing/rkt"))
            .await
            .unwrap_err();
        assert!(
            matches!(error, RktBinaryError::Unresolvable { .. }),
            "{error}"
        );
    }
}
