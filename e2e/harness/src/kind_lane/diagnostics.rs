//! What the cluster and its pods did, printed into a failed run's log before the cluster is deleted: afterwards
//! nobody can ask it.

use crate::chart::{AGENT_NAMESPACE, CONTROLLER_DEPLOYMENT, RELEASE_NAMESPACE};

use super::{Lane, log};
use crate::output::last_lines;

/// How many recent Events the log gets.
const EVENTS: usize = 40;

/// Prints the nodes, pods, configs and states, recent Events and the controller's and agents' logs to stderr. Each
/// part is best effort: a broken cluster may answer some and not others.
pub fn print(lane: &Lane) {
    log(format!("diagnostics of the kind cluster {}", lane.cluster));
    let controller = format!("deployment/{CONTROLLER_DEPLOYMENT}");
    let listings: [&[&str]; 3] = [
        &["get", "nodes", "-o", "wide"],
        &["get", "pods", "-A", "-o", "wide"],
        &["get", "rktnodeconfigs,rktnodestates", "-o", "wide"],
    ];
    for args in listings {
        report(lane.kubectl_to_stderr(args));
    }
    match lane.kubectl_output(&["get", "events", "-A", "--sort-by=.lastTimestamp"]) {
        Ok(events) => eprintln!("{}", last_lines(&events, EVENTS)),
        Err(error) => report(Err(error)),
    }
    report(lane.kubectl_to_stderr(&[
        "-n",
        RELEASE_NAMESPACE,
        "logs",
        &controller,
        "--all-containers",
        "--tail=60",
    ]));
    report(lane.kubectl_to_stderr(&[
        "-n",
        AGENT_NAMESPACE,
        "logs",
        "-l",
        "app.kubernetes.io/name=rktnetes-agent",
        "--tail=30",
        "--prefix",
    ]));
}

fn report(result: anyhow::Result<()>) {
    if let Err(error) = result {
        eprintln!("({error:#})");
    }
}
