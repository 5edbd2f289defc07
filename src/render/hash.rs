//! The identity of a rendering: what a node's agent reports back as applied, and what tells the controller a node
//! is up to date.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::api::{HostFile, RktServiceSpec};

/// Hex digits kept: 64 bits tell renderings apart and still fit a printer column.
const HASH_DIGITS: usize = 16;

/// What the hash covers, named as in the RktNodeStateSpec.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct HashedState<'a> {
    files: &'a [HostFile],
    rkt: &'a RktServiceSpec,
    restart_api_service: bool,
}

/// The first 16 hex digits of SHA-256 over the compact JSON of `files`, `rkt` and `restart_api_service`. Every
/// field is a struct field, so the JSON, and with it the hash, does not depend on any map's order.
pub(super) fn rendering_hash(
    files: &[HostFile],
    rkt: &RktServiceSpec,
    restart_api_service: bool,
) -> Result<String, serde_json::Error> {
    json_hash(&HashedState {
        files,
        rkt,
        restart_api_service,
    })
}

/// The first 16 hex digits of SHA-256 over `value`'s compact JSON: the short, stable identity of what the
/// controller writes (a rendering, the agent DaemonSet), the same for the same value on every run.
pub fn json_hash<T: Serialize>(value: &T) -> Result<String, serde_json::Error> {
    let digest = Sha256::digest(serde_json::to_vec(value)?);
    Ok(digest
        .iter()
        .take(HASH_DIGITS / 2)
        .map(|byte| format!("{byte:02x}"))
        .collect())
}
