//! The bench nodes' kubelets, as far as the API server sees them: each renews its node's Lease every
//! `lease_interval` and posts its Node status every `status_interval` (a kubelet's `nodeStatusReportFrequency`),
//! spread evenly over the interval as real kubelets' clocks are. The watch streams carry that noise, and the
//! control plane's node lifecycle controller sees healthy nodes instead of rewriting every Node as NotReady.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use futures::{StreamExt, stream};
use k8s_openapi::{
    api::{coordination::v1::Lease, core::v1::Node},
    apimachinery::pkg::apis::meta::v1::{MicroTime, Time},
    jiff::Timestamp,
};
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
};
use serde_json::json;

use super::cloud_nodes::{self, LEASE_NAMESPACE};

/// How often the simulated kubelets act, and how many nodes they stand for.
#[derive(Clone, Copy, Debug)]
pub struct Heartbeats {
    pub nodes: usize,
    pub lease_interval: Duration,
    pub status_interval: Duration,
}

/// What the kubelets did so far.
#[derive(Debug, Default)]
pub struct Counts {
    pub renewals: AtomicU64,
    pub status_posts: AtomicU64,
    pub failures: AtomicU64,
}

/// The kubelets at work in the background; they stop when dropped.
pub struct Kubelets {
    pub counts: Arc<Counts>,
    task: tokio::task::JoinHandle<()>,
}

/// One tick of the schedule: every node whose slot it is renews, every node whose status slot it is posts.
const TICK: Duration = Duration::from_millis(100);
/// Requests in flight at once.
const PARALLEL: usize = 32;

impl Kubelets {
    pub fn start(client: Client, heartbeats: Heartbeats) -> Self {
        let counts = Arc::new(Counts::default());
        let task = tokio::spawn(beat(client, heartbeats, counts.clone()));
        Self { counts, task }
    }
}

impl Drop for Kubelets {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Which of `slots` slots node `index` acts in.
fn slot(index: usize, slots: u64) -> u64 {
    // Spread, not in name order: neighbours act at different times.
    (index as u64).wrapping_mul(2_654_435_761) % slots
}

async fn beat(client: Client, heartbeats: Heartbeats, counts: Arc<Counts>) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let nodes: Api<Node> = Api::all(client);
    let lease_slots = (heartbeats.lease_interval.as_millis() / TICK.as_millis()).max(1) as u64;
    let status_slots = (heartbeats.status_interval.as_millis() / TICK.as_millis()).max(1) as u64;
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tick: u64 = 0;
    loop {
        ticker.tick().await;
        let due = (0..heartbeats.nodes).filter_map(|index| {
            let renew = slot(index, lease_slots) == tick % lease_slots;
            let post = slot(index, status_slots) == tick % status_slots;
            (renew || post).then_some((index, renew, post))
        });
        stream::iter(due)
            .for_each_concurrent(PARALLEL, |(index, renew, post)| {
                let (leases, nodes, counts) = (&leases, &nodes, &counts);
                async move {
                    let name = cloud_nodes::name(index);
                    if renew {
                        let patch = json!({"spec": {"renewTime": MicroTime(Timestamp::now())}});
                        let result = leases
                            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                            .await;
                        count(counts, &counts.renewals, result.is_ok());
                    }
                    if post {
                        let now = Time(Timestamp::now());
                        let patch = json!({"status": {"conditions": [{
                            "type": "Ready", "status": "True", "reason": "KubeletReady",
                            "message": "kubelet is posting ready status", "lastHeartbeatTime": now,
                        }]}});
                        let result = nodes
                            .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch))
                            .await;
                        count(counts, &counts.status_posts, result.is_ok());
                    }
                }
            })
            .await;
        tick += 1;
    }
}

fn count(counts: &Counts, done: &AtomicU64, ok: bool) {
    if ok {
        done.fetch_add(1, Ordering::Relaxed);
    } else {
        counts.failures.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_node_has_one_slot_and_the_slots_are_evenly_used() {
        let slots = 100;
        let mut used = vec![0usize; slots as usize];
        for index in 0..10_000 {
            used[slot(index, slots) as usize] += 1;
        }
        assert!(
            used.iter().all(|count| (80..=120).contains(count)),
            "{used:?}"
        );
    }
}
