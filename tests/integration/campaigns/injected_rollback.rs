//! Campaign 2, rollback under injected failure. One agent on a test node applies change after change (a new MTU
//! each time), and each change is made to fail in one of three ways, chosen pseudo-randomly: systemd's start job
//! for the rkt API service fails (an `ExecStartPre` check of the campaign's drop-in), the API service exits at
//! start, or it starts but answers GetInfo with UNAVAILABLE (the stand-in's fault switch,
//! `tests/rkt-standin/src/fault.rs`). Each fault holds only while the failing change's file is in place, as a real
//! rkt fails on a configuration it cannot use.
//!
//! Every change must be rolled back byte for byte (the node holds the last good spec's files exactly, the ledger
//! records the failed hash), the rkt API service must be healthy again, the node must report RolledBack with the
//! failure's cause, and a foreign file in `net.d` must be untouched. `RKTNETES_ROLLBACK_APPLIES` changes (30 when
//! unset, as in CI).
//!
//! Then the same failures through the controller, in a rollout over the test pool: each time the rollout must halt
//! at the failing node, the nodes after it untouched. `RKTNETES_ROLLBACK_ROLLOUTS` rollouts (3, one of each
//! failure, when unset).

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    time::Instant,
};

use kube::Api;
use rktnetes_operator::{
    api::{RktNodeState, RktNodeStateSpec},
    render::render,
};
use serde_json::json;

use super::drill::{AgentRun, Drill, Expect, campaign_nodes, size_from_env};
use crate::support::{
    cluster::serial,
    controller::{apply_config, condition, config, converged, states},
    eventually, kind_profile,
    nodes::{POOL, node_ok},
    scenario::{NET_FILE, REACTION, bridge_example, setup},
};
use rktnetes_operator::api::NodePhase;

/// How many failing changes the campaign applies.
const APPLIES: &str = "RKTNETES_ROLLBACK_APPLIES";
/// How many failing rollouts the campaign runs through the controller.
const ROLLOUTS: &str = "RKTNETES_ROLLBACK_ROLLOUTS";
/// The stand-in's fault switch.
const FAULT_FILE: &str = "/run/rkt-standin/fault";
/// The text whose presence in the network config fails the start job (see [`START_CHECK`]).
const START_MARKER: &str = "/run/rkt-standin/start-marker";
/// The campaign's start check: the start job fails while the network config holds the marker.
const START_CHECK: &str = "[Service]\nExecStartPre=/bin/sh -c '! grep -qsF -f /run/rkt-standin/start-marker /etc/rkt/net.d/00-rktnetes.conf'\n";
const START_CHECK_DROP_IN: &str = "/run/systemd/system/rkt-api.service.d/91-start-check.conf";
/// An administrator's file beside ours, which no rollback may touch.
const FOREIGN: &str = "/etc/rkt/net.d/50-admin.conf";
const FOREIGN_CONTENT: &str = "{\"cniVersion\":\"0.3.1\",\"name\":\"admin\",\"type\":\"bridge\"}\n";

/// How a change is made to fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Failure {
    /// systemd's start job fails.
    StartJob,
    /// The API service exits at start.
    ServiceExits,
    /// The API service answers GetInfo with an error.
    GetInfo,
}

const FAILURES: [Failure; 3] = [Failure::StartJob, Failure::ServiceExits, Failure::GetInfo];

/// The failures to inject, in a pseudo-random order that is the same on every run (xorshift).
struct Failures(u64);

impl Iterator for Failures {
    type Item = Failure;

    fn next(&mut self) -> Option<Failure> {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        Some(FAILURES[(self.0 % 3) as usize])
    }
}

/// Installs the start check of [`Failure::StartJob`] on `node` (and a foreign file beside ours); the returned guard
/// removes them and any fault.
fn prepare(node: &'static str) -> ClearFaults {
    node_ok(
        node,
        &format!(
            "mkdir -p /etc/rkt/net.d /run/rkt-standin /run/systemd/system/rkt-api.service.d && \
             printf '%s' '{FOREIGN_CONTENT}' > {FOREIGN} && \
             printf '%s' \"{START_CHECK}\" > {START_CHECK_DROP_IN} && systemctl daemon-reload"
        ),
    );
    ClearFaults(node)
}

#[tokio::test]
async fn every_injected_failure_is_rolled_back_byte_for_byte() {
    if kind_profile() {
        return;
    }
    let _serial = serial().lock().await;
    let client = campaign_nodes().await;
    let applies: u32 = size_from_env(APPLIES, 30);

    let node = POOL[1];
    let drill = Drill::begin(client.clone(), node);
    let spec = |mtu: u32| {
        let config = bridge_example()
            .named("injected-rollback")
            .set("/spec/stage1", json!({}))
            .mtu(mtu)
            .typed();
        render(&config.spec)
            .expect("the campaign's configs render")
            .node_state_spec("injected-rollback")
    };
    let good = spec(1460);
    let _faults_cleared = prepare(node);
    drill.set_spec(&good).await;
    let mut agent = AgentRun::start(node, None);
    drill.settle(&mut agent, &Expect::Applied(&good)).await;
    let known: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();

    let states: Api<RktNodeState> = Api::all(client.clone());
    let mut rolled_back: BTreeMap<Failure, u32> = BTreeMap::new();
    let started = Instant::now();
    for (apply, failure) in (0..applies).zip(Failures(0x2545_f491_4f6c_dd1d)) {
        // A new MTU each time: a new spec hash, never one that failed before.
        let failing = spec(1000 + apply % 400 + 1);
        inject(node, failure, &failing);
        drill.set_spec(&failing).await;
        drill
            .settle(&mut agent, &Expect::RolledBack(&failing))
            .await;

        drill.check_whole(&good, &known);
        let foreign = fs::read_to_string(drill.host_path(FOREIGN)).unwrap_or_default();
        assert_eq!(foreign, FOREIGN_CONTENT, "the foreign file was touched");
        let status = states
            .get(node)
            .await
            .expect("the node's state")
            .status
            .unwrap_or_default();
        assert_eq!(
            status.api_service_healthy,
            Some(true),
            "change {apply} ({failure:?}): the rkt API service is not healthy after the rollback"
        );
        let error = status.last_error.unwrap_or_default();
        let named = match failure {
            Failure::StartJob => error.contains("rkt-api.service"),
            Failure::ServiceExits => error.contains("GetInfo"),
            Failure::GetInfo => error.contains("injected fault"),
        };
        assert!(
            named,
            "change {apply} ({failure:?}): the reported cause does not say what failed: {error}"
        );
        *rolled_back.entry(failure).or_default() += 1;
        clear(node);
    }
    drill.kill(agent);
    println!(
        "injected rollback: {applies} failing changes rolled back byte for byte ({}) in {} s",
        rolled_back
            .iter()
            .map(|(failure, count)| format!("{failure:?} {count}"))
            .collect::<Vec<_>>()
            .join(", "),
        started.elapsed().as_secs()
    );
    assert_eq!(rolled_back.values().sum::<u32>(), applies);
}

/// Makes `failing`'s network config fail the rkt API service in the way `failure` says.
fn inject(node: &str, failure: Failure, failing: &RktNodeStateSpec) {
    let marker = failing
        .files
        .iter()
        .find(|file| file.path == NET_FILE)
        .and_then(|file| file.content.lines().find(|line| line.contains("\"mtu\"")))
        .expect("the network config has an MTU")
        .trim()
        .to_owned();
    let (path, content) = match failure {
        Failure::StartJob => (START_MARKER, format!("{marker}\n")),
        Failure::ServiceExits => (FAULT_FILE, format!("exit\n{NET_FILE}\n{marker}\n")),
        Failure::GetInfo => (FAULT_FILE, format!("getinfo\n{NET_FILE}\n{marker}\n")),
    };
    node_ok(
        node,
        &format!("printf '%s' '{content}' > {path}.new && mv {path}.new {path}"),
    );
}

/// Removes every injected fault.
fn clear(node: &str) {
    node_ok(node, &format!("rm -f {FAULT_FILE} {START_MARKER}"));
}

/// Clears the faults, the start check and the foreign file when the campaign ends, however it ends.
struct ClearFaults(&'static str);

impl Drop for ClearFaults {
    fn drop(&mut self) {
        let _ = crate::support::nodes::node_shell(
            self.0,
            &format!(
                "rm -f {FAULT_FILE} {START_MARKER} {START_CHECK_DROP_IN} {FOREIGN}; systemctl daemon-reload"
            ),
        );
    }
}

#[tokio::test]
async fn an_injected_failure_halts_the_rollout_at_the_failing_node() {
    if kind_profile() {
        return;
    }
    let _serial = serial().lock().await;
    let (client, controller) = setup().await;
    let rollouts = size_from_env(ROLLOUTS, 3);
    let failing_node = POOL[1];
    let _faults_cleared = prepare(failing_node);
    let base = bridge_example()
        .named("halt")
        .set("/spec/stage1", json!({}));
    // Each rollout one of each failure in turn (from the same start, so that 3 cover all three).
    for (rollout, failure) in (0..rollouts).zip(FAILURES.iter().copied().cycle()) {
        let good_mtu = 1200 + rollout * 2;
        apply_config(&client, base.clone().mtu(good_mtu)).await;
        let good = converged(&client, "halt", POOL.len()).await;
        let before = std::fs::read(super::drill::node_path(failing_node, NET_FILE)).ok();

        let failing = base.clone().mtu(good_mtu + 1);
        let failing_spec = render(&failing.typed().spec)
            .expect("the campaign's configs render")
            .node_state_spec("halt");
        inject(failing_node, failure, &failing_spec);
        apply_config(&client, failing).await;
        eventually(
            &format!("{failing_node} rolls back the change ({failure:?})"),
            REACTION,
            async || {
                let state = states(&client).await.remove(failing_node)?;
                (state.spec.hash == failing_spec.hash
                    && state.current_phase() == Some(NodePhase::RolledBack))
                .then_some(())
            },
        )
        .await;
        eventually("the config reports Degraded", REACTION, async || {
            (condition(&config(&client, "halt").await, "Degraded").0 == "True").then_some(())
        })
        .await;
        // Whatever the controller would do after the rollback, it has done within two passes.
        controller.two_more_passes(&client).await;
        let states = states(&client).await;
        assert_eq!(
            states[POOL[0]].spec.hash, failing_spec.hash,
            "rollout {rollout} ({failure:?}): the node before the failing one was not updated"
        );
        assert_eq!(
            states[POOL[2]].spec.hash, good,
            "rollout {rollout} ({failure:?}): the rollout went past the failing node"
        );
        assert_eq!(
            std::fs::read(super::drill::node_path(failing_node, NET_FILE)).ok(),
            before,
            "rollout {rollout} ({failure:?}): the failing node's file is not restored byte for byte"
        );
        clear(failing_node);
    }
    println!("injected rollback: {rollouts} rollouts halted at the failing node");
}
