//! The suite against the kind cluster: the integration tests' `nodes::` and `kind::` with the lane's environment
//! (`RKTNETES_E2E_PROFILE=kind`, the nodes reached with `docker exec`), then the check that nothing was pulled.

use anyhow::bail;

use super::{Lane, cluster, log, pulls};
use crate::chart::VALUES_ENV;

/// What the test binary gets when the caller gives nothing: the node suite and the lane's checks, which print what
/// they saw (the pods, where they run) also when they pass.
const DEFAULT_TEST_ARGS: [&str; 3] = ["nodes::", "kind::", "--show-output"];

/// Runs the suite with `test_args` (or the default ones) against the cluster that setup made, then checks that
/// nothing was pulled, whether the suite passed or not.
pub fn test(lane: &mut Lane, test_args: &[String]) -> anyhow::Result<()> {
    lane.use_engine()?;
    if !cluster::exists(lane)? {
        bail!(
            "there is no kind cluster {}; run: e2e/kind/run.sh setup",
            lane.cluster
        );
    }
    if !lane.values_file().is_file() {
        bail!(
            "the kind cluster {} was not set up by this lane; run: e2e/kind/run.sh setup",
            lane.cluster
        );
    }
    cluster::export_kubeconfig(lane)?;
    let workers = cluster::workers(lane)?.join(" ");
    log(format!(
        "running the node end-to-end suite and the lane's checks against {} ({workers})",
        lane.cluster
    ));
    // Inherited stdout: cargo test's report, with its summary lines, is the run's output.
    let status = lane
        .command("cargo")
        .env("PATH", lane.suite_path()?)
        .env("KUBECONFIG", lane.kubeconfig())
        .env("RKTNETES_E2E_PROFILE", "kind")
        .env(
            "RKTNETES_NODE_EXEC",
            lane.settings.script("kind/node-exec.sh"),
        )
        .env("RKTNETES_KIND_NODES", &workers)
        .env(VALUES_ENV, lane.values_file())
        .args([
            "test",
            "--locked",
            "--no-fail-fast",
            "--test",
            "integration",
        ])
        .args(["--", "--include-ignored"])
        .args(test_args_or_default(test_args))
        .status();
    log("the pods at the end of the suite");
    if let Err(error) = lane.kubectl_to_stderr(&["get", "pods", "-A", "-o", "wide"]) {
        eprintln!("({error:#})");
    }
    pulls::check_none(lane)?;
    match status {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => bail!("the suite failed (cargo test: {status})"),
        Err(error) => bail!("cannot run cargo test: {error}"),
    }
}

fn test_args_or_default(test_args: &[String]) -> Vec<String> {
    if test_args.is_empty() {
        DEFAULT_TEST_ARGS.map(str::to_owned).to_vec()
    } else {
        test_args.to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_arguments_replace_the_default_ones() {
        assert_eq!(
            test_args_or_default(&[]),
            ["nodes::", "kind::", "--show-output"]
        );
        assert_eq!(test_args_or_default(&["kind::".to_owned()]), ["kind::"]);
    }
}
