//! How a change reaches the selected nodes.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// How fast a change rolls over the selected nodes.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rollout {
    /// How many selected nodes may be updating or degraded at once: a positive number, or a percentage from 1% to
    /// 100% of the selected nodes (rounded down, at least one). A degraded node holds further nodes back until it
    /// recovers or the config changes.
    #[x_kube(validation = Rule::new(
        "string(self).matches('^([1-9][0-9]*|([1-9][0-9]?|100)%)$')"
    ).message("maxUnavailable must be a positive integer or a percentage from 1% to 100%"))]
    #[serde(default = "Rollout::default_max_unavailable")]
    pub max_unavailable: IntOrString,
    /// Stop starting new nodes; nodes already updating finish.
    #[serde(default)]
    pub paused: bool,
}

impl Rollout {
    fn default_max_unavailable() -> IntOrString {
        IntOrString::Int(1)
    }
}

impl Default for Rollout {
    fn default() -> Self {
        Self {
            max_unavailable: Self::default_max_unavailable(),
            paused: false,
        }
    }
}
