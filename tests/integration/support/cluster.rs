//! The local control plane of the harness (`rktnetes_e2e::control_plane`, which `e2e/cluster.sh` runs too: a real
//! kube-apiserver, etcd and kube-controller-manager), started once per test run or reused when already up, with
//! this project's CRDs installed.
//!
//! There is no skipping: when the control plane cannot start, the test fails and says why.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::OnceLock,
};

use kube::{
    Client, Config,
    config::{KubeConfigOptions, Kubeconfig},
};

use rktnetes_e2e::{control_plane::ControlPlane, settings::Settings};

use super::{kind_profile, repo_root};

/// A running control plane.
pub struct TestCluster {
    /// The admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// Where kubectl, helm and the control plane's binaries are.
    pub tools_bin: PathBuf,
    /// The harness's control plane (none in the kind profile, whose control plane is kind's).
    pub plane: Option<ControlPlane>,
}

/// Tests share the cluster's objects (configs, states, nodes, the chart's release), so those that change them run
/// one at a time, each holding this lock (`serial().lock().await`, or `blocking_lock()` outside a runtime).
pub fn serial() -> &'static tokio::sync::Mutex<()> {
    static SERIAL: OnceLock<tokio::sync::Mutex<()>> = OnceLock::new();
    SERIAL.get_or_init(|| tokio::sync::Mutex::new(()))
}

/// The control plane, started (or found running) on first use, with the CRDs of `crds/` applied.
pub fn cluster() -> &'static TestCluster {
    static CLUSTER: OnceLock<TestCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        if kind_profile() {
            return kind_cluster();
        }
        let plane = Settings::of_checkout(repo_root())
            .and_then(|settings| ControlPlane::from_env(&settings))
            .unwrap_or_else(|error| panic!("the control plane's settings: {error:#}"));
        let kubeconfig = plane
            .up()
            .unwrap_or_else(|error| panic!("the control plane did not come up: {error:#}"));
        let cluster = TestCluster {
            kubeconfig,
            tools_bin: plane.tools_bin().to_owned(),
            plane: Some(plane),
        };
        cluster.install_crds();
        cluster
    })
}

/// The kind cluster of `e2e/kind/run.sh`: its kubeconfig in `KUBECONFIG`, kubectl and helm on the PATH.
fn kind_cluster() -> TestCluster {
    let kubeconfig = std::env::var_os("KUBECONFIG")
        .map(PathBuf::from)
        .expect("the kind profile needs KUBECONFIG (e2e/kind/run.sh sets it)");
    let kubectl = std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).find(|dir| dir.join("kubectl").is_file()))
        .expect("the kind profile needs kubectl and helm on the PATH");
    let cluster = TestCluster {
        kubeconfig,
        tools_bin: kubectl,
        plane: None,
    };
    cluster.install_crds();
    cluster
}

impl TestCluster {
    /// A client of the admin identity. Make one per test: a client belongs to the runtime that made it.
    pub async fn client(&self) -> Client {
        client_from(&self.kubeconfig).await
    }

    /// `kubectl` against this cluster.
    pub fn kubectl(&self) -> Command {
        let mut command = Command::new(self.tools_bin.join("kubectl"));
        command
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .current_dir(repo_root());
        command
    }

    /// Runs `kubectl` and returns its stdout; panics with its stderr when it fails.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let output = run(self.kubectl().args(args));
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Applies `crds/` as users do (`kubectl apply --server-side`) and waits until the apiserver serves them.
    fn install_crds(&self) {
        self.kubectl_ok(&[
            "apply",
            "--server-side",
            "--field-manager=rktnetes-tests",
            "-f",
            "crds/",
        ]);
        // `kubectl wait --for=condition=...` fails at once on an object that has no conditions yet, as a CRD has
        // for a moment after it is created; a JSONPath wait waits for them.
        self.kubectl_ok(&[
            "wait",
            "--for=jsonpath={.status.conditions[?(@.type==\"Established\")].status}=True",
            "--timeout=60s",
            "crd/rktnodeconfigs.rktnetes.io",
            "crd/rktnodestates.rktnetes.io",
        ]);
    }
}

/// A client of the identity in `kubeconfig` (the admin's, or a ServiceAccount token's).
pub async fn client_from(kubeconfig: &Path) -> Client {
    let read = Kubeconfig::read_from(kubeconfig)
        .unwrap_or_else(|error| panic!("{} is not readable: {error}", kubeconfig.display()));
    let config = Config::from_custom_kubeconfig(read, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|error| panic!("{} is not valid: {error}", kubeconfig.display()));
    Client::try_from(config).expect("a client can be built from the kubeconfig")
}

/// Runs a command in the repository; panics with its output when it fails.
pub fn run(command: &mut Command) -> Output {
    let description = format!("{command:?}");
    let output = command
        .current_dir(repo_root())
        .output()
        .unwrap_or_else(|error| panic!("cannot run {description}: {error}"));
    assert!(
        output.status.success(),
        "{description} failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}
