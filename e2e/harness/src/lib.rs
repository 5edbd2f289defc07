//! The end-to-end harness, one way for the tests, the demo and the lanes alike. [`machines`]: the test machines
//! themselves (a cached debootstrapped Debian root, an overlay or copy per machine, systemd-nspawn in cgroups of
//! its own behind a host bridge, exec into a machine, teardown that also cleans what a killed run left), which
//! `rktnetes-e2e nodes` and its shim `e2e/nodes.sh` run. [`control_plane`]: the local etcd, kube-apiserver and
//! kube-controller-manager (`rktnetes-e2e cluster`, `e2e/cluster.sh`). The Kubernetes side: registering the
//! machines as Node objects, minting ServiceAccount tokens (bound to a Node, as a pod's projected token is),
//! writing the kubeconfigs that carry them, and starting the machines' agents with them. The chart as the runs
//! install it ([`chart`]), the kind lane's orchestration ([`kind_lane`], `rktnetes-e2e kind`), the fuzzing
//! campaign ([`fuzz`]), rkt release archives made from the stand-in ([`releases`]), and the scale bench
//! ([`scale`]).

pub mod chart;
pub mod control_plane;
pub mod fuzz;
pub mod kind_lane;
pub mod kubeconfig;
pub mod machines;
pub mod node_objects;
pub mod output;
pub mod owned_dir;
pub mod processes;
pub mod releases;
pub mod scale;
pub mod service_accounts;
pub mod settings;

use std::collections::BTreeMap;

use anyhow::Context;
use kube::Client;
pub use output::log;

use self::{
    kubeconfig::ClusterEndpoint,
    machines::Machines,
    node_objects::Origin,
    service_accounts::{ServiceAccountRef, token},
};

/// Where a machine's agent finds its kubeconfig (`e2e/node/rktnetes-agent.service` passes it).
pub const AGENT_KUBECONFIG: &str = "/etc/rktnetes/kubeconfig";
/// How long the agents' tokens live: longer than any test run or demo session.
const AGENT_TOKEN_SECONDS: i64 = 24 * 3600;

/// Registers every running machine as a Node object with `labels`, then starts its agent.
pub async fn join(
    client: &Client,
    endpoint: &ClusterEndpoint,
    machines: &Machines,
    labels: &BTreeMap<String, String>,
    agent: &ServiceAccountRef,
) -> anyhow::Result<Vec<String>> {
    let running = machines.running()?;
    anyhow::ensure!(
        !running.is_empty(),
        "no test machine runs; start them with e2e/nodes.sh up N"
    );
    node_objects::forget(client, Origin::Machine).await?;
    for machine in &running {
        node_objects::register(
            client,
            &machine.name,
            Origin::Machine,
            labels,
            Some(&machine.address),
        )
        .await?;
    }
    let names: Vec<String> = running.into_iter().map(|machine| machine.name).collect();
    start_agents(client, endpoint, machines, &names, agent).await?;
    Ok(names)
}

/// (Re)starts the agents of `names` with fresh tokens of `agent`, each bound to its Node, reaching the API server at
/// the address the machines reach this host at.
pub async fn start_agents(
    client: &Client,
    endpoint: &ClusterEndpoint,
    machines: &Machines,
    names: &[String],
    agent: &ServiceAccountRef,
) -> anyhow::Result<()> {
    let from_machines = endpoint.at_host(&machines.host_address()?)?;
    for name in names {
        let token = token(client, agent, Some(name), AGENT_TOKEN_SECONDS).await?;
        let kubeconfig = kubeconfig::for_token(&from_machines, &agent.name, &token);
        machines
            .write_file(name, AGENT_KUBECONFIG, &kubeconfig)
            .with_context(|| format!("writing {name}'s agent kubeconfig"))?;
        machines.exec(name, &["systemctl", "restart", "rktnetes-agent.service"])?;
    }
    Ok(())
}
