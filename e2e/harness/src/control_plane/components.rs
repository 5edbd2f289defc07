//! The three processes of the control plane, in start order, with their command lines and how each shows it is
//! healthy.

use std::{ffi::OsString, path::Path, process::Command};

use super::ControlPlane;

/// A component of the control plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component {
    Etcd,
    KubeApiserver,
    KubeControllerManager,
}

/// Start order; `down` stops them in reverse (an apiserver without etcd dawdles on SIGTERM).
pub const COMPONENTS: [Component; 3] = [
    Component::Etcd,
    Component::KubeApiserver,
    Component::KubeControllerManager,
];

impl Component {
    /// Its program's name, in the tools directory.
    pub fn program(self) -> &'static str {
        match self {
            Self::Etcd => "etcd",
            Self::KubeApiserver => "kube-apiserver",
            Self::KubeControllerManager => "kube-controller-manager",
        }
    }

    /// A soft memory limit for the Go runtime, so three components stay well inside a small machine.
    pub fn memory_limit(self) -> &'static str {
        match self {
            Self::KubeApiserver => "1GiB",
            Self::Etcd | Self::KubeControllerManager => "512MiB",
        }
    }

    /// What `up` waits for after starting it.
    pub fn readiness(self) -> &'static str {
        match self {
            Self::Etcd => "etcd to be healthy",
            Self::KubeApiserver => "kube-apiserver's /readyz",
            Self::KubeControllerManager => "kube-controller-manager's /healthz",
        }
    }

    /// Its arguments. Every one of them names a file in the state directory, which is how a running component is
    /// recognised as this control plane's.
    pub fn args(self, plane: &ControlPlane) -> Vec<OsString> {
        let pki = |name: &str| plane.pki.file(name).into_os_string();
        let state = |name: &str| plane.state.join(name).into_os_string();
        let etcd_url = format!("https://127.0.0.1:{}", plane.ports.etcd_client);
        let peer_url = format!("https://127.0.0.1:{}", plane.ports.etcd_peer);
        let mut args: Vec<(&str, OsString)> = match self {
            // TLS with client-certificate auth on both ports. No fsync: this cluster's data is thrown away on
            // every restart anyway, and fsync dominates etcd's latency on slow disks.
            Self::Etcd => vec![
                ("--name", "rktnetes".into()),
                ("--data-dir", state("etcd")),
                ("--listen-client-urls", etcd_url.clone().into()),
                ("--advertise-client-urls", etcd_url.into()),
                ("--listen-peer-urls", peer_url.clone().into()),
                ("--initial-advertise-peer-urls", peer_url.clone().into()),
                ("--initial-cluster", format!("rktnetes={peer_url}").into()),
                ("--initial-cluster-state", "new".into()),
                ("--initial-cluster-token", "rktnetes".into()),
                ("--cert-file", pki("etcd.crt")),
                ("--key-file", pki("etcd.key")),
                ("--trusted-ca-file", pki("ca.crt")),
                ("--client-cert-auth", "true".into()),
                ("--peer-cert-file", pki("etcd.crt")),
                ("--peer-key-file", pki("etcd.key")),
                ("--peer-trusted-ca-file", pki("ca.crt")),
                ("--peer-client-cert-auth", "true".into()),
                ("--unsafe-no-fsync", "true".into()),
            ],
            Self::KubeApiserver => vec![
                ("--bind-address", plane.bind.to_string().into()),
                ("--secure-port", plane.ports.apiserver.to_string().into()),
                ("--advertise-address", plane.advertise.to_string().into()),
                // The `kubernetes` Service's endpoint reconciler refuses a loopback address (which it would
                // publish to pods); with only loopback to advertise, it is off and that Service has no endpoints.
                (
                    "--endpoint-reconciler-type",
                    if plane.advertise.is_loopback() {
                        "none"
                    } else {
                        "lease"
                    }
                    .into(),
                ),
                (
                    "--etcd-servers",
                    format!("https://127.0.0.1:{}", plane.ports.etcd_client).into(),
                ),
                ("--etcd-cafile", pki("ca.crt")),
                ("--etcd-certfile", pki("apiserver-etcd-client.crt")),
                ("--etcd-keyfile", pki("apiserver-etcd-client.key")),
                ("--tls-cert-file", pki("apiserver.crt")),
                ("--tls-private-key-file", pki("apiserver.key")),
                ("--client-ca-file", pki("ca.crt")),
                ("--requestheader-client-ca-file", pki("front-proxy-ca.crt")),
                ("--requestheader-allowed-names", "front-proxy-client".into()),
                ("--requestheader-username-headers", "X-Remote-User".into()),
                ("--requestheader-group-headers", "X-Remote-Group".into()),
                (
                    "--requestheader-extra-headers-prefix",
                    "X-Remote-Extra-".into(),
                ),
                ("--proxy-client-cert-file", pki("front-proxy-client.crt")),
                ("--proxy-client-key-file", pki("front-proxy-client.key")),
                ("--authorization-mode", "RBAC".into()),
                (
                    "--service-account-issuer",
                    super::SERVICE_ACCOUNT_ISSUER.into(),
                ),
                ("--api-audiences", super::SERVICE_ACCOUNT_ISSUER.into()),
                ("--service-account-key-file", pki("sa.pub")),
                ("--service-account-signing-key-file", pki("sa.key")),
                ("--service-cluster-ip-range", super::SERVICE_CIDR.into()),
                ("--allow-privileged", "true".into()),
                ("--profiling", "false".into()),
                ("--audit-policy-file", state("audit-policy.yaml")),
                ("--audit-log-path", plane.audit_log().into_os_string()),
                ("--audit-log-format", "json".into()),
                // One file, never rotated under a reader: a scale run writes some hundreds of MB at most.
                ("--audit-log-maxsize", "4096".into()),
                ("--audit-log-mode", "batch".into()),
            ],
            Self::KubeControllerManager => vec![
                ("--kubeconfig", state("controller-manager.kubeconfig")),
                (
                    "--authentication-kubeconfig",
                    state("controller-manager.kubeconfig"),
                ),
                (
                    "--authorization-kubeconfig",
                    state("controller-manager.kubeconfig"),
                ),
                ("--bind-address", "127.0.0.1".into()),
                (
                    "--secure-port",
                    plane.ports.controller_manager.to_string().into(),
                ),
                ("--cert-dir", state("kcm-certs")),
                ("--service-account-private-key-file", pki("sa.key")),
                ("--root-ca-file", pki("ca.crt")),
                ("--use-service-account-credentials", "true".into()),
                ("--cluster-signing-cert-file", pki("ca.crt")),
                ("--cluster-signing-key-file", pki("ca.key")),
                ("--service-cluster-ip-range", super::SERVICE_CIDR.into()),
                ("--leader-elect", "false".into()),
                ("--profiling", "false".into()),
            ],
        };
        args.drain(..)
            .map(|(flag, value)| {
                let mut arg = OsString::from(flag);
                arg.push("=");
                arg.push(value);
                arg
            })
            .collect()
    }

    /// Whether it answers its health endpoint (with the admin's or the API server's client certificate).
    pub fn healthy(self, plane: &ControlPlane) -> bool {
        let pki = |name: &str| plane.pki.file(name);
        match self {
            Self::Etcd => curl(
                &["--cacert".as_ref(), pki("ca.crt").as_ref()],
                &pki("apiserver-etcd-client.crt"),
                &pki("apiserver-etcd-client.key"),
                &format!("https://127.0.0.1:{}/health", plane.ports.etcd_client),
            )
            .is_some_and(|body| body.contains(r#""health":"true""#)),
            Self::KubeApiserver => curl(
                &["--cacert".as_ref(), pki("ca.crt").as_ref()],
                &pki("admin.crt"),
                &pki("admin.key"),
                &format!("{}/readyz", plane.api_url()),
            )
            .is_some_and(|body| body == "ok"),
            // Its serving certificate is self-signed; this only asks whether it is alive.
            Self::KubeControllerManager => curl(
                &["--insecure".as_ref()],
                &pki("admin.crt"),
                &pki("admin.key"),
                &format!(
                    "https://127.0.0.1:{}/healthz",
                    plane.ports.controller_manager
                ),
            )
            .is_some_and(|body| body == "ok"),
        }
    }
}

/// The body of a successful HTTPS GET with a client certificate, or nothing.
fn curl(trust: &[&std::ffi::OsStr], cert: &Path, key: &Path, url: &str) -> Option<String> {
    let output = Command::new("curl")
        .args(["-sf", "--max-time", "5"])
        .args(trust)
        .arg("--cert")
        .arg(cert)
        .arg("--key")
        .arg(key)
        .arg(url)
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}
