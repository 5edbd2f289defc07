//! The Helm chart as users install it, and the identities it creates: the node tests run the controller with the
//! chart's Deployment arguments and the token of the chart's ServiceAccount, so its RBAC is exactly what the
//! controller gets.

use std::{
    path::PathBuf,
    process::{Command, Output},
};

use rktnetes_e2e::{
    kubeconfig::{self, ClusterEndpoint},
    service_accounts::{self, ServiceAccountRef},
};
use serde_json::Value;

use super::{
    cluster::{TestCluster, run},
    repo_root,
};

pub use rktnetes_e2e::chart::{AGENT_NAMESPACE, CHART, RELEASE, RELEASE_NAMESPACE};
pub const KUBE_VERSION: &str = "1.37.2";

/// `helm` against this cluster.
pub fn helm(cluster: &TestCluster) -> Command {
    rktnetes_e2e::chart::helm(&cluster.tools_bin, &cluster.kubeconfig, repo_root())
}

/// Runs `helm` and returns its output whatever its exit status.
pub fn helm_output(cluster: &TestCluster, args: &[&str]) -> Output {
    helm(cluster)
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("cannot run helm {args:?}: {error}"))
}

/// `helm upgrade --install` of the chart with `extra` arguments (e.g. `--values FILE`), and the lane's own values
/// first when it has some (`RKTNETES_CHART_VALUES`: in the kind lane, the image it built and loaded); waits for
/// nothing (see [`wait_for_controller`]).
pub fn install(cluster: &TestCluster, extra: &[&str]) -> Output {
    let values = rktnetes_e2e::chart::run_values();
    run(
        rktnetes_e2e::chart::upgrade_install(&mut helm(cluster), values.as_deref())
            .args(["--set", rktnetes_e2e::chart::TEST_RESYNC])
            .args(extra),
    )
}

/// Waits until the controller Deployment's pods run on the kubelets and are ready (`kubectl rollout status`).
pub fn wait_for_controller(cluster: &TestCluster) {
    cluster.kubectl_ok(&[
        "-n",
        RELEASE_NAMESPACE,
        "rollout",
        "status",
        "deployment/rktnetes-controller",
        "--timeout=300s",
    ]);
}

/// A field of the controller Deployment, by JSONPath (`{.metadata.generation}`), or all of it with `json`.
pub fn controller_deployment(cluster: &TestCluster, output: &str) -> String {
    let output = if output == "json" {
        "json".to_owned()
    } else {
        format!("jsonpath={output}")
    };
    cluster.kubectl_ok(&[
        "-n",
        RELEASE_NAMESPACE,
        "get",
        "deployment",
        "rktnetes-controller",
        "-o",
        &output,
    ])
}

/// The controller's arguments as the chart's Deployment gives them, with the downward-API variables resolved for a
/// replica named `identity` and the probe server moved to `http_address`.
pub fn controller_args(cluster: &TestCluster, identity: &str, http_address: &str) -> Vec<String> {
    let deployment: Value = serde_json::from_str(&controller_deployment(cluster, "json"))
        .expect("the Deployment is JSON");
    let args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .expect("the controller container has args")
        .iter()
        .map(|arg| arg.as_str().expect("a string argument").to_owned());
    args.map(|arg| {
        if arg.starts_with("--http-address=") {
            format!("--http-address={http_address}")
        } else {
            arg.replace("$(POD_NAMESPACE)", RELEASE_NAMESPACE)
                .replace("$(POD_NAME)", identity)
        }
    })
    .collect()
}

/// A kubeconfig holding a fresh token of `namespace/service_account`, bound to Node `node` when given (as a pod's
/// projected token is bound to its node), written under the test target directory.
pub async fn service_account_kubeconfig(
    cluster: &TestCluster,
    namespace: &str,
    service_account: &str,
    node: Option<&str>,
) -> PathBuf {
    service_account_kubeconfig_at(
        cluster,
        &endpoint(cluster),
        namespace,
        service_account,
        node,
    )
    .await
}

/// As [`service_account_kubeconfig`], for an API server at `endpoint` (a proxy in front of the cluster's).
pub async fn service_account_kubeconfig_at(
    cluster: &TestCluster,
    endpoint: &ClusterEndpoint,
    namespace: &str,
    service_account: &str,
    node: Option<&str>,
) -> PathBuf {
    let account = ServiceAccountRef {
        namespace: namespace.to_owned(),
        name: service_account.to_owned(),
    };
    let token = service_accounts::token(&cluster.client().await, &account, node, 3600)
        .await
        .unwrap_or_else(|error| panic!("{error:#}"));
    let name = format!(
        "{namespace}-{service_account}-{}",
        node.unwrap_or("unbound")
    );
    write_token_kubeconfig(endpoint, &name, service_account, &token)
}

/// A kubeconfig for this cluster that authenticates with `token` as `user`, written under the test target
/// directory as `<name>.kubeconfig`.
pub fn token_kubeconfig(cluster: &TestCluster, name: &str, user: &str, token: &str) -> PathBuf {
    write_token_kubeconfig(&endpoint(cluster), name, user, token)
}

/// A kubeconfig for `endpoint` that authenticates with `token` as `user`, written under the test target directory
/// as `<name>.kubeconfig`.
fn write_token_kubeconfig(
    endpoint: &ClusterEndpoint,
    name: &str,
    user: &str,
    token: &str,
) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}.kubeconfig"));
    kubeconfig::write(&path, &kubeconfig::for_token(endpoint, user, token))
        .unwrap_or_else(|error| panic!("{error:#}"));
    path
}

/// Where the cluster's API server is, as its admin kubeconfig says.
pub fn endpoint(cluster: &TestCluster) -> ClusterEndpoint {
    ClusterEndpoint::of(&cluster.kubeconfig).unwrap_or_else(|error| panic!("{error:#}"))
}
