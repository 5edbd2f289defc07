//! rktnetes-operator: manages how Kubernetes nodes run the rkt container runtime.
//!
//! `api` holds the custom resources shared by every component; `render` turns a config into the files a node gets;
//! `controller` rolls configs out to nodes; `agent` applies them on a node; `events` records Events for both; `rkt`
//! speaks rkt's API and reads its configuration; the `rktnetes` binary's subcommands live in `cli`; `memory` gives
//! freed heap back to the system after a peak.

pub mod agent;
pub mod api;
pub mod cli;
pub mod conditions;
pub mod controller;
pub mod events;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod memory;
#[cfg(test)]
mod monitoring;
pub mod render;
pub mod rkt;
pub mod shutdown;
