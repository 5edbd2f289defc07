//! Kubeconfigs, written one way: self-contained (the cluster's CA embedded), one user with one bearer token, mode
//! 0600, put in place whole.

use std::{io::Write, os::unix::fs::OpenOptionsExt, path::Path};

use anyhow::{Context, anyhow};
use base64::{Engine, prelude::BASE64_STANDARD};
use kube::config::Kubeconfig;
use serde_json::json;

/// How clients reach the API server: its URL and the CA that signed its certificate (base64 PEM).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterEndpoint {
    pub server: String,
    pub ca_data: String,
}

impl ClusterEndpoint {
    /// The current context's cluster of the kubeconfig at `path` (the admin kubeconfig of `e2e/cluster.sh`).
    pub fn of(path: &Path) -> anyhow::Result<Self> {
        let kubeconfig = Kubeconfig::read_from(path)
            .with_context(|| format!("reading the kubeconfig {}", path.display()))?;
        let context_name = kubeconfig
            .current_context
            .as_deref()
            .ok_or_else(|| anyhow!("{} has no current context", path.display()))?;
        let cluster_name = kubeconfig
            .contexts
            .iter()
            .find(|context| context.name == context_name)
            .and_then(|context| context.context.as_ref())
            .map(|context| context.cluster.clone())
            .ok_or_else(|| anyhow!("{}: no context {context_name}", path.display()))?;
        let cluster = kubeconfig
            .clusters
            .iter()
            .find(|cluster| cluster.name == cluster_name)
            .and_then(|cluster| cluster.cluster.as_ref())
            .ok_or_else(|| anyhow!("{}: no cluster {cluster_name}", path.display()))?;
        Ok(Self {
            server: cluster.server.clone().ok_or_else(|| {
                anyhow!("{}: cluster {cluster_name} has no server", path.display())
            })?,
            ca_data: cluster.certificate_authority_data.clone().ok_or_else(|| {
                anyhow!(
                    "{}: cluster {cluster_name} has no embedded certificate-authority-data",
                    path.display()
                )
            })?,
        })
    }

    /// An API server at `server` whose certificate `ca_pem` signed.
    pub fn with_ca_pem(server: &str, ca_pem: &str) -> Self {
        Self {
            server: server.to_owned(),
            ca_data: BASE64_STANDARD.encode(ca_pem),
        }
    }

    /// The same API server, reached at `host` (the server's certificate must name it) on the same port.
    pub fn at_host(&self, host: &str) -> anyhow::Result<Self> {
        let port = self
            .server
            .rsplit_once(':')
            .map(|(_, port)| port)
            .filter(|port| port.chars().all(|c| c.is_ascii_digit()))
            .ok_or_else(|| anyhow!("the server {} names no port", self.server))?;
        Ok(Self {
            server: format!("https://{host}:{port}"),
            ca_data: self.ca_data.clone(),
        })
    }
}

/// A kubeconfig for `endpoint` that authenticates as `user` with `token`.
pub fn for_token(endpoint: &ClusterEndpoint, user: &str, token: &str) -> String {
    with_user(endpoint, user, json!({"token": token}))
}

/// A kubeconfig for `endpoint` that authenticates as `user` with a client certificate and its key (PEM).
pub fn for_client_certificate(
    endpoint: &ClusterEndpoint,
    user: &str,
    certificate: &str,
    key: &str,
) -> String {
    with_user(
        endpoint,
        user,
        json!({
            "client-certificate-data": BASE64_STANDARD.encode(certificate),
            "client-key-data": BASE64_STANDARD.encode(key),
        }),
    )
}

fn with_user(endpoint: &ClusterEndpoint, user: &str, credentials: serde_json::Value) -> String {
    json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "rktnetes", "cluster": {
            "server": endpoint.server,
            "certificate-authority-data": endpoint.ca_data,
        }}],
        "users": [{"name": user, "user": credentials}],
        "contexts": [{"name": "rktnetes", "context": {"cluster": "rktnetes", "user": user}}],
        "current-context": "rktnetes",
    })
    .to_string()
}

/// Writes `content` to `path` with mode 0600, whole: beside it first, then renamed over it.
pub fn write(path: &Path, content: &str) -> anyhow::Result<()> {
    let directory = path
        .parent()
        .ok_or_else(|| anyhow!("{} has no directory", path.display()))?;
    std::fs::create_dir_all(directory)
        .with_context(|| format!("creating {}", directory.display()))?;
    let temporary = directory.join(format!(
        ".{}.tmp",
        path.file_name()
            .map_or_else(String::new, |name| name.to_string_lossy().into_owned())
    ));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .with_context(|| format!("creating {}", temporary.display()))?;
    file.write_all(content.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", temporary.display()))?;
    std::fs::rename(&temporary, path)
        .with_context(|| format!("renaming {} to {}", temporary.display(), path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_moves_host_and_keeps_port_and_ca() {
        let endpoint = ClusterEndpoint {
            server: "https://127.0.0.1:16443".into(),
            ca_data: "Q0E=".into(),
        };
        assert_eq!(
            endpoint.at_host("10.213.0.1").unwrap(),
            ClusterEndpoint {
                server: "https://10.213.0.1:16443".into(),
                ca_data: "Q0E=".into(),
            }
        );
    }

    #[test]
    fn a_written_kubeconfig_reads_back_with_its_token_and_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("kubeconfig");
        let endpoint = ClusterEndpoint {
            server: "https://10.213.0.1:16443".into(),
            ca_data: "Q0E=".into(),
        };
        write(&path, &for_token(&endpoint, "rktnetes-agent", "secret")).unwrap();
        assert_eq!(ClusterEndpoint::of(&path).unwrap(), endpoint);
        let kubeconfig = Kubeconfig::read_from(&path).unwrap();
        assert_eq!(kubeconfig.auth_infos[0].name, "rktnetes-agent");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
