//! The scale bench (`e2e/scale.sh`, `rktnetes-e2e scale`): what the operator costs a cluster of 1,000 to 20,000
//! nodes, on the project's own control plane. Node objects shaped like cloud nodes are made through the real API
//! and heart-beat like kubelets; the three example configs select them; the controller runs as a process (the
//! release build, the chart's settings); the agents are simulated in one process, one watch each. Every figure
//! comes from the processes themselves (`/proc`) or from the API server (its audit log, its metrics); the table
//! puts the goals beside them. A benchmark, not a test: nothing here is timed against a limit; `--gate` fails on
//! writes at rest (counts, not times).

pub mod agents;
mod audit;
mod cloud_nodes;
mod configs;
mod controller;
mod kubelets;
mod measure;
mod report;

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use k8s_openapi::api::{apps::v1::DaemonSet, core::v1::ServiceAccount};
use kube::{
    Api, Client, Config,
    api::{ListParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
};
use serde_json::json;

use self::{
    audit::Mark,
    configs::Done,
    controller::Controller,
    kubelets::{Heartbeats, Kubelets},
    measure::Memory,
    report::Figures,
};
use crate::{
    control_plane::{Component, ControlPlane},
    kubeconfig::{self, ClusterEndpoint},
    log,
    processes::Pid,
    service_accounts::{ServiceAccountRef, token},
    settings::Settings,
};

/// The namespace of the bench's controller Lease, agent DaemonSet and ServiceAccounts.
const NAMESPACE: &str = "rktnetes-bench";
const CONTROLLER_ACCOUNT: &str = "rktnetes-controller";
const AGENT_ACCOUNT: &str = "rktnetes-agent";
/// Node objects are made this many at a time.
const CREATE_PARALLEL: usize = 32;

#[derive(clap::Args, Clone, Debug)]
pub struct ScaleArgs {
    /// Node counts, ascending: each size adds nodes to the last.
    #[arg(long, value_delimiter = ',', default_values_t = [1000, 5000, 20_000])]
    pub nodes: Vec<usize>,
    /// The operator's binary (the release build: `cargo build --release`).
    #[arg(long)]
    pub operator: PathBuf,
    /// How long a converged cluster is watched for writes, in seconds.
    #[arg(long, default_value_t = 600)]
    pub rest_seconds: u64,
    /// How long each simulated agent takes to apply a spec, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub apply_delay_ms: u64,
    /// Sizes above this run without simulated agents, every node at once (each agent holds a connection, and
    /// this machine's open-file limit is 20,000 for the API server and the agents' process alike).
    #[arg(long, default_value_t = 5000)]
    pub agents_up_to: usize,
    /// How often each node's Lease is renewed, in seconds (0: no heartbeats).
    #[arg(long, default_value_t = 10)]
    pub lease_seconds: u64,
    /// How often each node posts its status, in seconds.
    #[arg(long, default_value_t = 300)]
    pub status_seconds: u64,
    /// Fails when the operator writes anything at rest (but its leader Lease).
    #[arg(long)]
    pub gate: bool,
    /// Where the logs and the table go.
    #[arg(long)]
    pub out: PathBuf,
    /// Leaves the bench's Node objects in the cluster (a later run adds to them); by default they are deleted at
    /// the end, so that the test suites' configs never select them.
    #[arg(long)]
    pub keep_nodes: bool,
}

/// The goal for the writes of one change, per node, controller and agent together.
pub const WRITES_PER_NODE_GOAL: f64 = 2.5;

/// Runs the bench on the control plane and prints the table.
pub async fn run(args: &ScaleArgs, settings: &Settings) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.nodes.windows(2).all(|pair| pair[0] < pair[1])
            && args.nodes.first().is_some_and(|n| *n > 0),
        "--nodes must be ascending and positive: {:?}",
        args.nodes
    );
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let plane = ControlPlane::from_env(settings)?;
    let bench = Bench::prepare(args, settings, &plane).await?;
    let mut figures = Vec::new();
    let mut kubelets: Option<Kubelets> = None;
    for &nodes in &args.nodes {
        log(format!("{nodes} nodes: making the Node objects"));
        let started = Instant::now();
        let made = cloud_nodes::ensure(&bench.admin, nodes, CREATE_PARALLEL).await?;
        log(format!(
            "made {made} Node objects in {} s",
            started.elapsed().as_secs()
        ));
        drop(kubelets.take());
        if args.lease_seconds > 0 {
            kubelets = Some(Kubelets::start(
                bench.kubelets.clone(),
                Heartbeats {
                    nodes,
                    lease_interval: Duration::from_secs(args.lease_seconds),
                    status_interval: Duration::from_secs(args.status_seconds),
                },
            ));
        }
        let mut size = bench.measure(nodes).await?;
        size.node_bytes = cloud_nodes::served_size(&bench.admin).await?;
        if let Some(kubelets) = &kubelets {
            size.heartbeat_failures = kubelets
                .counts
                .failures
                .load(std::sync::atomic::Ordering::Relaxed);
        }
        println!("{}", report::size_summary(&size));
        figures.push(size);
    }
    drop(kubelets);
    if !args.keep_nodes {
        log("deleting the bench's Node objects");
        cloud_nodes::forget(&bench.admin).await?;
    }
    let table = report::table(&figures, args);
    println!("{table}");
    let path = args.out.join("table.md");
    std::fs::write(&path, &table).with_context(|| format!("writing {}", path.display()))?;
    log(format!("the table is in {}", path.display()));
    if args.gate {
        report::gate(&figures)?;
    }
    Ok(())
}

struct Bench {
    args: ScaleArgs,
    plane: ControlPlane,
    admin: Client,
    kubelets: Client,
    controller_kubeconfig: PathBuf,
    agent_kubeconfig: PathBuf,
    controller_user: String,
    agent_user: String,
    kubectl: PathBuf,
    examples: PathBuf,
}

impl Bench {
    /// The CRDs, the namespace, the ServiceAccounts (bound to cluster-admin: the agents' per-node admission policy
    /// needs one token per node, which one process of agents does not have) and their kubeconfigs; no config left
    /// from an earlier run.
    async fn prepare(
        args: &ScaleArgs,
        settings: &Settings,
        plane: &ControlPlane,
    ) -> anyhow::Result<Self> {
        let admin = client_of(&plane.admin_kubeconfig()).await?;
        let kubelets = client_of(&plane.bench_kubelets_kubeconfig()).await?;
        let kubectl = plane.tools_bin().join("kubectl");
        let crds = settings.repo.join("crds");
        run_kubectl(
            &kubectl,
            plane,
            &["apply", "--server-side", "-f", &crds.to_string_lossy()],
        )?;
        run_kubectl(
            &kubectl,
            plane,
            &[
                "wait",
                "--for=condition=Established",
                "crd/rktnodeconfigs.rktnetes.io",
                "crd/rktnodestates.rktnetes.io",
            ],
        )?;
        configs::delete(&admin).await?;
        wait_states_gone(&admin, Duration::from_secs(600)).await?;
        let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(admin.clone());
        let namespace = serde_json::from_value(json!({"metadata": {"name": NAMESPACE}}))?;
        ignore_exists(namespaces.create(&PostParams::default(), &namespace).await)?;
        let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), NAMESPACE);
        let bindings: Api<k8s_openapi::api::rbac::v1::ClusterRoleBinding> = Api::all(admin.clone());
        let endpoint = ClusterEndpoint::of(&plane.admin_kubeconfig())?;
        let mut kubeconfigs = Vec::new();
        for account in [CONTROLLER_ACCOUNT, AGENT_ACCOUNT] {
            let service_account = serde_json::from_value(json!({"metadata": {"name": account}}))?;
            ignore_exists(
                accounts
                    .create(&PostParams::default(), &service_account)
                    .await,
            )?;
            let binding = serde_json::from_value(json!({
                "metadata": {"name": format!("{NAMESPACE}-{account}")},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
                "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}],
            }))?;
            ignore_exists(bindings.create(&PostParams::default(), &binding).await)?;
            let reference: ServiceAccountRef = format!("{NAMESPACE}/{account}")
                .parse()
                .map_err(anyhow::Error::msg)?;
            let token = token(&admin, &reference, None, 24 * 3600).await?;
            let path = args.out.join(format!("{account}.kubeconfig"));
            kubeconfig::write(&path, &kubeconfig::for_token(&endpoint, account, &token))?;
            kubeconfigs.push(path);
        }
        let user = |account: &str| format!("system:serviceaccount:{NAMESPACE}:{account}");
        Ok(Self {
            args: args.clone(),
            plane: plane.clone(),
            admin,
            kubelets,
            controller_kubeconfig: kubeconfigs[0].clone(),
            agent_kubeconfig: kubeconfigs[1].clone(),
            controller_user: user(CONTROLLER_ACCOUNT),
            agent_user: user(AGENT_ACCOUNT),
            kubectl,
            examples: settings.repo.join("e2e/examples"),
        })
    }

    fn start_controller(&self, name: &str) -> anyhow::Result<Controller> {
        Controller::start(
            &self.args.operator,
            &self.controller_kubeconfig,
            NAMESPACE,
            &Controller::log(&self.args.out, name),
        )
    }

    fn apiserver(&self) -> anyhow::Result<Pid> {
        self.plane
            .apiserver()
            .context("kube-apiserver is not running")
    }

    /// Every figure at `nodes` nodes: starts from no config and ends with none.
    async fn measure(&self, nodes: usize) -> anyhow::Result<Figures> {
        let mut figures = Figures {
            nodes,
            ..Figures::default()
        };
        let audit_log = self.plane.audit_log();
        let with_agents = nodes <= self.args.agents_up_to;
        let delay = Duration::from_millis(self.args.apply_delay_ms);
        let rollout_limit = Duration::from_secs(1800);

        log(format!("{nodes} nodes: starting the controller"));
        let mut controller = self.start_controller(&format!("{nodes}-first"))?;
        figures.ready_nodes_only = block(|| controller.wait_ready(Duration::from_secs(120)))?;
        settle().await;
        figures.rss_nodes_only = Memory::of(controller.pid())?.rss_kib;

        let apiserver_before = Memory::of(self.apiserver()?)?.rss_kib;
        let mut agents = None;
        if with_agents {
            log(format!("{nodes} nodes: starting {nodes} simulated agents"));
            let started = Instant::now();
            let process =
                AgentsProcess::start(&self.agent_kubeconfig, nodes, delay, &self.args.out)?;
            figures.agents_watching = Some(started.elapsed());
            settle().await;
            let watchers = measure::apiserver_metric(
                &self.admin,
                "apiserver_longrunning_requests",
                &["resource=\"rktnodestates\"", "verb=\"WATCH\""],
            )
            .await?;
            figures.agent_watchers = Some(watchers as u64);
            figures.agents_rss = Some(Memory::of(process.pid())?.rss_kib);
            figures.apiserver_extra = Some(
                Memory::of(self.apiserver()?)?
                    .rss_kib
                    .saturating_sub(apiserver_before),
            );
            agents = Some(process);
        }

        let (max_unavailable, done) = if with_agents {
            ("10%", Done::Ready)
        } else {
            ("100%", Done::Written)
        };
        figures.max_unavailable = max_unavailable;
        log(format!(
            "{nodes} nodes: creating the three example configs (maxUnavailable {max_unavailable})"
        ));
        let mark = Mark::now(&audit_log)?;
        let started = Instant::now();
        configs::create(
            &self.admin,
            &self.kubectl,
            &self.plane.admin_kubeconfig(),
            &self.examples,
            max_unavailable,
        )
        .await?;
        figures.first_rollout =
            configs::wait_rolled_out(&self.admin, nodes, &[], done, started, rollout_limit).await?;
        settle().await;
        let first = mark.writes_since()?;
        figures.first_writes = (
            self.operator_writes(&first, &self.controller_user),
            first.by(&self.agent_user),
        );
        figures.rss_steady = Memory::of(controller.pid())?.rss_kib;

        log(format!("{nodes} nodes: changing every node's spec"));
        let before = configs::hashes(&self.admin).await?;
        let mark = Mark::now(&audit_log)?;
        let started = Instant::now();
        configs::change(&self.admin, 1).await?;
        figures.change_rollout =
            configs::wait_rolled_out(&self.admin, nodes, &before, done, started, rollout_limit)
                .await?;
        settle().await;
        let change = mark.writes_since()?;
        figures.change_writes = (
            self.operator_writes(&change, &self.controller_user),
            change.by(&self.agent_user),
        );
        figures.change_breakdown = (
            change.breakdown(&self.controller_user),
            change.breakdown(&self.agent_user),
        );
        if with_agents {
            // Ten waves of 10% each take at least the apply delay.
            figures.rollout_minimum = Some(delay * 10);
        }

        log(format!(
            "{nodes} nodes: at rest for {} s",
            self.args.rest_seconds
        ));
        let mark = Mark::now(&audit_log)?;
        let cpu_before = measure::cpu_seconds(controller.pid())?;
        tokio::time::sleep(Duration::from_secs(self.args.rest_seconds)).await;
        let rest = mark.writes_since()?;
        figures.rest_writes = (
            self.operator_writes(&rest, &self.controller_user),
            rest.by(&self.agent_user),
        );
        figures.rest_lease_renewals =
            rest.matching(|kind| kind.user == self.controller_user && kind.resource == "leases");
        figures.rest_breakdown = (
            rest.breakdown(&self.controller_user),
            rest.breakdown(&self.agent_user),
        );
        figures.rest_cpu = measure::cpu_seconds(controller.pid())? - cpu_before;
        figures.rss_steady_after_rest = Memory::of(controller.pid())?.rss_kib;

        log(format!(
            "{nodes} nodes: restarting kube-apiserver, which makes every watch list again"
        ));
        measure::reset_peak(controller.pid())?;
        let before_relist = Memory::of(controller.pid())?.rss_kib;
        let plane = self.plane.clone();
        block(move || plane.crash_and_restart(Component::KubeApiserver))?;
        figures.relist_peak = self.wait_for_peak(controller.pid(), before_relist).await?;
        tokio::time::sleep(Duration::from_secs(30)).await;
        figures.rss_after_relist = Memory::of(controller.pid())?.rss_kib;

        log(format!(
            "{nodes} nodes: a fresh controller over the same objects"
        ));
        drop(controller);
        let mut controller = self.start_controller(&format!("{nodes}-second"))?;
        figures.ready_with_states = block(|| controller.wait_ready(Duration::from_secs(120)))?;
        settle().await;
        figures.rss_fresh_with_states = Memory::of(controller.pid())?.rss_kib;
        // Its first pass writes nothing: the cluster is as it wants it.

        log(format!(
            "{nodes} nodes: deleting the configs; every node releases"
        ));
        let daemonset_before = daemonset(&self.admin).await?;
        let mark = Mark::now(&audit_log)?;
        let started = Instant::now();
        configs::delete(&self.admin).await?;
        let seen = watch_release(&self.admin, Duration::from_secs(1800)).await?;
        figures.release = Some(report::Release {
            took: started.elapsed(),
            daemonset_bytes_before: daemonset_before.as_ref().map(|(bytes, _)| *bytes),
            daemonset_bytes_most: seen.most_bytes,
            daemonset_generations: seen.generations,
            generation_before: daemonset_before.map(|(_, generation)| generation),
        });
        let release = mark.writes_since()?;
        figures.release_deletes = (
            release.matching(|kind| {
                kind.user == self.controller_user
                    && kind.verb == "delete"
                    && kind.resource == "rktnodestates"
            }),
            release.matching(|kind| {
                kind.user.ends_with(":generic-garbage-collector")
                    && kind.verb == "delete"
                    && kind.resource == "rktnodestates"
            }),
        );
        tokio::time::sleep(Duration::from_secs(30)).await;
        figures.rss_after_release = Memory::of(controller.pid())?.rss_kib;
        drop(controller);
        let mut controller = self.start_controller(&format!("{nodes}-third"))?;
        block(|| controller.wait_ready(Duration::from_secs(120)))?;
        settle().await;
        figures.rss_fresh_after_release = Memory::of(controller.pid())?.rss_kib;
        drop(controller);
        drop(agents);
        Ok(figures)
    }

    /// What `user` wrote, but for the renewals of its leader Lease: every leader-elected controller renews its
    /// Lease a few times a lease duration whatever happens, and the table shows those apart.
    fn operator_writes(&self, writes: &audit::Writes, user: &str) -> u64 {
        writes.matching(|kind| kind.user == user && kind.resource != "leases")
    }

    /// Waits until the controller's memory peak has not grown for ten seconds after the API server is back; the
    /// peak, in KiB.
    async fn wait_for_peak(&self, controller: Pid, before: u64) -> anyhow::Result<u64> {
        let mut peak = before;
        let mut still = 0;
        while still < 10 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = Memory::of(controller)?.peak_kib;
            if now > peak {
                peak = now;
                still = 0;
            } else {
                still += 1;
            }
        }
        Ok(peak)
    }
}

/// The simulated agents' process (`rktnetes-e2e scale agents`); killed when dropped.
struct AgentsProcess {
    child: Child,
}

impl AgentsProcess {
    /// Starts it and waits until every agent holds its first list.
    fn start(kubeconfig: &Path, nodes: usize, delay: Duration, out: &Path) -> anyhow::Result<Self> {
        let log_path = out.join("agents.log");
        let log_file = std::fs::File::create(&log_path)?;
        let mut child = Command::new(std::env::current_exe().context("the harness's own path")?)
            .args(["scale-agents", "--nodes", &nodes.to_string()])
            .arg(format!("--apply-delay-ms={}", delay.as_millis()))
            .env("KUBECONFIG", kubeconfig)
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .context("starting the simulated agents")?;
        let stdout = child.stdout.take().context("the agents' stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        if !line.starts_with("watching") {
            let _ = child.kill();
            bail!(
                "the simulated agents stopped before watching; see {}",
                log_path.display()
            );
        }
        Ok(Self { child })
    }

    fn pid(&self) -> Pid {
        Pid(i32::try_from(self.child.id()).unwrap_or(i32::MAX))
    }
}

impl Drop for AgentsProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the agent DaemonSet looked like while nodes released.
struct ReleaseSeen {
    most_bytes: Option<usize>,
    /// Every generation it had, in order.
    generations: Vec<i64>,
}

/// The agent DaemonSet's size as served (JSON) and its generation, if it exists.
async fn daemonset(client: &Client) -> anyhow::Result<Option<(usize, i64)>> {
    let daemonsets: Api<DaemonSet> = Api::namespaced(client.clone(), NAMESPACE);
    Ok(daemonsets
        .get_opt("rktnetes-agent")
        .await?
        .map(|daemonset| {
            let bytes = serde_json::to_vec(&daemonset)
                .map(|json| json.len())
                .unwrap_or(0);
            (bytes, daemonset.metadata.generation.unwrap_or(0))
        }))
}

/// Samples the agent DaemonSet until no RktNodeState is left.
async fn watch_release(client: &Client, limit: Duration) -> anyhow::Result<ReleaseSeen> {
    let started = Instant::now();
    let mut seen = ReleaseSeen {
        most_bytes: None,
        generations: Vec::new(),
    };
    loop {
        if let Some((bytes, generation)) = daemonset(client).await? {
            seen.most_bytes = Some(seen.most_bytes.unwrap_or(0).max(bytes));
            if seen.generations.last() != Some(&generation) {
                seen.generations.push(generation);
            }
        }
        if states_left(client).await? == 0 {
            return Ok(seen);
        }
        if started.elapsed() > limit {
            bail!(
                "RktNodeStates were left {} s after the configs were deleted",
                limit.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn states_left(client: &Client) -> anyhow::Result<usize> {
    let states: Api<kube::api::DynamicObject> =
        Api::all_with(client.clone(), &agents::state_resource());
    let page = states
        .list_metadata(&ListParams::default().limit(1))
        .await?;
    Ok(page.items.len() + page.metadata.remaining_item_count.unwrap_or(0) as usize)
}

async fn wait_states_gone(client: &Client, limit: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    while states_left(client).await? > 0 {
        if started.elapsed() > limit {
            bail!(
                "RktNodeStates of an earlier run are still there; delete them (and their finalizers)"
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(())
}

/// Lets a process's memory and the watches settle after a step.
async fn settle() {
    tokio::time::sleep(Duration::from_secs(5)).await;
}

/// Runs blocking work (a process's start, a wait on a socket) off the async workers.
fn block<T>(work: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    tokio::task::block_in_place(work)
}

fn ignore_exists<T>(result: Result<T, kube::Error>) -> anyhow::Result<()> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(error) => Err(error.into()),
    }
}

fn run_kubectl(kubectl: &Path, plane: &ControlPlane, args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new(kubectl)
        .args(args)
        .env("KUBECONFIG", plane.admin_kubeconfig())
        .stdout(Stdio::null())
        .status()
        .with_context(|| format!("running {}", kubectl.display()))?;
    anyhow::ensure!(status.success(), "kubectl {} failed", args.join(" "));
    Ok(())
}

/// A client from a kubeconfig file.
pub async fn client_of(path: &Path) -> anyhow::Result<Client> {
    let kubeconfig =
        Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()))?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}
