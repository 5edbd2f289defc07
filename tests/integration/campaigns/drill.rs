//! A campaign's node: its own agent unit stopped (and the rkt API service's start limit lifted) while a campaign
//! runs agents of its own there, one at a time, and looks at the node's files through its root.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::Child,
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use kube::{
    Api, Client,
    api::{Patch, PatchParams},
};
use rktnetes_operator::api::{
    NodePhase, RktNodeState, RktNodeStateSpec, host_paths::AGENT_STATE_DIR,
};
use serde_json::{Value, json};

use super::journal;
use crate::support::{
    cluster::cluster,
    controller::ensure_namespace,
    nodes::{node_ok, node_root, node_shell, node_spawn, nodes},
    scenario::clean_slate,
};

/// The agent's ledger, as a host path.
pub const LEDGER: &str = "/var/lib/rktnetes/ledger.json";
/// How long one agent run may take to crash or converge.
const RUN_LIMIT: Duration = Duration::from_secs(60);
/// The temporary files of the agent's atomic writes end so.
const TEMPORARY_SUFFIX: &str = ".rktnetes-tmp";

/// What the node must come to.
pub enum Expect<'a> {
    Applied(&'a RktNodeStateSpec),
    RolledBack(&'a RktNodeStateSpec),
}

/// The campaign's node, its own agent unit stopped while the campaign runs its agents.
pub struct Drill {
    client: Client,
    pub node: &'static str,
    root: PathBuf,
    /// What the last agents said, for a failure's message.
    said: Mutex<Vec<String>>,
}

impl Drill {
    pub fn begin(client: Client, node: &'static str) -> Self {
        // The campaign restarts the rkt API service far more often than its start limit allows.
        node_ok(
            node,
            "mkdir -p /run/systemd/system/rkt-api.service.d && \
             printf '[Unit]\\nStartLimitIntervalSec=0\\n' > /run/systemd/system/rkt-api.service.d/90-campaign.conf && \
             systemctl daemon-reload && systemctl reset-failed rkt-api.service; \
             systemctl stop rktnetes-agent.service",
        );
        Self {
            client,
            node,
            root: node_root(node),
            said: Mutex::new(Vec::new()),
        }
    }

    pub fn states(&self) -> Api<RktNodeState> {
        Api::all(self.client.clone())
    }

    pub async fn set_spec(&self, spec: &RktNodeStateSpec) {
        let state = json!({
            "apiVersion": "rktnetes.io/v1alpha1",
            "kind": "RktNodeState",
            "metadata": {"name": self.node},
            "spec": spec,
        });
        self.states()
            .patch(
                self.node,
                &PatchParams::apply("rktnetes-crash-campaign").force(),
                &Patch::Apply(&state),
            )
            .await
            .expect("the campaign's RktNodeState is admitted");
    }

    /// Runs a fresh agent until the node reports `expect`, then kills it at rest; panics when it does not within the
    /// limit.
    pub async fn converge(&self, expect: &Expect<'_>) {
        let mut agent = AgentRun::start(self.node, None);
        self.settle(&mut agent, expect).await;
        self.kill(agent);
    }

    /// Waits until a running agent brings the node to `expect`; panics when the agent exits.
    pub async fn settle(&self, agent: &mut AgentRun, expect: &Expect<'_>) {
        if let Some(point) = self.crash_or_converge(agent, expect).await {
            panic!("the agent crashed at {point}");
        }
    }

    /// Kills an agent at rest, keeping what it said.
    pub fn kill(&self, mut agent: AgentRun) {
        agent.kill();
        self.remember(agent.output());
    }

    fn remember(&self, output: String) {
        if let Ok(mut said) = self.said.lock() {
            said.push(output);
            let excess = said.len().saturating_sub(3);
            said.drain(..excess);
        }
    }

    /// What the last agents said.
    pub fn last_said(&self) -> String {
        self.said
            .lock()
            .map(|said| said.join("\n-----\n"))
            .unwrap_or_default()
    }

    /// Waits until the agent crashes (the point it names) or the node converges with the agent still running.
    pub async fn crash_or_converge(
        &self,
        agent: &mut AgentRun,
        expect: &Expect<'_>,
    ) -> Option<String> {
        let deadline = Instant::now() + RUN_LIMIT;
        loop {
            if let Some(status) = agent.exited() {
                let output = agent.output();
                self.remember(output.clone());
                return match output
                    .lines()
                    .find_map(|line| line.strip_prefix("crash point "))
                {
                    Some(point) => Some(
                        point
                            .split_once(": ")
                            .map_or(point, |(_, name)| name)
                            .to_owned(),
                    ),
                    None => panic!("the agent exited ({status}) without a crash point:\n{output}"),
                };
            }
            if self.converged(expect).await {
                return None;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not converge within {RUN_LIMIT:?}; its ledger: {}\nthe agent said:\n{}",
                self.node,
                fs::read_to_string(self.host_path(LEDGER)).unwrap_or_default(),
                agent.output()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether the node's status reports `expect` and its ledger holds no change under way.
    pub async fn converged(&self, expect: &Expect<'_>) -> bool {
        let Ok(state) = self.states().get(self.node).await else {
            return false;
        };
        let phase = state.current_phase();
        let Some(status) = state.status else {
            return false;
        };
        let ledger = fs::read(self.host_path(LEDGER))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok());
        let pending = ledger
            .as_ref()
            .is_none_or(|ledger| ledger.get("pending").is_some());
        let reported = match expect {
            Expect::Applied(spec) => {
                phase == Some(NodePhase::Applied)
                    && status.applied_hash.as_deref() == Some(spec.hash.as_str())
            }
            Expect::RolledBack(failed) => {
                phase == Some(NodePhase::RolledBack)
                    && ledger.as_ref().and_then(|ledger| ledger.get("failedHash"))
                        == Some(&Value::from(failed.hash.as_str()))
            }
        };
        reported && !pending
    }

    /// The node holds exactly `spec`'s files, whole, none of the other `known` paths, and no temporary file.
    pub fn check_whole(&self, spec: &RktNodeStateSpec, known: &BTreeMap<String, BTreeSet<String>>) {
        for path in known.keys() {
            if !spec.files.iter().any(|file| file.path == *path) {
                assert!(
                    !self.host_path(path).exists(),
                    "{path} on {} belongs to no spec in place; the last agents said:\n{}",
                    self.node,
                    self.last_said()
                );
            }
        }
        for file in &spec.files {
            let on_node = fs::read_to_string(self.host_path(&file.path)).ok();
            assert_eq!(
                on_node.as_deref(),
                Some(file.content.as_str()),
                "{} on {} is not the spec's; the last agents said:\n{}",
                file.path,
                self.node,
                self.last_said()
            );
        }
        let mut directories: BTreeSet<PathBuf> = spec
            .files
            .iter()
            .filter_map(|file| {
                Path::new(&file.path)
                    .parent()
                    .map(|dir| self.host_path(&dir.to_string_lossy()))
            })
            .collect();
        directories.insert(self.host_path(AGENT_STATE_DIR));
        directories.insert(self.host_path("/etc/rkt/stage1.d"));
        for directory in directories {
            let left: Vec<String> = fs::read_dir(&directory)
                .into_iter()
                .flatten()
                .flatten()
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .filter(|name| name.ends_with(TEMPORARY_SUFFIX))
                .collect();
            assert!(
                left.is_empty(),
                "temporary files left in {}: {left:?}",
                directory.display()
            );
        }
    }

    /// A node file's path as this process reaches it.
    pub fn host_path(&self, path: &str) -> PathBuf {
        in_root(&self.root, path)
    }

    /// Where the node's journal ends now, to count what comes after it.
    pub fn journal_cursor(&self) -> String {
        journal::cursor(self.node)
    }

    /// How many times systemd started the rkt API service after the journal's `cursor`.
    pub fn api_service_starts_after(&self, cursor: &str) -> u64 {
        journal::api_service_starts_after(self.node, cursor)
    }
}

impl Drop for Drill {
    fn drop(&mut self) {
        // The node's own agent takes over again (it lets go of the campaign's files once the state is deleted).
        let _ = node_shell(
            self.node,
            "rm -f /run/systemd/system/rkt-api.service.d/90-campaign.conf /etc/rkt/stage1.d/50-vendor.json; \
             systemctl daemon-reload; systemctl start rktnetes-agent.service",
        );
    }
}

/// One agent process in the node, its output collected.
pub struct AgentRun {
    child: Child,
    /// Its pid in the node's PID namespace.
    pid: String,
    node: &'static str,
    output: Arc<Mutex<String>>,
}

impl AgentRun {
    pub fn start(node: &'static str, crash_at: Option<u64>) -> Self {
        let crash_at =
            crash_at.map_or_else(String::new, |point| format!("RKTNETES_CRASH_AT={point}"));
        let script = format!(
            "echo $$; . /etc/rktnetes/agent.env; exec env RUST_LOG=rktnetes_operator=debug {crash_at} /usr/local/bin/rktnetes agent \
             --node-name \"$NODE_NAME\" --kubeconfig /etc/rktnetes/kubeconfig --health-timeout 1 \
             --check-interval 3600 2>&1"
        );
        let mut child = node_spawn(node, &["sh", "-c", &script]);
        let mut stdout = BufReader::new(child.stdout.take().expect("the agent's stdout"));
        let mut pid = String::new();
        stdout.read_line(&mut pid).expect("the agent's pid");
        let output = Arc::new(Mutex::new(String::new()));
        let collected = Arc::clone(&output);
        thread::spawn(move || {
            let mut line = String::new();
            while stdout.read_line(&mut line).is_ok_and(|read| read > 0) {
                if let Ok(mut output) = collected.lock() {
                    output.push_str(&line);
                }
                line.clear();
            }
        });
        Self {
            child,
            pid: pid.trim().to_owned(),
            node,
            output,
        }
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// What the agent printed; complete once it has exited.
    fn output(&mut self) -> String {
        // The collecting thread finishes when the pipe closes, shortly after the exit.
        for _ in 0..50 {
            if Arc::strong_count(&self.output) == 1 {
                break;
            }
            thread::sleep(Duration::from_millis(10));
        }
        self.output
            .lock()
            .map(|output| output.clone())
            .unwrap_or_default()
    }

    /// Kills the agent (at rest: it converged) and waits for it.
    pub fn kill(&mut self) {
        node_ok(
            self.node,
            &format!("kill -KILL {} 2>/dev/null || true", self.pid),
        );
        let _ = self.child.wait();
    }
}

/// A node's file as this process reaches it, through the node's root.
pub fn node_path(node: &str, path: &str) -> PathBuf {
    in_root(&node_root(node), path)
}

/// The node path `path` (absolute) below `root`, the node's root as this process sees it.
pub fn in_root(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

/// The local machines up, with nothing of ours on them and no controller: a client of the cluster.
pub async fn campaign_nodes() -> Client {
    let cluster = cluster();
    let client = cluster.client().await;
    ensure_namespace(&client).await;
    nodes(cluster);
    clean_slate(&client).await;
    client
}

/// A campaign's size from the environment variable `name`, or `unset`.
pub fn size_from_env<T: std::str::FromStr>(name: &str, unset: T) -> T {
    std::env::var(name).map_or(unset, |value| {
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name} is a number, not {value:?}"))
    })
}
