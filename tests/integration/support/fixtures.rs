//! Test objects, built one way for every module: RktNodeConfigs from the examples users copy, a node's progress
//! through a rollout, a fixed instant.

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use rktnetes_operator::{
    api::{NodePhase, RktNodeConfig, RktNodeConfigStatus},
    controller::rollout::NodeProgress,
};
use serde_json::{Value, json};

use super::corpus::example;

/// The label that puts the test nodes in pools, and that the tests' configs select.
pub const POOL_LABEL: &str = "rktnetes.io/pool";

/// A RktNodeConfig for a test: an example of `e2e/examples` as users copy it, changed by the methods below.
#[derive(Clone, Debug)]
pub struct TestConfig(Value);

impl TestConfig {
    /// `e2e/examples/<name>.yaml`, e.g. `bridge` (the seed's bridge network).
    pub fn example(name: &str) -> Self {
        Self(example(name))
    }

    pub fn named(self, name: &str) -> Self {
        self.set("/metadata/name", name)
    }

    /// Selects the nodes of one pool (`rktnetes.io/pool=<pool>`) instead of those the example selects.
    pub fn in_pool(self, pool: &str) -> Self {
        self.set(
            "/spec/nodeSelector",
            json!({"matchLabels": {POOL_LABEL: pool}}),
        )
    }

    pub fn mtu(self, mtu: u32) -> Self {
        self.set("/spec/network/contained/bridge/mtu", mtu)
    }

    pub fn max_unavailable(self, budget: impl Into<Value>) -> Self {
        self.set("/spec/rollout/maxUnavailable", budget)
    }

    pub fn paused(self, paused: bool) -> Self {
        self.set("/spec/rollout/paused", paused)
    }

    /// The object as the apiserver holds it at `generation`, with the status the controller wrote.
    pub fn stored(self, generation: i64, status: Option<RktNodeConfigStatus>) -> Self {
        let status = serde_json::to_value(status).expect("a status serialises");
        self.set("/metadata/generation", generation)
            .set("/metadata/uid", "0b7f6c1e-5a7d-4c55-9d0e-2f1f9b6f3e11")
            .set("/metadata/resourceVersion", "4711")
            .set("/status", status)
    }

    /// Sets the field at `pointer` (a JSON pointer, `/spec/rkt/path`), making the objects on the way.
    pub fn set(mut self, pointer: &str, value: impl Into<Value>) -> Self {
        let mut field = &mut self.0;
        for name in pointer.split('/').skip(1) {
            if !field.is_object() {
                *field = json!({});
            }
            field = field
                .as_object_mut()
                .expect("made an object above")
                .entry(name)
                .or_insert(Value::Null);
        }
        *field = value.into();
        self
    }

    pub fn name(&self) -> &str {
        self.0["metadata"]["name"]
            .as_str()
            .expect("every example is named")
    }

    /// The object as JSON, as `kubectl apply` sends it.
    pub fn json(&self) -> &Value {
        &self.0
    }

    pub fn typed(&self) -> RktNodeConfig {
        serde_json::from_value(self.0.clone())
            .unwrap_or_else(|error| panic!("not a RktNodeConfig ({error}): {:#}", self.0))
    }
}

/// A node's progress through a rollout, as the controller sees it.
pub fn progress(node: &str, desired: &str, applied: &str, phase: NodePhase) -> NodeProgress {
    NodeProgress {
        node: node.into(),
        desired_hash: Some(desired.into()),
        applied_hash: Some(applied.into()),
        phase: Some(phase),
    }
}

/// A fixed instant (2026-09-21T14:13:20Z), for what is stamped with the time.
pub fn now() -> Time {
    Time(Timestamp::from_second(1_790_000_000).expect("a valid timestamp"))
}
