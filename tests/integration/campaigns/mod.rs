//! The reliability campaigns of the README's Reliability section, each a test that runs a reduced version by
//! default (in CI) and the full one when told to by its environment variables. They run on the local machines.

mod crash_consistency;
mod drill;
mod hostile_api;
mod injected_rollback;
mod journal;
