//! How the agent learns which rkt a node runs: GetInfo on the rkt API service (what the kubelet's rkt runtime
//! asks too), or `rkt version` when the service is down.

use std::{process::Stdio, time::Duration};

use tokio::process::Command;
use tonic::transport::Endpoint;

use super::{
    error_chain::error_chain,
    v1alpha::{GetInfoRequest, public_api_client::PublicApiClient},
};

/// What rkt says about itself in GetInfo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RktInfo {
    /// rkt's own version, such as `1.30.0`.
    pub rkt_version: String,
    /// The appc spec version rkt implements, such as `0.8.11`.
    pub appc_version: String,
    /// The API version the service speaks, `1.0.0-alpha` for every rkt 1.x.
    pub api_version: String,
}

/// Why rkt's version could not be learnt. Each message names the endpoint or binary, so a node condition or an
/// Event built from it explains itself.
#[derive(Debug, thiserror::Error)]
pub enum RktApiError {
    #[error("rkt API endpoint {endpoint:?} is not HOST:PORT: {reason}")]
    InvalidEndpoint { endpoint: String, reason: String },
    #[error("cannot connect to the rkt API service at {endpoint}: {}", error_chain(.source))]
    Connect {
        endpoint: String,
        source: tonic::transport::Error,
    },
    #[error("the rkt API service at {endpoint} did not answer GetInfo within {timeout:?}")]
    Timeout { endpoint: String, timeout: Duration },
    #[error("GetInfo on the rkt API service at {endpoint} failed: {}: {}", .status.code(), .status.message())]
    Call {
        endpoint: String,
        status: Box<tonic::Status>,
    },
    #[error("the rkt API service at {endpoint} gave a bad GetInfo answer: {problem}")]
    BadAnswer {
        endpoint: String,
        problem: &'static str,
    },
    #[error("cannot run `{binary} version`: {source}")]
    Spawn {
        binary: String,
        source: std::io::Error,
    },
    #[error("`{binary} version` did not finish within {timeout:?}")]
    CliTimeout { binary: String, timeout: Duration },
    #[error("`{binary} version` failed ({status}): {}", .stderr.trim())]
    CliFailed {
        binary: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("`{binary} version` printed no `rkt Version: X` line; it printed {output:?}")]
    UnparsableVersion { binary: String, output: String },
}

/// GetInfo against HOST:PORT (e.g. "localhost:15441"), failing after `timeout` (connect + call).
pub async fn get_info(endpoint: &str, timeout: Duration) -> Result<RktInfo, RktApiError> {
    let invalid = |reason: String| RktApiError::InvalidEndpoint {
        endpoint: endpoint.to_owned(),
        reason,
    };
    let channel = Endpoint::from_shared(format!("http://{endpoint}"))
        .map_err(|error| invalid(error_chain(&error)))?;
    // Without a port the URI would mean port 80, and with a path it would not be the kubelet's HOST:PORT.
    if channel.uri().port().is_none() || !matches!(channel.uri().path(), "" | "/") {
        return Err(invalid("it needs a port and nothing after it".to_owned()));
    }
    // One deadline for connect and call together, so a slow connect cannot double the wait; tonic's own timeouts
    // would end the call with a CANCELLED status instead of saying it was a timeout.
    let call = async {
        let channel = channel
            .connect()
            .await
            .map_err(|source| RktApiError::Connect {
                endpoint: endpoint.to_owned(),
                source,
            })?;
        PublicApiClient::new(channel)
            .get_info(GetInfoRequest {})
            .await
            .map_err(|status| RktApiError::Call {
                endpoint: endpoint.to_owned(),
                status: Box::new(status),
            })
    };
    let response =
        tokio::time::timeout(timeout, call)
            .await
            .map_err(|_| RktApiError::Timeout {
                endpoint: endpoint.to_owned(),
                timeout,
            })??;
    let bad_answer = |problem| RktApiError::BadAnswer {
        endpoint: endpoint.to_owned(),
        problem,
    };
    let info = response
        .into_inner()
        .info
        .ok_or_else(|| bad_answer("no info in the response"))?;
    if info.rkt_version.is_empty() {
        return Err(bad_answer("no rkt_version in the info"));
    }
    Ok(RktInfo {
        rkt_version: info.rkt_version,
        appc_version: info.appc_version,
        api_version: info.api_version,
    })
}

/// `rkt version`, run as the command `rkt` (a binary, set up to run where the node's rkt is), parsed from its
/// `rkt Version: X` line.
pub async fn version_from_cli(mut rkt: Command, timeout: Duration) -> Result<String, RktApiError> {
    let program = rkt.as_std().get_program().to_string_lossy().into_owned();
    let binary = program.as_str();
    let child = rkt
        .arg("version")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A hung rkt must not outlive the check that gave up on it.
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| RktApiError::Spawn {
            binary: binary.to_owned(),
            source,
        })?;
    let output = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .map_err(|_| RktApiError::CliTimeout {
            binary: binary.to_owned(),
            timeout,
        })?
        .map_err(|source| RktApiError::Spawn {
            binary: binary.to_owned(),
            source,
        })?;
    if !output.status.success() {
        return Err(RktApiError::CliFailed {
            binary: binary.to_owned(),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    parse_version_output(&stdout).ok_or_else(|| RktApiError::UnparsableVersion {
        binary: binary.to_owned(),
        output: stdout.into_owned(),
    })
}

/// The version in rkt 1.x's `rkt version` output, whose first line is `rkt Version: 1.30.0`.
fn parse_version_output(output: &str) -> Option<String> {
    output
        .lines()
        .find_map(|line| line.trim().strip_prefix("rkt Version:"))
        .map(str::trim)
        .filter(|version| !version.is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::parse_version_output;

    #[test]
    fn reads_the_version_line_of_rkt_1() {
        let output = "rkt Version: 1.30.0\nappc Version: 0.8.11\nGo Version: go1.10.3\n\
                      Go OS/Arch: linux/amd64\nFeatures: -TPM +SDJOURNAL\n";
        assert_eq!(parse_version_output(output).as_deref(), Some("1.30.0"));
    }

    #[test]
    fn output_without_the_version_line_is_not_a_version() {
        assert_eq!(parse_version_output("appc Version: 0.8.11\n"), None);
        assert_eq!(parse_version_output("rkt Version: \n"), None);
        assert_eq!(parse_version_output(""), None);
    }
}
