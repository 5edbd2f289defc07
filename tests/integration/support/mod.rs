//! Shared by the integration tests: the local control plane (or the kind cluster), the chart, the test nodes, the
//! controller under test, the example and invalid configs, the fixtures every module builds its objects from, and
//! the one way to wait.

pub mod chart;
pub mod cluster;
pub mod controller;
pub mod corpus;
mod eventually;
pub mod fixtures;
pub mod hostile_api;
pub mod nodes;
pub mod release_server;
pub mod scenario;
pub mod tls_server;

pub use eventually::eventually;

use std::path::{Path, PathBuf};

/// Whether the suite runs against the kind cluster of `e2e/kind/run.sh` (which installed the chart, the stand-in
/// and the nodes) rather than the local control plane and its nspawn machines.
pub fn kind_profile() -> bool {
    std::env::var("RKTNETES_E2E_PROFILE").is_ok_and(|profile| profile == "kind")
}

/// The repository's root, whatever directory the tests run from.
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A path inside the repository.
pub fn repo_path(relative: &str) -> PathBuf {
    repo_root().join(relative)
}
