//! Nothing pulled: every image the cluster runs was in a node's containerd store or loaded by kind. containerd logs
//! each pull request (and the node image sends it to a closed port), and kubelets record a `Pulling` event before
//! one. The lane checks both after the suite; the suite's `kind::` test reads the logs the same way.

use anyhow::bail;

use super::{Lane, cluster, lane::output, log};

/// The lines of a containerd log (`journalctl -u containerd -o cat`) that record a pull request.
pub fn pull_requests(containerd_log: &str) -> Vec<&str> {
    containerd_log
        .lines()
        .filter(|line| line.contains("PullImage"))
        .collect()
}

/// Fails when any node's containerd was asked to pull or any kubelet recorded a `Pulling` event, printing them.
pub fn check_none(lane: &Lane) -> anyhow::Result<()> {
    let mut pulled = false;
    for node in cluster::nodes(lane)? {
        let log = output(
            lane.command("docker").args([
                "exec",
                &node,
                "journalctl",
                "-u",
                "containerd",
                "--no-pager",
                "-o",
                "cat",
            ]),
            &format!("{node}: journalctl -u containerd"),
        )?;
        let pulls = pull_requests(&log);
        if !pulls.is_empty() {
            eprintln!(
                "error: {node}: containerd was asked to pull:\n{}",
                pulls.join("\n")
            );
            pulled = true;
        }
    }
    let events = lane
        .kubectl_output(&[
            "get",
            "events",
            "-A",
            "--field-selector",
            "reason=Pulling",
            "-o",
            "name",
        ])
        .unwrap_or_default();
    if !events.trim().is_empty() {
        let _ =
            lane.kubectl_to_stderr(&["get", "events", "-A", "--field-selector", "reason=Pulling"]);
        pulled = true;
    }
    if pulled {
        bail!("an image was pulled from a registry: the kind lane must run only images built here");
    }
    log("no image was pulled: every image came from the node image or kind load");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pull_requests_count() {
        let log = "starting containerd\n\
                   PullImage \"registry.k8s.io/pause:3.10\"\n\
                   ImageCreate event name:\"rktnetes-operator:abc\"\n\
                   PullImage \"docker.io/library/busybox:latest\" failed\n";
        assert_eq!(
            pull_requests(log),
            [
                "PullImage \"registry.k8s.io/pause:3.10\"",
                "PullImage \"docker.io/library/busybox:latest\" failed"
            ]
        );
        assert!(pull_requests("starting containerd\nloaded plugin\n").is_empty());
    }
}
