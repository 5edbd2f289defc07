//! The integration and end-to-end tests as one binary (one link, one start of the control plane): a module per tier
//! or subject, named as the tests are (`admission::...`, `nodes::operating::...`), all sharing `support`.
//!
//! Tests that change the cluster's shared objects (configs, states, nodes, the chart's release) hold
//! `support::cluster::serial()` and start from `support::controller::reset`. The kind lane's own checks (`kind::`)
//! are ignored here: they need the kind cluster of `e2e/kind/run.sh`, which runs them with the node suite
//! (`-- --include-ignored nodes:: kind::`).

mod admission;
mod alerts;
mod argocd_health;
mod campaigns;
mod chart;
mod controller;
mod crds;
mod kind;
mod nodes;
mod offline_validation;
mod render;
mod support;
