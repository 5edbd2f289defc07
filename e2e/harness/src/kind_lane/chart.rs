//! The chart on the kind cluster, installed as the README's install steps say: the operator image loaded into the
//! nodes, the CRDs applied, the controller's namespace enforcing the `restricted` Pod Security level, and the
//! release installed with the values the suite's own `helm upgrade`s use too.

use std::{fs, io::Write, process::Stdio};

use anyhow::{Context, bail};

use super::{
    Lane,
    lane::{run_quiet, run_to_stderr},
    log,
};
use crate::chart::{
    CHART, CONTROLLER_DEPLOYMENT, RELEASE, RELEASE_NAMESPACE, helm, local_image_values,
    upgrade_install,
};

/// Installs the chart with `operator_image` and waits for the controller Deployment's rollout.
pub fn install(lane: &Lane, operator_image: &str) -> anyhow::Result<()> {
    log(format!("loading {operator_image} into the nodes"));
    run_to_stderr(
        lane.kind().args([
            "load",
            "docker-image",
            "--name",
            &lane.cluster,
            operator_image,
        ]),
        "kind load docker-image",
    )
    .with_context(|| format!("kind could not load {operator_image}"))?;
    let values = lane.values_file();
    fs::write(&values, local_image_values(operator_image)?)
        .with_context(|| format!("writing {}", values.display()))?;

    // Helm installs a chart's CRDs only on its first install; applying them first keeps a re-run's CRDs current.
    log(format!(
        "installing the CRDs and the chart (release {RELEASE} in {RELEASE_NAMESPACE})"
    ));
    lane.kubectl_quiet(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=rktnetes-kind",
        "-f",
        &format!("{CHART}/crds/"),
    ])?;
    lane.kubectl_quiet(&[
        "wait",
        // A JSONPath wait, as a condition wait fails at once on a CRD that has no conditions yet.
        "--for=jsonpath={.status.conditions[?(@.type==\"Established\")].status}=True",
        "--timeout=60s",
        "crd/rktnodeconfigs.rktnetes.io",
        "crd/rktnodestates.rktnetes.io",
    ])?;
    apply_restricted_namespace(lane)?;

    let mut helm = helm(
        &lane.settings.tools_bin()?,
        &lane.kubeconfig(),
        &lane.settings.repo,
    );
    helm.stdin(Stdio::null());
    run_quiet(
        upgrade_install(&mut helm, Some(&values)).arg("--skip-crds"),
        "helm upgrade --install",
    )
    .context("helm could not install the chart")?;

    log("waiting for the controller Deployment");
    lane.kubectl_to_stderr(&[
        "-n",
        RELEASE_NAMESPACE,
        "rollout",
        "status",
        &format!("deployment/{CONTROLLER_DEPLOYMENT}"),
        &lane.timeout_arg(),
    ])
    .context("the controller Deployment did not become available")
}

/// The controller's namespace, enforcing (and warning at) the `restricted` Pod Security level.
fn apply_restricted_namespace(lane: &Lane) -> anyhow::Result<()> {
    let mut kubectl = lane.kubectl()?;
    let mut child = kubectl
        .args([
            "apply",
            "--server-side",
            "--field-manager=rktnetes-kind",
            "-f",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .context("cannot run kubectl apply")?;
    child
        .stdin
        .take()
        .context("kubectl's stdin")?
        .write_all(restricted_namespace(RELEASE_NAMESPACE).as_bytes())
        .context("writing the namespace to kubectl")?;
    let status = child.wait().context("waiting for kubectl apply")?;
    if !status.success() {
        bail!("kubectl could not apply the namespace {RELEASE_NAMESPACE} ({status})");
    }
    Ok(())
}

fn restricted_namespace(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n  labels:\n    \
         pod-security.kubernetes.io/enforce: restricted\n    pod-security.kubernetes.io/warn: restricted\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_namespace_enforces_and_warns_at_restricted() {
        assert_eq!(
            restricted_namespace("rktnetes-system"),
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: rktnetes-system\n  labels:\n    \
             pod-security.kubernetes.io/enforce: restricted\n    pod-security.kubernetes.io/warn: restricted\n"
        );
    }
}
