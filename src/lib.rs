//! rktnetes-operator: manages how Kubernetes nodes run the rkt container runtime.
//!
//! `api` holds the custom resources shared by every component; the `rktnetes` binary's subcommands live in
//! `cli`.

pub mod api;
pub mod cli;
