//! Campaign 1, crash consistency of the agent. On one test node the agent is killed with SIGKILL at every crash
//! point of every change in a cycle (a change, its reverse, and a change that breaks the rkt API service and is
//! rolled back): the agent built with the `crash-points` feature dies at the N-th point it reaches
//! (`RKTNETES_CRASH_AT=N`); a fresh agent then has to converge. N runs from 1 until no change of a cycle reaches
//! it. With `RKTNETES_CRASH_CHAIN=K`, up to K more agents are killed at pseudo-random points while recovering from
//! each crash. Sweeps repeat until `RKTNETES_CRASH_POINTS` points were hit (one sweep, no chain, in CI).
//!
//! All the while an independent reader parses every managed file and the agent's ledger through the node's root
//! (`/proc/<its init>/root`) every millisecond. The campaign fails on any file that is not whole (not one of the
//! contents a spec gives it, or an unparsable ledger), a temporary file left after the next agent started, a node
//! that does not converge, or a rollback that is not byte for byte. It prints its figures (the README's Reliability
//! section keeps the last ones): crash points hit, distinct points, reads, and changes whose service was
//! restarted more often than the change needs.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs, io,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use rktnetes_operator::{api::RktNodeStateSpec, render::render};
use serde_json::{Value, json};

use super::drill::{AgentRun, Drill, Expect, LEDGER, campaign_nodes, in_root, size_from_env};
use crate::support::{
    cluster::serial,
    kind_profile,
    nodes::{POOL, node_ok, node_root},
    scenario::{FAULT_FILE, NET_FILE, bridge_example},
};

/// The MTU of the change that the fault switch breaks.
const BROKEN_MTU: u32 = 1450;

/// How many crash points the campaign hits at least (whole sweeps); one sweep when unset (CI).
const GOAL: &str = "RKTNETES_CRASH_POINTS";

#[tokio::test]
async fn a_crash_at_any_step_leaves_every_file_whole_and_the_node_converges() {
    if kind_profile() {
        // The campaign needs a node it can enter and whose agent it runs itself: the local machines.
        return;
    }
    let _serial = serial().lock().await;
    let client = campaign_nodes().await;
    let goal: u64 = size_from_env(GOAL, 0);

    let node = POOL[0];
    let cycles = Cycles::new();
    let drill = Drill::begin(client.clone(), node);
    drill.set_spec(&cycles.start).await;
    drill.converge(&Expect::Applied(&cycles.start)).await;

    let known = cycles.known_contents();
    let reader = Reader::start(node_root(node), known.clone());
    let mut figures = Figures::default();
    let mut chain = Chain::from_env();
    let started = Instant::now();
    let mut sweeps = 0;
    while sweeps == 0 || figures.crashes < goal {
        sweeps += 1;
        for cycle in &cycles.cycles {
            // Every change of the cycle with the agent killed at its first point, then its second, ... until no
            // change of the cycle reaches the point.
            let mut point = 1;
            loop {
                let mut reached = false;
                for step in cycle {
                    reached |= change(&drill, step, point, &known, &mut chain, &mut figures).await;
                }
                if !reached {
                    break;
                }
                figures.deepest = figures.deepest.max(point);
                point += 1;
            }
        }
        figures.seconds = started.elapsed().as_secs();
        eprintln!("crash consistency, sweep {sweeps}: {figures}");
    }
    let read = reader.stop();
    figures.seconds = started.elapsed().as_secs();
    println!("crash consistency: {figures}; reader: {read}");
    println!("crash points reached:");
    for point in &figures.points {
        println!("  {point}");
    }

    assert!(
        read.not_whole.is_empty(),
        "the reader saw {} files that were not whole, first: {:?}",
        read.not_whole_count,
        read.not_whole
    );
    assert!(
        figures.crashes > 0,
        "no agent reached a crash point: are the tests built with the crash-points feature?"
    );
    assert!(
        read.reads > figures.crashes,
        "the reader hardly read anything"
    );
}

/// Cycles of changes, each from `start` back to it: a change and its reverse; a change that breaks the rkt API
/// service and is rolled back.
struct Cycles {
    start: RktNodeStateSpec,
    cycles: Vec<Vec<Change>>,
}

struct Change {
    spec: RktNodeStateSpec,
    /// The stand-in's fault switch makes the rkt API service exit at start while the network config has this
    /// change's MTU (a failure the configuration check cannot foresee): the change is rolled back to the spec
    /// before it.
    breaks: bool,
    /// The spec whose files are on the node after this change.
    settles_on: RktNodeStateSpec,
}

impl Cycles {
    fn new() -> Self {
        let spec = |config: crate::support::fixtures::TestConfig| {
            let config = config.typed();
            render(&config.spec)
                .expect("the campaign's configs render")
                .node_state_spec("crash-consistency")
        };
        let base = bridge_example()
            .named("crash-consistency")
            .set("/spec/stage1", json!({}));
        let with_stage1 = |mtu| {
            base.clone().mtu(mtu).set(
                "/spec/stage1",
                json!({"name": "coreos.com/rkt/stage1-coreos", "version": "1.30.0"}),
            )
        };
        let start = spec(base.clone());
        let changed = spec(with_stage1(1400));
        let broken = spec(with_stage1(BROKEN_MTU));
        let change = |spec: &RktNodeStateSpec, breaks, settles_on: &RktNodeStateSpec| Change {
            spec: spec.clone(),
            breaks,
            settles_on: settles_on.clone(),
        };
        Self {
            cycles: vec![
                vec![
                    change(&changed, false, &changed),
                    change(&start, false, &start),
                ],
                vec![change(&broken, true, &start)],
            ],
            start,
        }
    }

    /// Every content each managed path may have, by path, from every spec of the cycles.
    fn known_contents(&self) -> BTreeMap<String, BTreeSet<String>> {
        let mut known: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for spec in self.cycles.iter().flatten().map(|change| &change.spec) {
            for file in &spec.files {
                known
                    .entry(file.path.clone())
                    .or_default()
                    .insert(file.content.clone());
            }
        }
        known
    }
}

/// After the first crash of a change, up to `length` more agents killed at a pseudo-random point each (a crash
/// while recovering from a crash), before one runs to the end. `RKTNETES_CRASH_CHAIN`; 0 in CI.
struct Chain {
    length: u32,
    state: u64,
}

impl Chain {
    fn from_env() -> Self {
        let length = size_from_env("RKTNETES_CRASH_CHAIN", 0);
        Self {
            length,
            state: 0x9e37_79b9_7f4a_7c15,
        }
    }

    /// A point in 1..=`deepest` (xorshift: the same sequence on every run).
    fn next_point(&mut self, deepest: u64) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        1 + self.state % deepest.max(1)
    }
}

/// What the campaign counted.
#[derive(Default)]
struct Figures {
    crashes: u64,
    points: BTreeSet<String>,
    /// The most crash points one change reached.
    deepest: u64,
    changes: u64,
    extra_restarts: u64,
    seconds: u64,
}

impl Figures {
    fn crashed_at(&mut self, point: String) {
        self.crashes += 1;
        self.points.insert(point);
    }
}

impl std::fmt::Display for Figures {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "{} crash points hit ({} distinct, up to {} in one change), {} changes, {} changes restarted the rkt \
             API service more often than they need, 0 temporary files left, every node converged, in {} s",
            self.crashes,
            self.points.len(),
            self.deepest,
            self.changes,
            self.extra_restarts,
            self.seconds
        )
    }
}

/// One change of a cycle with the agent killed at its `point`-th crash point (and, with a chain, more), then a
/// fresh agent converging; the node checked. Whether the change reached that point.
async fn change(
    drill: &Drill,
    change: &Change,
    point: u64,
    known: &BTreeMap<String, BTreeSet<String>>,
    chain: &mut Chain,
    figures: &mut Figures,
) -> bool {
    if change.breaks {
        node_ok(
            drill.node,
            &format!(
                "mkdir -p /run/rkt-standin && printf 'exit\\n{NET_FILE}\\n\"mtu\": {BROKEN_MTU}\\n' > {FAULT_FILE}"
            ),
        );
    }
    let before = drill.journal_cursor();
    drill.set_spec(&change.spec).await;
    let expect = if change.breaks {
        Expect::RolledBack(&change.spec)
    } else {
        Expect::Applied(&change.spec)
    };
    let mut crashed = AgentRun::start(drill.node, Some(point));
    let reached = match drill.crash_or_converge(&mut crashed, &expect).await {
        Some(crash_point) => {
            figures.crashed_at(crash_point);
            let mut converged = false;
            for _ in 0..chain.length {
                let point = chain.next_point(figures.deepest.max(point));
                let mut agent = AgentRun::start(drill.node, Some(point));
                match drill.crash_or_converge(&mut agent, &expect).await {
                    Some(crash_point) => figures.crashed_at(crash_point),
                    None => {
                        drill.kill(agent);
                        converged = true;
                        break;
                    }
                }
            }
            if !converged {
                drill.converge(&expect).await;
            }
            true
        }
        None => {
            drill.kill(crashed);
            false
        }
    };
    drill.check_whole(&change.settles_on, known);
    if change.breaks {
        node_ok(drill.node, &format!("rm -f {FAULT_FILE}"));
    }
    figures.changes += 1;
    // A broken service is also restarted by systemd itself (Restart=on-failure): only changes that work count.
    if !change.breaks && drill.api_service_starts_after(&before) > 1 {
        figures.extra_restarts += 1;
    }
    reached
}

/// Runs a fresh agent until the node reports `expect`; panics when it does not within the limit.
/// The independent reader: every managed file and the ledger, parsed every millisecond.
struct Reader {
    stop: Arc<AtomicBool>,
    handle: thread::JoinHandle<Sightings>,
}

/// What the reader saw.
#[derive(Debug, Default)]
struct Sightings {
    reads: u64,
    not_whole_count: u64,
    /// The first few files that were not whole, with what was wrong.
    not_whole: Vec<String>,
}

impl std::fmt::Display for Sightings {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "{} reads, {} files not whole",
            self.reads, self.not_whole_count
        )
    }
}

impl Reader {
    fn start(root: PathBuf, known: BTreeMap<String, BTreeSet<String>>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let handle = thread::spawn(move || {
            let mut read = Sightings::default();
            let mut judge = |path: &str, verdict: Result<(), String>| {
                read.reads += 1;
                if let Err(wrong) = verdict {
                    read.not_whole_count += 1;
                    if read.not_whole.len() < 10 {
                        read.not_whole.push(format!("{path}: {wrong}"));
                    }
                }
            };
            while !stopped.load(Ordering::Relaxed) {
                for (path, contents) in &known {
                    if let Some(bytes) = read_file(&root, path) {
                        let text = String::from_utf8_lossy(&bytes);
                        let whole = contents.contains(text.as_ref())
                            && (!is_json(path) || serde_json::from_slice::<Value>(&bytes).is_ok());
                        judge(
                            path,
                            if whole {
                                Ok(())
                            } else {
                                Err(format!("{text:?}"))
                            },
                        );
                    }
                }
                if let Some(bytes) = read_file(&root, LEDGER) {
                    let parsed = serde_json::from_slice::<Value>(&bytes)
                        .map_err(|error| format!("{error}: {:?}", String::from_utf8_lossy(&bytes)));
                    judge(LEDGER, parsed.map(drop));
                }
                thread::sleep(Duration::from_millis(1));
            }
            read
        });
        Self { stop, handle }
    }

    fn stop(self) -> Sightings {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("the reader")
    }
}

/// A node file's bytes; `None` when it does not exist (a reader may find it gone between two looks).
fn read_file(root: &Path, path: &str) -> Option<Vec<u8>> {
    match fs::read(in_root(root, path)) {
        Ok(bytes) => Some(bytes),
        Err(error) if error.kind() == io::ErrorKind::NotFound => None,
        Err(error) => panic!("the reader cannot read {path}: {error}"),
    }
}

/// Whether rkt reads the file at `path` as JSON (its network and stage1 configurations; not the kubelet's drop-in).
fn is_json(path: &str) -> bool {
    path.ends_with(".json") || path.ends_with(".conf") && path.contains("/net.d/")
}
