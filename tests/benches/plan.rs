//! One controller pass at scale: `plan` over a snapshot of the caches, then the agent DaemonSet the pass implies,
//! as `controller::run` does after its debounce. The writes themselves (API calls) are not part of it.
//!
//! `cargo bench --bench plan` (figures in README.md, Performance). Before criterion times a case, the case prints
//! what its snapshot keeps on the heap and what one pass allocates, counted by the global allocator below.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    collections::BTreeMap,
    hint::black_box,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicIsize, AtomicUsize, Ordering::Relaxed},
    },
};

use criterion::{BenchmarkId, Criterion, SamplingMode, criterion_group, criterion_main};
use k8s_openapi::{
    api::{apps::v1::DaemonSet, core::v1::Node, core::v1::Toleration},
    apimachinery::pkg::{
        apis::meta::v1::{Condition, Time},
        util::intstr::IntOrString,
    },
    jiff::Timestamp,
};
use kube::{ResourceExt, core::PartialObjectMeta};
use rktnetes_operator::{
    api::{NodePhase, RktNodeConfig, RktNodeState, RktNodeStateStatus},
    controller::{
        AgentSettings, agent_daemonset,
        agent_placement::{AGENT_LABEL, NodeLabel, label_changes},
        plan::{Plan, Snapshot, plan},
    },
};

// ---------------------------------------------------------------------------------------------------------------
// Counting allocator: the system allocator, plus counters that run only while `COUNTING` is set, so criterion's
// timings see one relaxed load per allocation.

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
/// Bytes and calls allocated while counting (a growing `realloc` counts its new size, as one call).
static ALLOCATED: AtomicUsize = AtomicUsize::new(0);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
/// Bytes allocated minus bytes freed while counting, and its highest value.
static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);

fn grow(size: usize) {
    ALLOCATED.fetch_add(size, Relaxed);
    ALLOCATIONS.fetch_add(1, Relaxed);
    let size = isize::try_from(size).unwrap_or(isize::MAX);
    let live = LIVE.fetch_add(size, Relaxed) + size;
    PEAK.fetch_max(live, Relaxed);
}

fn shrink(size: usize) {
    LIVE.fetch_sub(isize::try_from(size).unwrap_or(isize::MAX), Relaxed);
}

// SAFETY: every call is forwarded unchanged to `System`; the counters only observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Relaxed) {
            grow(layout.size());
        }
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Relaxed) {
            grow(layout.size());
        }
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if COUNTING.load(Relaxed) {
            shrink(layout.size());
        }
        // SAFETY: `ptr` came from `System` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Relaxed) {
            shrink(layout.size());
            grow(new_size);
        }
        // SAFETY: `ptr` came from `System` with this layout; the caller's contract is passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// What the heap did while `work` ran.
struct Heap {
    allocated: usize,
    allocations: usize,
    /// Bytes allocated and not freed when `work` returned (what its result keeps).
    retained: isize,
    /// The most bytes live at once, above what was live before.
    peak: isize,
}

fn counted<T>(work: impl FnOnce() -> T) -> (T, Heap) {
    ALLOCATED.store(0, Relaxed);
    ALLOCATIONS.store(0, Relaxed);
    LIVE.store(0, Relaxed);
    PEAK.store(0, Relaxed);
    COUNTING.store(true, Relaxed);
    let result = black_box(work());
    COUNTING.store(false, Relaxed);
    let heap = Heap {
        allocated: ALLOCATED.load(Relaxed),
        allocations: ALLOCATIONS.load(Relaxed),
        retained: LIVE.load(Relaxed),
        peak: PEAK.load(Relaxed),
    };
    (result, heap)
}

fn mib(bytes: f64) -> String {
    format!("{:.2} MiB", bytes / (1024.0 * 1024.0))
}

// ---------------------------------------------------------------------------------------------------------------
// Inputs.

const BRIDGE: &str = include_str!("../../e2e/examples/bridge.yaml");
const FLANNEL: &str = include_str!("../../e2e/examples/flannel.yaml");
const KVM: &str = include_str!("../../e2e/examples/kvm.yaml");

/// Control-plane nodes: no rktnetes label, so no config selects them.
const CONTROL_PLANE: usize = 3;
const ZONES: [&str; 3] = ["eu-west-1a", "eu-west-1b", "eu-west-1c"];
const INSTANCE_TYPES: [&str; 4] = ["m6i.xlarge", "m6i.2xlarge", "c6i.4xlarge", "r6i.2xlarge"];

fn now() -> Time {
    // 2026-11-23T12:00:00Z
    Time(Timestamp::from_second(1_795_435_200).expect("a valid timestamp"))
}

fn example(yaml: &str, uid: &str) -> RktNodeConfig {
    let mut config: RktNodeConfig = serde_saphyr::from_str(yaml).expect("an example RktNodeConfig");
    config.metadata.uid = Some(uid.to_owned());
    config.metadata.generation = Some(1);
    config.metadata.resource_version = Some("1000".to_owned());
    config.metadata.creation_timestamp = Some(now());
    config
}

/// How the nodes' rktnetes labels are set.
#[derive(Clone, Copy)]
enum Pools {
    /// Every worker runs the bridge network.
    Bridge,
    /// 70% bridge, 30% flannel; every tenth worker also wants kvm isolation.
    Mixed,
}

/// Node metadata as a metadata-only watch delivers it, without managedFields: a cloud provider's name and labels,
/// the kubelet's usual annotations.
fn node(index: usize, pools: Pools) -> Arc<PartialObjectMeta<Node>> {
    let name = format!(
        "ip-10-{}-{}-{}.eu-west-1.compute.internal",
        index / 65_536,
        index / 256 % 256,
        index % 256
    );
    let zone = ZONES[index % ZONES.len()];
    let mut labels = BTreeMap::from([
        ("kubernetes.io/hostname".to_owned(), name.clone()),
        ("kubernetes.io/os".to_owned(), "linux".to_owned()),
        (
            "kubernetes.io/arch".to_owned(),
            if index % 8 == 7 { "arm64" } else { "amd64" }.to_owned(),
        ),
        (
            "node.kubernetes.io/instance-type".to_owned(),
            INSTANCE_TYPES[index % INSTANCE_TYPES.len()].to_owned(),
        ),
        (
            "topology.kubernetes.io/region".to_owned(),
            "eu-west-1".to_owned(),
        ),
        ("topology.kubernetes.io/zone".to_owned(), zone.to_owned()),
    ]);
    if index < CONTROL_PLANE {
        labels.insert(
            "node-role.kubernetes.io/control-plane".to_owned(),
            String::new(),
        );
    } else {
        labels.insert("node-role.kubernetes.io/worker".to_owned(), String::new());
        let network = match pools {
            Pools::Mixed if index % 10 >= 7 => "flannel",
            _ => "bridge",
        };
        labels.insert("rktnetes.io/network".to_owned(), network.to_owned());
        if matches!(pools, Pools::Mixed) && index % 10 == 4 {
            labels.insert("rktnetes.io/isolation".to_owned(), "kvm".to_owned());
        }
        // Selected, so the controller has labelled it for its agent.
        labels.insert(AGENT_LABEL.to_owned(), "rktnetes-agent".to_owned());
    }
    let mut node = PartialObjectMeta::<Node>::default();
    node.metadata.name = Some(name);
    node.metadata.uid = Some(format!("5b0c6f3e-0000-4000-8000-{index:012}"));
    node.metadata.resource_version = Some(format!("{}", 100_000 + index));
    node.metadata.creation_timestamp = Some(now());
    node.metadata.labels = Some(labels);
    node.metadata.annotations = Some(BTreeMap::from([
        ("node.alpha.kubernetes.io/ttl".to_owned(), "0".to_owned()),
        (
            "volumes.kubernetes.io/controller-managed-attach-detach".to_owned(),
            "true".to_owned(),
        ),
        (
            "csi.volume.kubernetes.io/nodeid".to_owned(),
            format!(r#"{{"ebs.csi.aws.com":"i-0{index:016x}"}}"#),
        ),
    ]));
    Arc::new(node)
}

/// A state as the controller writes it and its agent reports it applied, with the metadata the apiserver adds.
fn applied(mut state: RktNodeState, index: usize) -> Arc<RktNodeState> {
    let now = now();
    state.metadata.uid = Some(format!("9d1e4a7c-0000-4000-8000-{index:012}"));
    state.metadata.resource_version = Some(format!("{}", 200_000 + index));
    state.metadata.generation = Some(1);
    state.metadata.creation_timestamp = Some(now.clone());
    let condition = |type_: &str, reason: &str, message: &str| Condition {
        type_: type_.to_owned(),
        status: "True".to_owned(),
        reason: reason.to_owned(),
        message: message.to_owned(),
        last_transition_time: now.clone(),
        observed_generation: Some(1),
    };
    state.status = Some(RktNodeStateStatus {
        phase: Some(NodePhase::Applied),
        observed_hash: Some(state.spec.hash.clone()),
        applied_hash: Some(state.spec.hash.clone()),
        observed_rkt_version: Some("1.30.0".to_owned()),
        observed_systemd_version: Some("252".to_owned()),
        api_service_healthy: Some(true),
        last_error: None,
        last_transition_time: Some(now.clone()),
        last_applied_time: Some(now.clone()),
        last_applied_paths: state.spec.files.iter().map(|f| f.path.clone()).collect(),
        last_applied_restarted: Some(true),
        conditions: vec![
            condition(
                "RktNetworkReady",
                "Applied",
                "The network configuration is in place.",
            ),
            condition(
                "RktAPIServiceReady",
                "Healthy",
                "The rkt API service answers GetInfo.",
            ),
            condition("RktVersionMatches", "Matches", "rkt 1.30.0 runs, as asked."),
            condition(
                "RktSystemdSupported",
                "Supported",
                "systemd 252 is supported.",
            ),
        ],
    });
    Arc::new(state)
}

/// A cluster where `configs` have converged over `nodes`: every selected node's state applied at its config's
/// current hash, every config's status as the last pass wrote it. Built with `plan` itself: a first pass with
/// every config at maxUnavailable 100% gives the states the controller writes.
fn converged(configs: Vec<RktNodeConfig>, nodes: Vec<Arc<PartialObjectMeta<Node>>>) -> Snapshot {
    let all_at_once = configs
        .iter()
        .map(|config| {
            let mut config = config.clone();
            config.spec.rollout.max_unavailable = IntOrString::String("100%".to_owned());
            Arc::new(config)
        })
        .collect();
    let first = plan(
        &Snapshot {
            configs: all_at_once,
            nodes: nodes.clone(),
            states: Vec::new(),
        },
        &now(),
    );
    let states = first
        .apply_states
        .into_iter()
        .enumerate()
        .map(|(index, state)| applied(state, index))
        .collect();
    let mut snapshot = Snapshot {
        configs: configs.into_iter().map(Arc::new).collect(),
        nodes,
        states,
    };
    let second = plan(&snapshot, &now());
    for (name, status) in second.statuses {
        let config = snapshot
            .configs
            .iter_mut()
            .find(|config| config.name_any() == name)
            .expect("a status for a known config");
        Arc::make_mut(config).status = Some(status);
    }
    snapshot
}

#[derive(Clone, Copy)]
enum Scenario {
    /// The bridge config, converged: the pass must write nothing.
    Converged,
    /// The converged bridge cluster after its config changed (a new subnet, generation 2): the first wave.
    NewRendering,
    /// Bridge (priority 0), flannel (10) and kvm (20) over a mixed pool, converged.
    ThreeConfigs,
}

impl Scenario {
    const ALL: [Self; 3] = [Self::Converged, Self::NewRendering, Self::ThreeConfigs];

    fn name(self) -> &'static str {
        match self {
            Self::Converged => "converged",
            Self::NewRendering => "new-rendering",
            Self::ThreeConfigs => "three-configs",
        }
    }

    fn snapshot(self, nodes: usize) -> Snapshot {
        let pools = match self {
            Self::ThreeConfigs => Pools::Mixed,
            Self::Converged | Self::NewRendering => Pools::Bridge,
        };
        let nodes = (0..nodes).map(|index| node(index, pools)).collect();
        let bridge = example(BRIDGE, "3f2a9c1e-1111-4000-8000-000000000001");
        match self {
            Self::Converged => converged(vec![bridge], nodes),
            Self::NewRendering => {
                let mut snapshot = converged(vec![bridge], nodes);
                let config = Arc::make_mut(&mut snapshot.configs[0]);
                let bridge = config
                    .spec
                    .network
                    .contained
                    .as_mut()
                    .and_then(|contained| contained.bridge.as_mut())
                    .expect("the bridge example has a bridge");
                bridge.subnet = "10.23.0.0/16".to_owned();
                bridge.gateway = Some("10.23.0.1".to_owned());
                config.metadata.generation = Some(2);
                snapshot
            }
            Self::ThreeConfigs => converged(
                vec![
                    bridge,
                    example(FLANNEL, "3f2a9c1e-1111-4000-8000-000000000002"),
                    example(KVM, "3f2a9c1e-1111-4000-8000-000000000003"),
                ],
                nodes,
            ),
        }
    }

    /// What the pass over `snapshot` must decide.
    fn check(self, snapshot: &Snapshot, plan: &Plan, labels: &[NodeLabel]) {
        assert!(labels.is_empty(), "every selected node has its agent label");
        let nothing = plan.apply_states.is_empty()
            && plan.delete_states.is_empty()
            && plan.release_states.is_empty()
            && plan.releasing_nodes.is_empty()
            && plan.statuses.is_empty()
            && plan.events.is_empty();
        let selected = snapshot.nodes.len() - CONTROL_PLANE.min(snapshot.nodes.len());
        assert_eq!(snapshot.states.len(), selected, "every worker has a state");
        match self {
            Self::Converged | Self::ThreeConfigs => {
                assert!(nothing, "a converged cluster needs no writes: {plan:?}");
            }
            Self::NewRendering => {
                assert_eq!(
                    plan.apply_states.len(),
                    1,
                    "maxUnavailable 1: one node first"
                );
                assert_eq!(plan.statuses.len(), 1);
                assert!(
                    plan.events
                        .iter()
                        .any(|e| e.notice.reason == "UpdatingNodes")
                );
                assert!(plan.delete_states.is_empty());
            }
        }
    }
}

fn agent_settings() -> AgentSettings {
    AgentSettings {
        namespace: "rktnetes-system".to_owned(),
        name: "rktnetes-agent".to_owned(),
        image: "rktnetes-operator:0.1.0".to_owned(),
        image_pull_policy: None,
        service_account: "rktnetes-agent".to_owned(),
        log_level: "info".to_owned(),
        tolerations: vec![Toleration {
            operator: Some("Exists".to_owned()),
            ..Toleration::default()
        }],
        resources: None,
        priority_class_name: None,
        check_interval_seconds: 30,
        release_ca_config_map: None,
        release_keys_config_map: None,
        metrics_port: None,
    }
}

/// One pass, as `controller::run` makes it.
fn pass(
    snapshot: &Snapshot,
    now: &Time,
    agent: &AgentSettings,
) -> (Plan, Vec<NodeLabel>, DaemonSet) {
    let plan = plan(snapshot, now);
    let labels = label_changes(&snapshot.nodes, &plan.agent_nodes, &agent.name);
    (plan, labels, agent_daemonset(agent))
}

const SIZES: [usize; 3] = [100, 1_000, 5_000];

fn passes(c: &mut Criterion) {
    let now = now();
    let agent = agent_settings();
    let mut group = c.benchmark_group("pass");
    group.sample_size(20).sampling_mode(SamplingMode::Flat);
    for scenario in Scenario::ALL {
        for nodes in SIZES {
            let (snapshot, kept) = counted(|| scenario.snapshot(nodes));
            let ((plan, labels, daemonset), heap) = counted(|| pass(&snapshot, &now, &agent));
            scenario.check(&snapshot, &plan, &labels);
            drop((plan, labels, daemonset));
            println!(
                "heap {}/{nodes}: snapshot keeps {}; one pass allocates {} in {} allocations, peak {} live",
                scenario.name(),
                mib(kept.retained as f64),
                mib(heap.allocated as f64),
                heap.allocations,
                mib(heap.peak as f64),
            );
            group.bench_with_input(
                BenchmarkId::new(scenario.name(), nodes),
                &snapshot,
                |b, snapshot| b.iter(|| pass(black_box(snapshot), &now, &agent)),
            );
        }
    }
    group.finish();
}

criterion_group!(benches, passes);
criterion_main!(benches);
