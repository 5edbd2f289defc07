//! What a test node's journal says after a point: the campaigns count the rkt API service's starts and read the
//! agent's lines from where a change began.

use crate::support::nodes::node_ok;

/// Where the node's journal ends now, to read what comes after it.
pub fn cursor(node: &str) -> String {
    node_ok(node, "journalctl -q -n 0 --show-cursor")
        .trim()
        .trim_start_matches("-- cursor: ")
        .to_owned()
}

/// The lines `unit` logged after the journal's `cursor` (found from the cursor by the journal's index, so reading
/// them costs the same however long a campaign has run).
pub fn unit_lines_after(node: &str, unit: &str, cursor: &str) -> String {
    node_ok(
        node,
        &format!("journalctl -q -o cat -u {unit} --after-cursor='{cursor}'"),
    )
}

/// How many times systemd started the rkt API service after `cursor`.
pub fn api_service_starts_after(node: &str, cursor: &str) -> u64 {
    unit_lines_after(node, "rkt-api.service", cursor)
        .lines()
        .filter(|line| line.starts_with("Started"))
        .count() as u64
}
