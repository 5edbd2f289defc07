//! rkt itself, as the operator meets it on a node: its API service's wire protocol (`v1alpha`), a client for the
//! agent's version checks (`client`), and the reader of rkt's configuration directories (`config`). The test nodes'
//! stand-in for the archived rkt 1.x is a crate of its own (`tests/rkt-standin`), built on these.
//!
//! rkt's last release is 1.30.0 and nothing we can install ships it, so everything here follows rkt's own
//! `api/v1alpha/api.proto`, `rkt/config` and `rkt/api_service.go`, and the facts gathered in `RKT-FACTS.md`.

pub mod client;
pub mod config;
mod error_chain;
pub mod net_d;
pub mod v1alpha;

pub use client::{RktApiError, RktInfo, get_info, version_from_cli};
pub use error_chain::error_chain;

/// The API version rkt's API service reports in GetInfo (rkt `api_service.go`, `supportedAPIVersion`).
pub const API_VERSION: &str = "1.0.0-alpha";

/// The appc spec version rkt 1.30.0 was built with, reported by GetInfo and `rkt version`.
pub const APPC_VERSION: &str = "0.8.11";

/// Where rkt's API service listens unless told otherwise (`rkt api-service --listen`).
pub const DEFAULT_API_ENDPOINT: &str = "localhost:15441";
