//! Campaign 3, a hostile API server. The controller, the agents of the three test-pool machines and the simulated
//! agents of 17 more nodes reach kube-apiserver only through the hostile API server of the test support
//! (`support/hostile_api`), 20 nodes in all under one config with `maxUnavailable: 2`.
//!
//! The first rollout (every node gets the config) runs with an honest proxy and gives the undisturbed time. The
//! second (a new MTU) runs through a series of disruptions, spread over the undisturbed time: windows in which
//! watches are dropped, watches are answered 410 Gone, updates 409 Conflict, requests 429 or 5xx, answers of
//! carried-out writes are lost, latency is added, or all of these at once; and real restarts of kube-apiserver and
//! of etcd (killed and started again). `RKTNETES_HOSTILE_DISRUPTIONS` of them (10 when unset, as in CI; 20 in the
//! campaign of the README, with `RKTNETES_HOSTILE_APPLY_SECONDS` making the simulated agents slower so that the
//! rollout is long enough for them).
//!
//! It must converge within twice the undisturbed time plus 60 s; a watch on the RktNodeStates, straight to the API
//! server, must never see more than 2 nodes unavailable and must see each node's spec change once; each machine's
//! rkt API service must start once for the change; the controller and the agents must not panic nor restart; and
//! every warning or error they log must name the object it is about.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use k8s_openapi::api::{core::v1::ServiceAccount, rbac::v1::ClusterRoleBinding};
use kube::{Api, Client, api::PostParams};
use rktnetes_e2e::control_plane::Component;
use serde_json::json;

use super::{
    drill::{campaign_nodes, size_from_env},
    journal,
};
use crate::support::{
    chart,
    cluster::{client_from, cluster, serial},
    controller::{
        ControllerProcess, NAMESPACE, SIMULATED_POOL, SimulatedAgents, UnavailableWatch,
        apply_config, converged_within, create_nodes,
    },
    fixtures::{POOL_LABEL, TestConfig},
    hostile_api::{Faults, HostileApi},
    kind_profile,
    nodes::{POOL, start_agents, start_agents_at},
};

/// How many disruptions the rollout goes through.
const DISRUPTIONS: &str = "RKTNETES_HOSTILE_DISRUPTIONS";
/// Simulated nodes besides the machines of the test pool: 20 nodes in all.
const SIMULATED_NODES: usize = 17;
const MAX_UNAVAILABLE: usize = 2;
/// How many seconds a simulated agent takes to apply a change (4 when unset): a longer rollout spreads the
/// disruptions wider.
const SIMULATED_APPLY: &str = "RKTNETES_HOSTILE_APPLY_SECONDS";
/// The campaign's ServiceAccount for the simulated agents (bound to cluster-admin: they write every node's state).
const SIMULATED_AGENTS_ACCOUNT: &str = "rktnetes-campaign-agents";
/// The agents' unit on the machines.
const AGENT_UNIT: &str = "rktnetes-agent.service";

/// One disruption of the rollout.
#[derive(Clone, Debug)]
enum Disruption {
    /// The proxy meets requests with these faults until at least one request met the fate named (`None`: any
    /// fault), and for the window at least.
    Faults(&'static str, Faults, Option<&'static str>),
    /// The component is killed and started again.
    Restart(Component),
}

impl Disruption {
    fn name(&self) -> String {
        match self {
            Self::Faults(name, ..) => (*name).to_owned(),
            Self::Restart(component) => format!("{} restarted", component.program()),
        }
    }
}

/// The longest a fault window waits for a request to meet its fault.
const LONGEST_WINDOW: Duration = Duration::from_secs(15);

/// The disruptions, in the order they come, `count` of them (the list repeats).
fn disruptions(count: usize) -> Vec<Disruption> {
    let faults = |name, faults, fate| Disruption::Faults(name, faults, Some(fate));
    let some = Faults::default();
    let cycle = [
        faults(
            "watches dropped",
            Faults {
                dropped_watch: 1.0,
                ..some.clone()
            },
            "watch dropped",
        ),
        faults(
            "watches expired (410)",
            Faults {
                gone: 1.0,
                ..some.clone()
            },
            "410 Gone",
        ),
        faults(
            "updates conflict (409)",
            Faults {
                conflict: 1.0,
                ..some.clone()
            },
            "409 Conflict",
        ),
        faults(
            "throttled (429)",
            Faults {
                throttled: 0.7,
                ..some.clone()
            },
            "429 Too Many Requests",
        ),
        Disruption::Restart(Component::KubeApiserver),
        faults(
            "server errors (5xx)",
            Faults {
                server_error: 0.7,
                ..some.clone()
            },
            "5xx",
        ),
        faults(
            "answers of writes lost (504)",
            Faults {
                lost_answer: 0.7,
                ..some.clone()
            },
            "answer lost",
        ),
        faults(
            "latency up to 2 s",
            Faults {
                latency: Duration::from_secs(2),
                ..some.clone()
            },
            "delayed",
        ),
        Disruption::Restart(Component::Etcd),
        Disruption::Faults(
            "everything at once",
            Faults {
                latency: Duration::from_millis(300),
                gone: 0.2,
                dropped_watch: 0.3,
                conflict: 0.2,
                throttled: 0.2,
                server_error: 0.2,
                lost_answer: 0.2,
            },
            None,
        ),
    ];
    cycle.into_iter().cycle().take(count).collect()
}

/// How many requests met `fate` (`None`: any fault) in `tally`.
fn met(tally: &BTreeMap<(&'static str, &'static str), u64>, fate: Option<&str>) -> u64 {
    tally
        .iter()
        .filter(|((_, met), _)| match fate {
            Some(fate) => *met == fate,
            None => !matches!(*met, "forwarded" | "delayed"),
        })
        .map(|(_, count)| count)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_through_a_hostile_api_server_converges_within_its_budget() {
    if kind_profile() {
        return;
    }
    let _serial = serial().lock().await;
    let count: usize = size_from_env(DISRUPTIONS, 10);
    let apply = Duration::from_secs(size_from_env(SIMULATED_APPLY, 4));
    let client = campaign_nodes().await;
    let cluster = cluster();
    let plane = cluster.plane.as_ref().expect("the local control plane");
    let (certificate, key) = plane.api_serving_identity();
    let proxy = HostileApi::start(&chart::endpoint(cluster), (&certificate, &key), 7);
    let endpoint = proxy.endpoint();

    // Everything of ours reaches the API server through the proxy; the campaign's own watch does not.
    let _agents_back = AgentsBack;
    start_agents_at(&endpoint);
    let simulated = create_nodes(&client, SIMULATED_NODES).await;
    let agents_client = client_from(&simulated_agents_kubeconfig(&client, &endpoint).await).await;
    let _simulated_agents = SimulatedAgents::start(agents_client, apply);
    let controller = ControllerProcess::start_from_chart_at(cluster, &endpoint, "hostile").await;
    let nodes = POOL.len() + simulated.len();
    let config = TestConfig::example("bridge").named("hostile").set(
        "/spec/nodeSelector",
        json!({"matchExpressions": [
            {"key": POOL_LABEL, "operator": "In", "values": ["e2e", SIMULATED_POOL]}
        ]}),
    );
    let config = config.max_unavailable(MAX_UNAVAILABLE as i64);

    // Undisturbed: every node gets the config.
    let watch = UnavailableWatch::start(client.clone()).await;
    let started = Instant::now();
    apply_config(&client, config.clone()).await;
    converged_within(&client, "hostile", nodes, Duration::from_secs(600)).await;
    let undisturbed = started.elapsed();
    let quiet = watch.finish();
    assert!(
        quiet.most <= MAX_UNAVAILABLE,
        "{} nodes unavailable at once undisturbed",
        quiet.most
    );

    // Disturbed: a new MTU through the disruptions.
    let cursors: BTreeMap<&str, String> = POOL
        .iter()
        .map(|node| (*node, journal::cursor(node)))
        .collect();
    let controller_log_from = std::fs::metadata(&controller.log).map_or(0, |log| log.len());
    let watch = UnavailableWatch::start(client.clone()).await;
    let budget = undisturbed * 2 + Duration::from_secs(60);
    let started = Instant::now();
    apply_config(&client, config.mtu(1400)).await;
    let plan = disruptions(count);
    // Spread over the first 60 % of the undisturbed time, so that all of them fall inside the rollout.
    let period = (undisturbed.mul_f64(0.6) / count as u32).max(Duration::from_secs(2));
    let mut done = Vec::new();
    for disruption in &plan {
        let began = Instant::now();
        match disruption {
            Disruption::Faults(name, faults, fate) => {
                let before = met(&proxy.tally(), *fate);
                proxy.set(faults.clone());
                tokio::time::sleep(period.mul_f64(2.0 / 3.0)).await;
                while met(&proxy.tally(), *fate) == before && began.elapsed() < LONGEST_WINDOW {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                proxy.set(Faults::default());
                let met = met(&proxy.tally(), *fate) - before;
                assert!(
                    met > 0,
                    "no request met the fault of \"{name}\" in {LONGEST_WINDOW:?}"
                );
            }
            Disruption::Restart(component) => {
                let component = *component;
                tokio::task::spawn_blocking(move || plane.crash_and_restart(component))
                    .await
                    .expect("the restart's thread")
                    .unwrap_or_else(|error| panic!("{error:#}"));
            }
        }
        done.push(format!(
            "{} ({:.1} s)",
            disruption.name(),
            began.elapsed().as_secs_f64()
        ));
        tokio::time::sleep(period.saturating_sub(began.elapsed())).await;
    }
    let disrupted_for = started.elapsed();
    converged_within(
        &client,
        "hostile",
        nodes,
        budget.saturating_sub(started.elapsed()),
    )
    .await;
    let disturbed = started.elapsed();
    let record = watch.finish();
    let converged_after_disruptions = disturbed > disrupted_for;

    let tally = proxy.tally();
    let restarts: BTreeMap<&str, u64> = cursors
        .iter()
        .map(|(node, cursor)| (*node, journal::api_service_starts_after(node, cursor)))
        .collect();
    let agent_lines: BTreeMap<&str, String> = cursors
        .iter()
        .map(|(node, cursor)| (*node, journal::unit_lines_after(node, AGENT_UNIT, cursor)))
        .collect();
    let controller_log = std::fs::read_to_string(&controller.log).expect("the controller's log");
    let controller_log = controller_log
        .get(controller_log_from as usize..)
        .unwrap_or_default();
    let warnings = warnings_without_object(controller_log, &agent_lines);
    let warning_count = logged_warnings(controller_log)
        + agent_lines
            .values()
            .map(|lines| logged_warnings(lines))
            .sum::<usize>();
    eprintln!(
        "hostile API campaign: {nodes} nodes, maxUnavailable {MAX_UNAVAILABLE}; undisturbed {:.1} s, through {} \
         disruptions ({:.1} s of them) {:.1} s (budget {:.1} s); most unavailable {}; relists of the watch {}; \
         disruptions: {}; requests by fate {tally:?}; rkt API service starts {restarts:?}; {warning_count} \
         warnings logged",
        undisturbed.as_secs_f64(),
        plan.len(),
        disrupted_for.as_secs_f64(),
        disturbed.as_secs_f64(),
        budget.as_secs_f64(),
        record.most,
        record.relists,
        done.join(", "),
    );

    assert!(
        converged_after_disruptions,
        "the rollout converged before its {count} disruptions were over ({:.1} s): lengthen it",
        disrupted_for.as_secs_f64()
    );
    assert!(
        record.most <= MAX_UNAVAILABLE,
        "{} nodes were unavailable at once with maxUnavailable {MAX_UNAVAILABLE}",
        record.most
    );
    let not_once: BTreeMap<&String, &usize> = record
        .spec_changes
        .iter()
        .filter(|(_, changes)| **changes != 1)
        .collect();
    assert!(
        not_once.is_empty() && record.spec_changes.len() == nodes,
        "each of the {nodes} nodes' spec must change once; changes by node: {:?}",
        record.spec_changes
    );
    for (node, starts) in &restarts {
        assert_eq!(
            *starts, 1,
            "{node}'s rkt API service started {starts} times for one change"
        );
    }
    for (who, log) in agent_lines
        .iter()
        .map(|(node, lines)| (*node, lines.as_str()))
        .chain([("the controller", controller_log)])
    {
        assert!(!log.contains("panicked"), "{who} panicked:\n{log}");
    }
    for (node, lines) in &agent_lines {
        assert!(
            !lines.contains("agent started"),
            "the agent on {node} restarted:\n{lines}"
        );
    }
    assert!(
        warnings.is_empty(),
        "warnings that name no object:\n{}",
        warnings.join("\n")
    );
    drop(controller);
}

/// The warnings and errors in `log` (tracing's text lines).
fn logged_warnings(log: &str) -> usize {
    log.lines().filter(|line| is_warning(line)).count()
}

fn is_warning(line: &str) -> bool {
    line.contains(" WARN ") || line.contains(" ERROR ")
}

/// The warnings and errors of the controller and the agents that do not say which object they are about: an agent's
/// name their node (the agent's span, `agent{node=...}`); the controller's the object written (`kind=... name=...`),
/// the config (`config=`), the watch (`watch=`) or the Lease (`lease=`).
fn warnings_without_object(controller: &str, agents: &BTreeMap<&str, String>) -> Vec<String> {
    let controller = controller
        .lines()
        .filter(|line| is_warning(line))
        .filter(|line| {
            !["name=", "config=", "watch=", "lease="]
                .iter()
                .any(|field| line.contains(field))
        });
    let agents = agents.iter().flat_map(|(node, lines)| {
        lines
            .lines()
            .filter(|line| is_warning(line))
            .filter(move |line| !line.contains(&format!("node={node}")))
    });
    controller.chain(agents).map(str::to_owned).collect()
}

/// A kubeconfig at `endpoint` for the simulated agents: a ServiceAccount of the campaign's, bound to cluster-admin.
async fn simulated_agents_kubeconfig(
    client: &Client,
    endpoint: &rktnetes_e2e::kubeconfig::ClusterEndpoint,
) -> std::path::PathBuf {
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), NAMESPACE);
    let account = serde_json::from_value(json!({"metadata": {"name": SIMULATED_AGENTS_ACCOUNT}}))
        .expect("a ServiceAccount");
    let bindings: Api<ClusterRoleBinding> = Api::all(client.clone());
    let binding = serde_json::from_value(json!({
        "metadata": {"name": SIMULATED_AGENTS_ACCOUNT},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": SIMULATED_AGENTS_ACCOUNT, "namespace": NAMESPACE}],
    }))
    .expect("a ClusterRoleBinding");
    let made = |result: Result<(), kube::Error>, what: &str| match result {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(error) => panic!("cannot create the {what}: {error}"),
    };
    made(
        accounts
            .create(&PostParams::default(), &account)
            .await
            .map(drop),
        "simulated agents' ServiceAccount",
    );
    made(
        bindings
            .create(&PostParams::default(), &binding)
            .await
            .map(drop),
        "simulated agents' ClusterRoleBinding",
    );
    chart::service_account_kubeconfig_at(
        cluster(),
        endpoint,
        NAMESPACE,
        SIMULATED_AGENTS_ACCOUNT,
        None,
    )
    .await
}

/// When the campaign ends, however it ends, the machines' agents reach the API server directly again.
struct AgentsBack;

impl Drop for AgentsBack {
    fn drop(&mut self) {
        start_agents();
    }
}
