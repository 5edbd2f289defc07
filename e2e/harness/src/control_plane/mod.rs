//! A local Kubernetes control plane for the end-to-end tests and the demo: etcd, kube-apiserver and
//! kube-controller-manager as plain processes on this machine (built by `e2e/build-tools.sh`), TLS everywhere, RBAC,
//! no kubelet. `rktnetes-e2e cluster up|down|status|kubeconfig|env` (and `e2e/cluster.sh`, which runs it) drive it;
//! the tests call [`ControlPlane::up`] themselves.
//!
//! Its state (certificates, etcd's data, logs, kubeconfigs) lives in one directory. A running component is
//! recognised as this control plane's by its program and by its arguments naming that directory, never by a pid
//! file alone, so `up` and `down` also find what a killed run left behind.
//!
//! Settings (environment), as `e2e/cluster.sh` always had them:
//! `RKTNETES_CLUSTER_DIR` (default `$RKTNETES_CACHE/cluster`; deleted by `down`), `RKTNETES_ETCD_CLIENT_PORT`
//! (23791), `RKTNETES_ETCD_PEER_PORT` (23801), `RKTNETES_APISERVER_PORT` (16443), `RKTNETES_KCM_PORT` (20257),
//! `RKTNETES_APISERVER_BIND` (0.0.0.0, so the test machines reach it on their bridge), `RKTNETES_APISERVER_ADVERTISE`
//! (the bind address if specific, else 127.0.0.1), `RKTNETES_APISERVER_EXTRA_SANS` (comma-separated IPs for its
//! certificate; default the machines' host address) and `RKTNETES_CLUSTER_TIMEOUT` (seconds per component, 180).

mod components;
mod pki;

use std::{
    fs,
    net::{IpAddr, Ipv4Addr, TcpListener},
    os::{
        fd::AsFd,
        unix::{
            fs::{DirBuilderExt, PermissionsExt},
            process::CommandExt,
        },
    },
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

pub use self::components::Component;
use self::{components::COMPONENTS, pki::Pki};
use crate::{
    kubeconfig::{self, ClusterEndpoint},
    log,
    output::{print_tail, shell_quote},
    owned_dir::OwnedDir,
    processes::{self, Pid},
    settings::{Settings, env_or},
};

const SERVICE_CIDR: &str = "10.96.0.0/16";
/// The first IP of [`SERVICE_CIDR`]: the `kubernetes` Service's ClusterIP.
const SERVICE_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 96, 0, 1));
const SERVICE_ACCOUNT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
const API_DNS_NAMES: [&str; 5] = [
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
];
/// What the API server's audit log records: every write, at the Metadata level (who, what, which verb, the
/// response code), so that a test or the scale bench can count the writes each client made. Reads are not
/// recorded, nor is anything the scale bench's simulated kubelets do (their node Leases and Node status every few
/// seconds would outweigh everything else).
const AUDIT_POLICY: &str = r#"apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived, ResponseStarted]
rules:
  - level: None
    users: ["rktnetes-bench:kubelets"]
  - level: Metadata
    verbs: [create, update, patch, delete, deletecollection]
  - level: None
"#;

/// The user of the scale bench's simulated kubelets (a client certificate, `bench-kubelets.crt`, in
/// `system:masters`), whose requests the audit log leaves out.
pub const BENCH_KUBELETS_USER: &str = "rktnetes-bench:kubelets";

/// Marks a directory as a control plane's state, so a mistyped `RKTNETES_CLUSTER_DIR` can never make `down`
/// delete something else.
const MARKER: &str = ".rktnetes-cluster";

/// The TCP ports it listens on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ports {
    pub etcd_client: u16,
    pub etcd_peer: u16,
    pub apiserver: u16,
    pub controller_manager: u16,
}

/// A control plane as configured: where its state is, what it listens on, what its certificate names.
#[derive(Clone, Debug)]
pub struct ControlPlane {
    state: PathBuf,
    pki: Pki,
    tools_bin: PathBuf,
    build_tools: PathBuf,
    ports: Ports,
    bind: IpAddr,
    advertise: IpAddr,
    san_ips: Vec<IpAddr>,
    timeout: Duration,
}

impl ControlPlane {
    /// The control plane the environment describes. Bad settings are refused, naming the variable.
    pub fn from_env(settings: &Settings) -> anyhow::Result<Self> {
        let state = match std::env::var_os("RKTNETES_CLUSTER_DIR") {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => settings.cache.join("cluster"),
        };
        let port = |name: &str, default: &str| -> anyhow::Result<u16> {
            let text = env_or(name, default);
            text.parse::<u16>()
                .ok()
                .filter(|port| *port > 0)
                .with_context(|| format!("{name} is not a TCP port: {text:?}"))
        };
        let ip = |name: &str, default: &str| -> anyhow::Result<IpAddr> {
            let text = env_or(name, default);
            text.parse()
                .with_context(|| format!("{name} is not an IP address: {text:?}"))
        };
        let ports = Ports {
            etcd_client: port("RKTNETES_ETCD_CLIENT_PORT", "23791")?,
            etcd_peer: port("RKTNETES_ETCD_PEER_PORT", "23801")?,
            apiserver: port("RKTNETES_APISERVER_PORT", "16443")?,
            controller_manager: port("RKTNETES_KCM_PORT", "20257")?,
        };
        let bind = ip("RKTNETES_APISERVER_BIND", "0.0.0.0")?;
        let advertise = ip("RKTNETES_APISERVER_ADVERTISE", &api_host(bind).to_string())?;
        let extra = env_or(
            "RKTNETES_APISERVER_EXTRA_SANS",
            &settings.node_host_address()?,
        );
        let timeout = env_or("RKTNETES_CLUSTER_TIMEOUT", "180");
        let timeout = timeout.parse().map(Duration::from_secs).with_context(|| {
            format!("RKTNETES_CLUSTER_TIMEOUT is not a number of seconds: {timeout:?}")
        })?;
        Ok(Self {
            pki: Pki::new(state.join("pki")),
            state,
            tools_bin: settings.tools_bin()?,
            build_tools: settings.script("build-tools.sh"),
            ports,
            bind,
            advertise,
            san_ips: san_ips(bind, advertise, &extra)?,
            timeout,
        })
    }

    /// The admin kubeconfig (client certificate of `system:masters`).
    pub fn admin_kubeconfig(&self) -> PathBuf {
        self.state.join("admin.kubeconfig")
    }

    /// The API server's serving certificate and key (PEM): what a test's stand-in for the API server presents, so
    /// that clients trusting this cluster's CA at any of its addresses trust it too.
    pub fn api_serving_identity(&self) -> (PathBuf, PathBuf) {
        (
            self.pki.file("apiserver.crt"),
            self.pki.file("apiserver.key"),
        )
    }

    /// The API server's audit log: one JSON line per completed write (create, update, patch, delete), naming the
    /// user, the resource and the verb, except the simulated kubelets' heartbeats (see [`AUDIT_POLICY`]).
    pub fn audit_log(&self) -> PathBuf {
        self.logs().join("audit.log")
    }

    /// A kubeconfig for the scale bench's simulated kubelets ([`BENCH_KUBELETS_USER`]).
    pub fn bench_kubelets_kubeconfig(&self) -> PathBuf {
        self.state.join("bench-kubelets.kubeconfig")
    }

    /// The running API server, if there is one.
    pub fn apiserver(&self) -> Option<Pid> {
        self.running(Component::KubeApiserver).first().copied()
    }

    /// Where the control plane's binaries, kubectl and helm are.
    pub fn tools_bin(&self) -> &Path {
        &self.tools_bin
    }

    /// The URL clients on this machine reach the API server at.
    fn api_url(&self) -> String {
        match api_host(self.bind) {
            IpAddr::V6(host) => format!("https://[{host}]:{}", self.ports.apiserver),
            IpAddr::V4(host) => format!("https://{host}:{}", self.ports.apiserver),
        }
    }

    /// Everything it is started with; a change means `up` starts it afresh.
    fn fingerprint(&self) -> String {
        let ips: Vec<String> = self.san_ips.iter().map(IpAddr::to_string).collect();
        format!(
            "tools={} ports={},{},{},{} bind={} advertise={} sans={} audit=writes",
            self.tools_bin.display(),
            self.ports.etcd_client,
            self.ports.etcd_peer,
            self.ports.apiserver,
            self.ports.controller_manager,
            self.bind,
            self.advertise,
            ips.join(",")
        )
    }

    /// Starts it, or does nothing when it already runs healthy with these settings. Returns the admin kubeconfig.
    pub fn up(&self) -> anyhow::Result<PathBuf> {
        // Its chatter belongs on stderr, as every line but the kubeconfig's path does.
        let stderr = std::io::stderr().as_fd().try_clone_to_owned()?;
        let status = Command::new(&self.build_tools)
            .stdout(Stdio::from(stderr))
            .status()
            .with_context(|| format!("running {}", self.build_tools.display()))?;
        anyhow::ensure!(status.success(), "{} failed", self.build_tools.display());
        let _lock = self.owned_dir().lock()?;
        let recorded = fs::read_to_string(self.state.join("config")).ok();
        if recorded.as_deref() == Some(self.fingerprint().as_str()) && self.healthy() {
            log("cluster already up");
            return Ok(self.admin_kubeconfig());
        }
        match recorded {
            Some(_) if recorded.as_deref() != Some(self.fingerprint().as_str()) => log(format!(
                "cluster in {} was started with other settings; restarting it from scratch",
                self.state.display()
            )),
            _ if self.state.exists() => log(format!(
                "cluster in {} is not (fully) up; restarting it from scratch",
                self.state.display()
            )),
            _ => {}
        }
        self.stop_all()?;
        self.check_ports()?;
        self.owned_dir().wipe()?;
        let started = Instant::now();
        self.owned_dir().claim()?;
        // Private: it holds every key of the cluster.
        fs::set_permissions(&self.state, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("making {} private", self.state.display()))?;
        for dir in [self.logs(), self.state.join("etcd")] {
            fs::DirBuilder::new()
                .mode(0o700)
                .create(&dir)
                .with_context(|| format!("creating {}", dir.display()))?;
        }
        log(format!(
            "generating certificates in {}",
            self.pki.dir.display()
        ));
        let api_ips: Vec<IpAddr> = self.san_ips.clone();
        self.pki.create(&API_DNS_NAMES, &api_ips)?;
        self.write_kubeconfig(&self.admin_kubeconfig(), "admin", "admin")?;
        self.write_kubeconfig(
            &self.state.join("controller-manager.kubeconfig"),
            "controller-manager",
            "system:kube-controller-manager",
        )?;
        self.write_kubeconfig(
            &self.bench_kubelets_kubeconfig(),
            "bench-kubelets",
            BENCH_KUBELETS_USER,
        )?;
        fs::write(self.state.join("audit-policy.yaml"), AUDIT_POLICY)?;
        fs::write(self.state.join("config"), self.fingerprint())?;
        for component in COMPONENTS {
            log(format!("starting {}", component.program()));
            self.start(component)?;
            self.wait_for(component, component.readiness(), || component.healthy(self))?;
        }
        // Created by the API server and the controller manager's serviceaccount controller; pods cannot be created
        // before the ServiceAccount exists.
        self.wait_for(Component::KubeApiserver, "the default namespace", || {
            self.kubectl(&["get", "namespace", "default"])
        })?;
        self.wait_for(
            Component::KubeControllerManager,
            "the default ServiceAccount",
            || self.kubectl(&["-n", "default", "get", "serviceaccount", "default"]),
        )?;
        log(format!(
            "cluster up in {}s; logs in {}",
            started.elapsed().as_secs(),
            self.logs().display()
        ));
        Ok(self.admin_kubeconfig())
    }

    /// Stops it and deletes its state; harmless when it is not running.
    pub fn down(&self) -> anyhow::Result<()> {
        let _lock = self.owned_dir().lock()?;
        self.stop_all()?;
        self.owned_dir().wipe()?;
        log("cluster down");
        Ok(())
    }

    /// Kills one running component as a crash would (SIGKILL, its state kept), starts it again and waits until it
    /// answers: a real outage of the API server or of etcd, for the tests that must live through one. Returns how
    /// long it was away.
    pub fn crash_and_restart(&self, component: Component) -> anyhow::Result<Duration> {
        let _lock = self.owned_dir().lock()?;
        let pids = self.running(component);
        anyhow::ensure!(!pids.is_empty(), "{} is not running", component.program());
        let started = Instant::now();
        processes::kill(&pids, component.program())?;
        log(format!(
            "killed {} ({pids:?}); starting it again",
            component.program()
        ));
        // The killed process's connections linger a while (FIN_WAIT) and keep its port from being bound again.
        let deadline = Instant::now() + self.timeout;
        while let Err(error) = self.ports_free(component) {
            if Instant::now() >= deadline {
                return Err(error);
            }
            thread::sleep(Duration::from_millis(200));
        }
        self.start(component)?;
        self.wait_for(component, component.readiness(), || component.healthy(self))?;
        Ok(started.elapsed())
    }

    /// Whether every component is this control plane's, running and answering.
    pub fn healthy(&self) -> bool {
        self.state.join(MARKER).is_file()
            && self.admin_kubeconfig().is_file()
            && COMPONENTS
                .iter()
                .all(|component| !self.running(*component).is_empty())
            && Component::KubeApiserver.healthy(self)
            && Component::KubeControllerManager.healthy(self)
    }

    /// The components that run, whether healthy or not.
    pub fn partly_running(&self) -> Vec<&'static str> {
        COMPONENTS
            .iter()
            .filter(|component| !self.running(**component).is_empty())
            .map(|component| component.program())
            .collect()
    }

    /// Its processes of `component`: the program, with arguments naming this state directory.
    fn running(&self, component: Component) -> Vec<Pid> {
        let state = format!("{}/", self.state.display());
        processes::find(|pid| {
            pid.program().as_deref() == Some(component.program())
                && pid.command_line().iter().any(|arg| arg.contains(&state))
        })
    }

    fn logs(&self) -> PathBuf {
        self.state.join("logs")
    }

    fn log_file(&self, component: Component) -> PathBuf {
        self.logs().join(format!("{}.log", component.program()))
    }

    /// Stops every process of ours, in reverse start order, whether its state directory still exists or not.
    fn stop_all(&self) -> anyhow::Result<()> {
        for component in COMPONENTS.iter().rev() {
            let pids = self.running(*component);
            if !pids.is_empty() {
                log(format!("stopping {} ({pids:?})", component.program()));
                processes::stop(&pids, Duration::from_secs(15), component.program())?;
            }
        }
        Ok(())
    }

    /// Fails, naming the port, unless every port `component` listens on can be bound now.
    fn ports_free(&self, component: Component) -> anyhow::Result<()> {
        let loopback = IpAddr::from([127, 0, 0, 1]);
        let ports = match component {
            Component::Etcd => vec![
                (loopback, self.ports.etcd_client),
                (loopback, self.ports.etcd_peer),
            ],
            // Go listens on a wildcard address with a dual-stack socket: the IPv6 wildcard is checked too.
            Component::KubeApiserver if self.bind.is_unspecified() => vec![
                (self.bind, self.ports.apiserver),
                (
                    IpAddr::from(std::net::Ipv6Addr::UNSPECIFIED),
                    self.ports.apiserver,
                ),
            ],
            Component::KubeApiserver => vec![(self.bind, self.ports.apiserver)],
            Component::KubeControllerManager => vec![(loopback, self.ports.controller_manager)],
        };
        for (address, port) in ports {
            TcpListener::bind((address, port)).with_context(|| {
                format!(
                    "{}'s port {address}:{port} is still taken",
                    component.program()
                )
            })?;
        }
        Ok(())
    }

    /// Fails, naming the holder, when something that is not ours listens on a port it needs.
    fn check_ports(&self) -> anyhow::Result<()> {
        let loopback = IpAddr::from([127, 0, 0, 1]);
        for (address, port) in [
            (self.bind, self.ports.apiserver),
            (loopback, self.ports.controller_manager),
            (loopback, self.ports.etcd_client),
            (loopback, self.ports.etcd_peer),
        ] {
            if TcpListener::bind((address, port)).is_err() {
                let holder = Command::new("ss")
                    .args(["-Hltnp", &format!("sport = :{port}")])
                    .output()
                    .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
                    .unwrap_or_default();
                bail!(
                    "port {port} is already in use by something that is not this cluster:\n{holder}(set \
                     RKTNETES_ETCD_CLIENT_PORT, RKTNETES_ETCD_PEER_PORT, RKTNETES_APISERVER_PORT or \
                     RKTNETES_KCM_PORT to move ours)"
                );
            }
        }
        Ok(())
    }

    /// The state directory, as the harness owns it (marker `.rktnetes-cluster`; lock `<dir>.lock`).
    fn owned_dir(&self) -> OwnedDir {
        OwnedDir::new(self.state.clone(), MARKER, "cluster state dir")
    }

    /// Starts a component in a session of its own, so it outlives its caller and a caller's process-group kill.
    fn start(&self, component: Component) -> anyhow::Result<()> {
        let path = self.log_file(component);
        // Appended to: a restarted component's log keeps what it said before (`up` starts from an empty directory).
        let log_file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        let program = self.tools_bin.join(component.program());
        let mut command = Command::new(&program);
        command
            .args(component.args(self))
            .env("GOMEMLIMIT", component.memory_limit())
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file);
        // SAFETY: setsid(2) is async-signal-safe, as a pre_exec hook must be.
        unsafe {
            command.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        command
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        Ok(())
    }

    /// Polls `ready` until it holds; gives up (showing the component's log and stopping what started) when the
    /// component exits or the timeout passes.
    fn wait_for(
        &self,
        component: Component,
        what: &str,
        ready: impl Fn() -> bool,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + self.timeout;
        loop {
            if ready() {
                return Ok(());
            }
            let problem = if self.running(component).is_empty() {
                format!("{} exited while waiting for {what}", component.program())
            } else if Instant::now() >= deadline {
                format!(
                    "timed out after {}s waiting for {what}",
                    self.timeout.as_secs()
                )
            } else {
                thread::sleep(Duration::from_millis(500));
                continue;
            };
            let path = self.log_file(component);
            log(format!("{problem}; last lines of {}:", path.display()));
            print_tail(&path, 40);
            self.stop_all()?;
            bail!("the cluster did not come up: {problem}");
        }
    }

    fn kubectl(&self, args: &[&str]) -> bool {
        Command::new(self.tools_bin.join("kubectl"))
            .arg("--kubeconfig")
            .arg(self.admin_kubeconfig())
            .arg("--request-timeout=5s")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }

    /// A self-contained kubeconfig with the client certificate `NAME.crt`.
    fn write_kubeconfig(&self, path: &Path, name: &str, user: &str) -> anyhow::Result<()> {
        let read = |file: &str| -> anyhow::Result<String> {
            let path = self.pki.file(file);
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
        };
        let endpoint = ClusterEndpoint::with_ca_pem(&self.api_url(), &read("ca.crt")?);
        let content = kubeconfig::for_client_certificate(
            &endpoint,
            user,
            &read(&format!("{name}.crt"))?,
            &read(&format!("{name}.key"))?,
        );
        kubeconfig::write(path, &content)
    }

    /// `export` lines for a shell to eval: the admin kubeconfig, and the tools on the PATH.
    pub fn env(&self) -> String {
        format!(
            "export KUBECONFIG={}; export PATH={}:\"$PATH\"",
            shell_quote(&self.admin_kubeconfig().to_string_lossy()),
            shell_quote(&self.tools_bin.to_string_lossy())
        )
    }
}

/// Where clients on this machine reach an API server bound to `bind`: loopback for a wildcard.
fn api_host(bind: IpAddr) -> IpAddr {
    if bind.is_unspecified() {
        IpAddr::from([127, 0, 0, 1])
    } else {
        bind
    }
}

/// The API server certificate's IPs: loopback, the Service IP, what it advertises and binds, and the extra ones
/// (comma-separated), each once.
fn san_ips(bind: IpAddr, advertise: IpAddr, extra: &str) -> anyhow::Result<Vec<IpAddr>> {
    let mut ips = vec![IpAddr::from([127, 0, 0, 1]), SERVICE_IP, advertise];
    if !bind.is_unspecified() {
        ips.push(bind);
    }
    for text in extra
        .split(',')
        .map(str::trim)
        .filter(|text| !text.is_empty())
    {
        ips.push(text.parse().with_context(|| {
            format!("RKTNETES_APISERVER_EXTRA_SANS: not an IP address: {text:?}")
        })?);
    }
    let mut unique = Vec::new();
    for ip in ips {
        if !unique.contains(&ip) {
            unique.push(ip);
        }
    }
    Ok(unique)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_ips_are_loopback_service_advertised_bound_and_extra_once_each() {
        let wildcard = IpAddr::from([0, 0, 0, 0]);
        let ips = san_ips(wildcard, api_host(wildcard), "10.213.0.1, 127.0.0.1,,").unwrap();
        let shown: Vec<String> = ips.iter().map(IpAddr::to_string).collect();
        assert_eq!(shown, ["127.0.0.1", "10.96.0.1", "10.213.0.1"]);
        let specific = IpAddr::from([10, 0, 0, 5]);
        assert!(san_ips(specific, specific, "").unwrap().contains(&specific));
        let error = san_ips(wildcard, wildcard, "10.0.0.1,not-an-ip").unwrap_err();
        assert!(format!("{error:#}").contains("not-an-ip"), "{error:#}");
    }

    #[test]
    fn every_component_names_the_state_directory_in_its_arguments() {
        let settings = Settings::from_env().unwrap();
        let directory = tempfile::tempdir().unwrap();
        let mut plane = ControlPlane::from_env(&settings).unwrap();
        plane.state = directory.path().join("cluster");
        plane.pki = Pki::new(plane.state.join("pki"));
        let state = format!("{}/", plane.state.display());
        for component in COMPONENTS {
            let args = component.args(&plane);
            assert!(
                args.iter()
                    .any(|arg| arg.to_string_lossy().contains(&state)),
                "{component:?}: {args:?}"
            );
        }
    }
}
