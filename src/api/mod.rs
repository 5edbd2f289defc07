//! The `rktnetes.io/v1alpha1` API: the types every other part of the operator depends on.
//!
//! Nothing in this module talks to the network. The CEL and OpenAPI rules written here are the single source of
//! validation: the apiserver enforces them at admission (through the generated CRDs) and
//! [`validation::OfflineValidator`] evaluates the very same CRD schema when there is no cluster (`rktnetes render`).

pub mod crd;
pub mod host_paths;
pub mod network;
pub mod node_config;
pub mod node_selector;
pub mod node_state;
pub mod rkt;
pub mod rollout;
mod schema;
pub mod stage1;
pub mod validation;

pub use network::{
    BridgeNetwork, CniConfig, ContainedNetwork, ContainedPlugin, CustomNetwork, FlannelDelegate,
    FlannelNetwork, KubernetesCniNetwork, Network, NetworkMode, Route,
};
pub use node_config::{RktNodeConfig, RktNodeConfigSpec, RktNodeConfigStatus};
pub use node_selector::{NodeSelector, NodeSelectorOperator, NodeSelectorRequirement};
pub use node_state::{
    HostFile, NodePhase, RktNodeState, RktNodeStateSpec, RktNodeStateStatus, RktServiceSpec,
};
pub use rkt::{RktInstall, RktSpec, UnitPolicy};
pub use rollout::Rollout;
pub use stage1::Stage1;

/// The API group of every kind in this module.
pub const GROUP: &str = "rktnetes.io";
/// The API version of every kind in this module.
pub const VERSION: &str = "v1alpha1";
/// The name of the network that the kubelet asks rkt for when pods use rkt's contained network (seed 003).
pub const RKT_KUBERNETES_NETWORK: &str = "rkt.kubernetes.io";
/// The oldest rkt that Kubernetes' rkt runtime accepts (seed 003).
pub const MIN_RKT_VERSION: &str = "1.9.1";
