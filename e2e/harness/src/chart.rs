//! The Helm chart as the end-to-end runs install it, one way for the integration tests and the kind lane: the
//! release and its namespaces, `helm upgrade --install` with the lane's values, and the values that make the chart
//! run an image built and loaded here.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Context;

use crate::machines::AGENT_METRICS_PORT;

/// The Helm release.
pub const RELEASE: &str = "rktnetes";
/// The release's namespace, where the controller Deployment runs.
pub const RELEASE_NAMESPACE: &str = "rktnetes-system";
/// The agent DaemonSet's namespace (the chart's `agent.namespace`).
pub const AGENT_NAMESPACE: &str = "rktnetes-agent";
/// The chart, relative to the checkout's root.
pub const CHART: &str = "charts/rktnetes-operator";
/// The controller's Deployment.
pub const CONTROLLER_DEPLOYMENT: &str = "rktnetes-controller";
/// A values file that every install of a run adds first: the kind lane points it at the image it built and loaded,
/// so the tests' own `helm upgrade`s keep that image.
pub const VALUES_ENV: &str = "RKTNETES_CHART_VALUES";

/// `helm` from `tools_bin` against the cluster of `kubeconfig`, run in the checkout `repo`. Its cache and
/// configuration live in the temporary directory: a run needs no repositories, and leaves the user's alone.
pub fn helm(tools_bin: &Path, kubeconfig: &Path, repo: &Path) -> Command {
    let mut command = Command::new(tools_bin.join("helm"));
    command
        .env("KUBECONFIG", kubeconfig)
        .env(
            "HELM_CACHE_HOME",
            env::temp_dir().join("rktnetes-helm-cache"),
        )
        .env(
            "HELM_CONFIG_HOME",
            env::temp_dir().join("rktnetes-helm-config"),
        )
        .current_dir(repo);
    command
}

/// Adds `upgrade --install` of the chart's release in its namespace (created when missing) to `helm`, with the
/// run's `values` file when there is one (see [`run_values`]); the caller adds its own arguments after these, so its
/// values win.
pub fn upgrade_install<'a>(helm: &'a mut Command, values: Option<&Path>) -> &'a mut Command {
    helm.args(["upgrade", "--install", RELEASE, CHART]).args([
        "--namespace",
        RELEASE_NAMESPACE,
        "--create-namespace",
    ]);
    if let Some(values) = values {
        helm.arg("--values").arg(values);
    }
    helm
}

/// The controller's resync in the test runs: a pass every 5 s at rest (the chart's default is a minute), so that a
/// test waiting for two more passes to show that nothing changed waits seconds, not minutes.
pub const TEST_RESYNC: &str = "controller.resyncSeconds=5";

/// The run's values file ([`VALUES_ENV`]), if it has one.
pub fn run_values() -> Option<PathBuf> {
    env::var_os(VALUES_ENV)
        .filter(|values| !values.is_empty())
        .map(PathBuf::from)
}

/// Values that run `image` (`repository:tag`, already on every node: never pulled) with agents that check their
/// node every 3 s and serve their metrics on [`AGENT_METRICS_PORT`], as the nspawn nodes' agents do, so the suite
/// reads both alike, and the test runs' controller resync ([`TEST_RESYNC`]).
pub fn local_image_values(image: &str) -> anyhow::Result<String> {
    let (repository, tag) = image
        .rsplit_once(':')
        .filter(|(repository, tag)| !repository.is_empty() && !tag.is_empty() && !tag.contains('/'))
        .with_context(|| format!("the operator image {image:?} is not REPOSITORY:TAG"))?;
    Ok(format!(
        "image:\n  repository: {repository}\n  tag: {tag}\n  pullPolicy: Never\nagent:\n  checkIntervalSeconds: 3\n  \
         metrics:\n    port: {AGENT_METRICS_PORT}\ncontroller:\n  resyncSeconds: 5\n"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_values_name_the_local_image_and_never_pull_it() {
        let values =
            local_image_values("localhost:5000/rktnetes-operator:0123abcd").expect("valid");
        assert_eq!(
            values,
            "image:\n  repository: localhost:5000/rktnetes-operator\n  tag: 0123abcd\n  pullPolicy: Never\n\
             agent:\n  checkIntervalSeconds: 3\n  metrics:\n    port: 9478\ncontroller:\n  resyncSeconds: 5\n"
        );
        assert!(local_image_values("rktnetes-operator").is_err());
        assert!(local_image_values("localhost:5000/rktnetes-operator").is_err());
        assert!(local_image_values("rktnetes-operator:").is_err());
    }
}
