//! Shared by the integration test binaries: the example and invalid configs, and the local control plane.
#![allow(dead_code)] // each test binary uses its own part of this module

pub mod chart;
pub mod cluster;
pub mod controller;
pub mod corpus;
pub mod nodes;
pub mod scenario;

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
