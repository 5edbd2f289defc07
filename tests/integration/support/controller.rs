//! A controller under test: `rktnetes controller` as a real process against the local control plane, with its
//! probes and metrics read over HTTP; and simulated agents that write RktNodeState status the way real agents do.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::StreamExt;
use k8s_openapi::api::{
    apps::v1::DaemonSet,
    core::v1::{Node, Pod},
};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
    runtime::{
        WatchStreamExt,
        watcher::{self, Event, watcher},
    },
};
use rktnetes_e2e::{
    kubeconfig::ClusterEndpoint,
    node_objects::{self, Origin},
};
use rktnetes_operator::{
    agent::ANNOUNCE_AFTER,
    api::{NodePhase, RktNodeConfig, RktNodeState, node_state::Release},
    controller::rollout::NodeProgress,
};
use serde_json::json;

use super::{
    chart,
    cluster::TestCluster,
    eventually,
    fixtures::{POOL_LABEL, TestConfig},
    kind_profile,
};

/// The namespace of the controller's Lease and the agent DaemonSet in these tests.
pub const NAMESPACE: &str = "rktnetes-system";

/// The pool the simulated nodes are in (a test may take one out of it).
pub const SIMULATED_POOL: &str = "simulated";

/// A running `rktnetes controller`; killed when dropped.
pub struct ControllerProcess {
    pub identity: String,
    child: Child,
    port: u16,
    pub log: PathBuf,
}

impl ControllerProcess {
    /// Starts a replica (as the cluster admin) and waits until it reports ready.
    pub async fn start(cluster: &TestCluster, identity: &str) -> Self {
        let args = [
            "controller",
            "--identity",
            identity,
            "--namespace",
            NAMESPACE,
            "--agent-namespace",
            NAMESPACE,
            "--lease-duration",
            "6",
            // A pass every 2 s even when nothing changes, so that "nothing changed" is checked after passes
            // (`two_more_passes`), not after a fixed wait.
            "--resync-seconds",
            "2",
        ]
        .map(str::to_owned)
        .into_iter()
        .chain([format!("--http-address={ANY_LOOPBACK_PORT}")])
        .collect();
        Self::spawn(identity, args, &cluster.kubeconfig).await
    }

    /// Starts a replica the way the Helm chart's Deployment runs it: its arguments, and a token of its
    /// ServiceAccount (so the chart's RBAC is all it has). The chart must be installed.
    pub async fn start_from_chart(cluster: &TestCluster, identity: &str) -> Self {
        Self::start_from_chart_at(cluster, &chart::endpoint(cluster), identity).await
    }

    /// As [`ControllerProcess::start_from_chart`], reaching the API server at `endpoint` (a proxy in front of it).
    pub async fn start_from_chart_at(
        cluster: &TestCluster,
        endpoint: &ClusterEndpoint,
        identity: &str,
    ) -> Self {
        let args = chart::controller_args(cluster, identity, ANY_LOOPBACK_PORT);
        let kubeconfig = chart::service_account_kubeconfig_at(
            cluster,
            endpoint,
            chart::RELEASE_NAMESPACE,
            "rktnetes-controller",
            None,
        )
        .await;
        Self::spawn(identity, args, &kubeconfig).await
    }

    /// Starts the controller with `args`, learns the port its probe server bound from its log, and waits until it
    /// is ready.
    async fn spawn(identity: &str, args: Vec<String>, kubeconfig: &Path) -> Self {
        let log =
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("controller-{identity}.log"));
        let log_file = std::fs::File::create(&log).expect("the controller log can be created");
        let child = Command::new(env!("CARGO_BIN_EXE_rktnetes"))
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info,rktnetes_operator=debug")
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("the rktnetes binary runs");
        let mut controller = Self {
            identity: identity.to_owned(),
            child,
            port: 0,
            log,
        };
        // The port its probe server bound is in its log; then it answers /readyz.
        eventually(
            &format!("controller {identity} is ready"),
            Duration::from_secs(60),
            async || {
                if let Ok(Some(status)) = controller.child.try_wait() {
                    panic!(
                        "controller {identity} exited ({status}):\n{}",
                        controller.log_tail()
                    );
                }
                if controller.port == 0 {
                    let log = std::fs::read_to_string(&controller.log).unwrap_or_default();
                    controller.port = probe_port(&log).ok_or_else(|| {
                        format!(
                            "no probe address logged yet; the log so far:\n{}",
                            controller.log_tail()
                        )
                    })?;
                }
                match controller.get("/readyz") {
                    Some((200, _)) => Ok(()),
                    answer => Err(format!(
                        "/readyz answered {answer:?}; the log ends:\n{}",
                        controller.log_tail()
                    )),
                }
            },
        )
        .await;
        controller
    }

    /// GETs a path of the probe server: the status code and body.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let code = response.split_whitespace().nth(1)?.parse().ok()?;
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_owned())?;
        Some((code, body))
    }

    /// The value of a metric, summed over its label sets.
    pub fn metric(&self, name: &str) -> f64 {
        let (_, body) = self.get("/metrics").unwrap_or_default();
        metric_in(&body, name)
    }

    /// The reconcile passes this replica made.
    pub fn passes(&self) -> f64 {
        self.metric("rktnetes_controller_reconciles_total")
    }

    /// Waits until this replica has made two more passes than now, so that whatever a change before this call
    /// leads to has been decided and written (the pass under way may have started before it; the next has not).
    /// What is unchanged after that is what the controller chose not to change: no fixed wait to hope for it.
    pub async fn two_more_passes(&self) {
        two_more_passes(&self.identity, async || self.passes()).await;
    }

    /// Every API write this replica made.
    pub fn writes(&self) -> f64 {
        self.metric("rktnetes_controller_api_writes_total")
    }

    pub fn is_leader(&self) -> bool {
        self.metric("rktnetes_controller_leader") == 1.0
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of a metric in a Prometheus text exposition, summed over its label sets.
fn metric_in(body: &str, name: &str) -> f64 {
    body.lines()
        .filter(|line| line.starts_with(name) && line[name.len()..].starts_with(['{', ' ']))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits until `passes` has grown by two (see [`ControllerProcess::two_more_passes`]).
async fn two_more_passes(who: &str, passes: impl AsyncFn() -> f64) {
    let from = passes().await;
    eventually(
        &format!("controller {who} makes two more passes"),
        Duration::from_secs(30),
        async || {
            let now = passes().await;
            if now >= from + 2.0 {
                Ok(())
            } else {
                Err(format!("{now} passes, {from} before"))
            }
        },
    )
    .await;
}

/// The controller of the node scenarios, as the chart runs it: in the local lane a replica started with the chart's
/// Deployment arguments and ServiceAccount (killed when dropped); in the kind lane the Deployment's own pods on the
/// kubelets, waited for until the Deployment has rolled out.
pub struct ChartController {
    /// The local lane's replica, held until the scenario ends; none in the kind lane.
    replica: Option<ControllerProcess>,
}

impl ChartController {
    pub async fn start(cluster: &TestCluster, identity: &str) -> Self {
        let replica = if kind_profile() {
            chart::wait_for_controller(cluster);
            None
        } else {
            Some(ControllerProcess::start_from_chart(cluster, identity).await)
        };
        Self { replica }
    }

    /// The reconcile passes made: the local replica's, or in the kind lane the sum over the Deployment's pods, read
    /// through the API server's pod proxy (only the leader makes passes; a pod that does not answer counts 0).
    pub async fn passes(&self, client: &Client) -> f64 {
        if let Some(replica) = &self.replica {
            return replica.passes();
        }
        let pods: Api<Pod> = Api::namespaced(client.clone(), chart::RELEASE_NAMESPACE);
        let controllers = ListParams::default().labels("app.kubernetes.io/component=controller");
        let Ok(pods) = pods.list(&controllers).await else {
            return 0.0;
        };
        let mut passes = 0.0;
        for pod in pods {
            let path = format!(
                "/api/v1/namespaces/{}/pods/{}:{CHART_METRICS_PORT}/proxy/metrics",
                chart::RELEASE_NAMESPACE,
                pod.name_any()
            );
            let Ok(request) = http::Request::get(path).body(Vec::new()) else {
                continue;
            };
            if let Ok(body) = client.request_text(request).await {
                passes += metric_in(&body, "rktnetes_controller_reconciles_total");
            }
        }
        passes
    }

    /// Waits until the controller has made two more passes than now (see
    /// [`ControllerProcess::two_more_passes`]).
    pub async fn two_more_passes(&self, client: &Client) {
        two_more_passes("of the chart", async || self.passes(client).await).await;
    }
}

/// The chart's default metrics port (`metrics.port`), which the lanes keep.
const CHART_METRICS_PORT: u16 = 8080;

/// The probe server's address in the tests: loopback, a port the kernel picks (the controller logs which).
const ANY_LOOPBACK_PORT: &str = "127.0.0.1:0";

/// The port of the controller's probe server, from its log line `... serving /livez, /readyz and /metrics
/// address=127.0.0.1:PORT`.
fn probe_port(log: &str) -> Option<u16> {
    log.lines()
        .filter(|line| line.contains("serving /livez"))
        .flat_map(str::split_whitespace)
        .find_map(|field| field.strip_prefix("address="))
        .and_then(|address| address.rsplit_once(':'))
        .and_then(|(_, port)| port.parse().ok())
}

/// Starts a scenario from nothing of ours in the cluster: no configs, no states, no simulated nodes. Real nodes stay,
/// and their agents clean up and let their states go, as when a user deletes a config; a simulated node has no agent,
/// so its state is let go here.
pub async fn reset(client: &Client) {
    let configs: Api<RktNodeConfig> = Api::all(client.clone());
    let states: Api<RktNodeState> = Api::all(client.clone());
    let nodes: Api<Node> = Api::all(client.clone());
    let all = ListParams::default();
    let now = DeleteParams::default();
    configs
        .delete_collection(&now, &all)
        .await
        .expect("configs can be deleted");
    states
        .delete_collection(&now, &all)
        .await
        .expect("states can be deleted");
    node_objects::forget(client, Origin::Simulated)
        .await
        .unwrap_or_else(|error| panic!("{error:#}"));
    eventually(
        "the cluster holds no configs, states or simulated nodes",
        Duration::from_secs(120),
        async || {
            let listed = |error: kube::Error| format!("cannot list: {error}");
            let registered = nodes.list(&all).await.map_err(listed)?.items;
            let is_simulated = |node: &Node| Origin::Simulated.of(node);
            let with_agent: BTreeSet<String> = registered
                .iter()
                .filter(|node| !is_simulated(node))
                .map(ResourceExt::name_any)
                .collect();
            let left = states.list(&all).await.map_err(listed)?.items;
            for state in &left {
                let node = state.name_any();
                // Made after the deletion above, by a controller that had not yet seen its config go.
                if state.metadata.deletion_timestamp.is_none() {
                    let _ = states.delete(&node, &now).await;
                }
                if !with_agent.contains(&node) {
                    lift_cleanup_finalizer(&states, state).await;
                }
            }
            let left: Vec<String> = left.iter().map(ResourceExt::name_any).collect();
            let configs_left = configs.list(&all).await.map_err(listed)?.items.len();
            let simulated_left = registered.iter().filter(|node| is_simulated(node)).count();
            if configs_left == 0 && left.is_empty() && simulated_left == 0 {
                Ok(())
            } else {
                Err(format!(
                    "{configs_left} configs, {simulated_left} simulated nodes, the states of {left:?}"
                ))
            }
        },
    )
    .await;
}

/// Deletes what the last scenario's replicas left in [`NAMESPACE`]: their Lease, so that the next replica leads
/// without waiting for it to expire, and their agent DaemonSet, so that the next scenario sees only what its own
/// replicas make.
pub async fn forget_previous_replicas(client: &Client) {
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client.clone(), NAMESPACE);
    let daemonsets: Api<DaemonSet> = Api::namespaced(client.clone(), NAMESPACE);
    let now = DeleteParams::default();
    let _ = leases.delete("rktnetes-controller", &now).await;
    let _ = daemonsets.delete("rktnetes-agent", &now).await;
    eventually(
        "the last scenario's agent DaemonSet is gone",
        Duration::from_secs(30),
        async || match daemonsets.get_opt("rktnetes-agent").await {
            Ok(None) => Ok(()),
            Ok(Some(_)) => Err("still there".to_owned()),
            Err(error) => Err(error.to_string()),
        },
    )
    .await;
}

/// Lifts the agent's cleanup finalizer as an agent does once its node is clean; errors are left to the caller's
/// next round.
async fn lift_cleanup_finalizer(states: &Api<RktNodeState>, state: &RktNodeState) {
    if let Some(release) = Release::of(state) {
        let _ = states
            .patch(
                &release.name,
                &PatchParams::default(),
                &Patch::Merge(release.patch()),
            )
            .await;
    }
}

/// Makes sure the namespace of the Lease and the DaemonSet exists.
pub async fn ensure_namespace(client: &Client) {
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let namespace =
        serde_json::from_value(json!({"metadata": {"name": NAMESPACE}})).expect("a namespace");
    match namespaces.create(&PostParams::default(), &namespace).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(error) => panic!("cannot create namespace {NAMESPACE}: {error}"),
    }
}

/// Registers `count` simulated nodes, `node-00` on, in the pool [`SIMULATED_POOL`], as kubelets would register
/// theirs; returns their names.
pub async fn create_nodes(client: &Client, count: usize) -> Vec<String> {
    let names: Vec<String> = (0..count).map(|index| format!("node-{index:02}")).collect();
    let labels = BTreeMap::from([(POOL_LABEL.to_owned(), SIMULATED_POOL.to_owned())]);
    for name in &names {
        node_objects::register(client, name, Origin::Simulated, &labels, None)
            .await
            .unwrap_or_else(|error| panic!("{error:#}"));
    }
    names
}

/// Applies a config as `kubectl apply --server-side` would.
pub async fn apply_config(client: &Client, config: TestConfig) {
    let configs: Api<RktNodeConfig> = Api::all(client.clone());
    let params = PatchParams::apply("rktnetes-tests").force();
    configs
        .patch(config.name(), &params, &Patch::Apply(config.json()))
        .await
        .expect("the config is admitted");
}

/// Every RktNodeState, by node.
pub async fn states(client: &Client) -> BTreeMap<String, RktNodeState> {
    let states: Api<RktNodeState> = Api::all(client.clone());
    states
        .list(&ListParams::default())
        .await
        .expect("states can be listed")
        .items
        .into_iter()
        .map(|state| (state.name_any(), state))
        .collect()
}

/// A config as the apiserver holds it.
pub async fn config(client: &Client, name: &str) -> RktNodeConfig {
    Api::<RktNodeConfig>::all(client.clone())
        .get(name)
        .await
        .expect("the config exists")
}

/// Agents that act on every RktNodeState: after `apply_time` they report the desired hash as applied, except on
/// `failing` nodes, which report that the rkt API service failed and they rolled back.
pub struct SimulatedAgents {
    pub failing: Arc<Mutex<BTreeSet<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl SimulatedAgents {
    pub fn start(client: Client, apply_time: Duration) -> Self {
        let failing = Arc::new(Mutex::new(BTreeSet::new()));
        let task = tokio::spawn(simulate(client, apply_time, failing.clone()));
        Self { failing, task }
    }

    pub fn fail(&self, node: &str) {
        self.failing
            .lock()
            .expect("not poisoned")
            .insert(node.to_owned());
    }

    pub fn heal(&self, node: &str) {
        self.failing.lock().expect("not poisoned").remove(node);
    }
}

impl Drop for SimulatedAgents {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn simulate(client: Client, apply_time: Duration, failing: Arc<Mutex<BTreeSet<String>>>) {
    let api: Api<RktNodeState> = Api::all(client.clone());
    let params = PatchParams::apply("simulated-agent").force();
    // When each node first saw the hash it is working on.
    let mut seen: BTreeMap<String, (String, tokio::time::Instant)> = BTreeMap::new();
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let Ok(list) = api.list(&ListParams::default()).await else {
            continue;
        };
        for state in list.items {
            let node = state.name_any();
            if state.metadata.deletion_timestamp.is_some() {
                // A real agent takes its files off the node, then lets the state go.
                lift_cleanup_finalizer(&api, &state).await;
                continue;
            }
            let hash = state.spec.hash.clone();
            let status = state.status.clone().unwrap_or_default();
            let done = status.applied_hash.as_deref() == Some(hash.as_str())
                || (state.current_phase() == Some(NodePhase::RolledBack));
            if done {
                continue;
            }
            let started = match seen.get(&node) {
                Some((seen_hash, at)) if *seen_hash == hash => *at,
                _ => {
                    let now = tokio::time::Instant::now();
                    seen.insert(node.clone(), (hash.clone(), now));
                    // As the agent does: an apply that takes a while says so.
                    if apply_time >= ANNOUNCE_AFTER {
                        let applying = json!({
                            "apiVersion": "rktnetes.io/v1alpha1", "kind": "RktNodeState",
                            "status": {"phase": "Applying", "observedHash": hash, "appliedHash": status.applied_hash}
                        });
                        let _ = api
                            .patch_status(&node, &params, &Patch::Apply(&applying))
                            .await;
                    }
                    now
                }
            };
            if started.elapsed() < apply_time {
                continue;
            }
            let fails = failing.lock().expect("not poisoned").contains(&node);
            let report = if fails {
                json!({
                    "apiVersion": "rktnetes.io/v1alpha1", "kind": "RktNodeState",
                    "status": {
                        "phase": "RolledBack",
                        "observedHash": hash,
                        "appliedHash": status.applied_hash,
                        "apiServiceHealthy": true,
                        "lastError": "the rkt API service did not answer GetInfo after the restart; the previous files were restored",
                    }
                })
            } else {
                json!({
                    "apiVersion": "rktnetes.io/v1alpha1", "kind": "RktNodeState",
                    "status": {"phase": "Applied", "observedHash": hash, "appliedHash": hash, "apiServiceHealthy": true}
                })
            };
            let _ = api
                .patch_status(&node, &params, &Patch::Apply(&report))
                .await;
        }
    }
}

/// A state's progress, as the controller's rollout sees it.
fn progress_of(state: &RktNodeState) -> NodeProgress {
    let status = state.status.clone().unwrap_or_default();
    NodeProgress {
        node: state.name_any(),
        desired_hash: Some(state.spec.hash.clone()),
        applied_hash: status.applied_hash,
        phase: state.current_phase(),
    }
}

/// Waits until `config` reports every one of `nodes` nodes ready on its current hash; returns that hash.
pub async fn converged(client: &Client, name: &str, nodes: usize) -> String {
    converged_within(client, name, nodes, Duration::from_secs(60)).await
}

/// As [`converged`], waiting up to `limit`.
pub async fn converged_within(
    client: &Client,
    name: &str,
    nodes: usize,
    limit: Duration,
) -> String {
    eventually(
        &format!("{name} converged on {nodes} nodes"),
        limit,
        async || {
            let config = config(client, name).await;
            if let Some(status) = &config.status
                && status.observed_generation == config.metadata.generation
                && status.ready_nodes == nodes as i32
                && status.matched_nodes == nodes as i32
                && let Some(hash) = &status.config_hash
            {
                let states = states(client).await;
                if states.len() == nodes
                    && states
                        .values()
                        .all(|state| progress_of(state).is_applied(Some(hash)))
                {
                    return Ok(hash.clone());
                }
            }
            Err(format!("the status {:#?}", config.status))
        },
    )
    .await
}

/// The most nodes that were unavailable (updating or degraded) at once, over every transition of the RktNodeStates:
/// a watch sees each change in the order the API server made them, so the count after each event is the cluster's
/// count at that moment, and no breach is too short to be seen. A watch resumed after a broken connection goes on
/// from the last version it saw and misses nothing; only a relist (the API server could not resume it) sees a
/// snapshot, and is counted. It also counts, for each node, how many times its spec changed.
pub struct UnavailableWatch {
    record: Arc<Mutex<WatchRecord>>,
    task: tokio::task::JoinHandle<()>,
}

/// What an [`UnavailableWatch`] saw.
#[derive(Clone, Debug, Default)]
pub struct WatchRecord {
    /// The most nodes unavailable at once.
    pub most: usize,
    /// Full lists after the first: each a moment the watch could not be resumed.
    pub relists: usize,
    /// By node, how many times its spec's hash changed.
    pub spec_changes: BTreeMap<String, usize>,
    /// By node, each phase its agent reported, with the spec hash it reported it on, in order.
    pub phases: BTreeMap<String, Vec<Reported>>,
}

/// A phase as an agent reported it: the spec hash it reported on (`status.observedHash`), and the phase.
pub type Reported = (Option<String>, Option<NodePhase>);

impl UnavailableWatch {
    /// Starts watching; returns once the watch holds its first full list, so every later change is seen.
    pub async fn start(client: Client) -> Self {
        let record = Arc::new(Mutex::new(WatchRecord::default()));
        let (listed, first_list) = tokio::sync::oneshot::channel();
        let task = tokio::spawn({
            let record = record.clone();
            async move {
                let unavailable = |states: &BTreeMap<String, RktNodeState>| {
                    states
                        .values()
                        .map(progress_of)
                        .filter(|node| node.is_updating() || node.is_degraded())
                        .count()
                };
                let mut listed = Some(listed);
                let mut states: BTreeMap<String, RktNodeState> = BTreeMap::new();
                let mut listing = BTreeMap::new();
                let watch = watcher(Api::<RktNodeState>::all(client), watcher::Config::default())
                    .default_backoff();
                let mut watch = std::pin::pin!(watch);
                while let Some(event) = watch.next().await {
                    let mut record = record.lock().expect("not poisoned");
                    let mut seen =
                        |state: &RktNodeState, states: &BTreeMap<String, RktNodeState>| {
                            let node = state.name_any();
                            if states
                                .get(&node)
                                .is_some_and(|before| before.spec.hash != state.spec.hash)
                            {
                                *record.spec_changes.entry(node.clone()).or_default() += 1;
                            }
                            let status = state.status.clone().unwrap_or_default();
                            let reported = (status.observed_hash, status.phase);
                            let phases = record.phases.entry(node).or_default();
                            if phases.last() != Some(&reported) {
                                phases.push(reported);
                            }
                        };
                    match event {
                        Ok(Event::Init) => listing.clear(),
                        Ok(Event::InitApply(state)) => {
                            if listed.is_none() {
                                seen(&state, &states);
                            }
                            listing.insert(state.name_any(), state);
                        }
                        Ok(Event::InitDone) => {
                            states = std::mem::take(&mut listing);
                            match listed.take() {
                                Some(listed) => {
                                    let _ = listed.send(());
                                }
                                None => record.relists += 1,
                            }
                        }
                        Ok(Event::Apply(state)) => {
                            seen(&state, &states);
                            states.insert(state.name_any(), state);
                        }
                        Ok(Event::Delete(state)) => {
                            states.remove(&state.name_any());
                        }
                        Err(_) => continue,
                    }
                    record.most = record.most.max(unavailable(&states));
                }
            }
        });
        first_list
            .await
            .expect("the RktNodeState watch lists them once");
        Self { record, task }
    }

    /// Stops watching; what it saw.
    pub fn finish(self) -> WatchRecord {
        self.task.abort();
        self.record.lock().expect("not poisoned").clone()
    }

    pub fn most(self) -> usize {
        self.finish().most
    }
}

pub fn condition(config: &RktNodeConfig, type_: &str) -> (String, String, String) {
    config
        .status
        .as_ref()
        .and_then(|status| status.conditions.iter().find(|c| c.type_ == type_))
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
        .unwrap_or_default()
}
