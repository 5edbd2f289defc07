#!/usr/bin/env bash
# The test command: on a fresh machine it installs what is missing, builds the local control plane from Go
# modules (cached outside the clone), checks formatting and lints, and runs every test tier with cargo test
# (the node tier debootstraps its Debian root once, cached, and boots systemd-nspawn machines).
#
#   e2e/test.sh              everything
#   e2e/test.sh -- NAME      extra arguments go to cargo test (a filter, --nocapture ...)
#
# The control plane is left running when it was already up before, and stopped otherwise.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
cd "$REPO_DIR"
[[ ${1:-} == -- ]] && shift

started=$(date +%s)
"$E2E_DIR/install-deps.sh"
"$E2E_DIR/build-tools.sh"

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --all-targets --locked -- -D warnings

was_up=false
"$E2E_DIR/cluster.sh" status >/dev/null 2>&1 && was_up=true
# The node tests boot systemd-nspawn machines; they never outlive the test run.
if $was_up; then
  trap '"$E2E_DIR/nodes.sh" down >&2 || true' EXIT
else
  trap '"$E2E_DIR/nodes.sh" down >&2 || true; "$E2E_DIR/cluster.sh" down >&2 || true' EXIT
fi
log "starting the local control plane"
"$E2E_DIR/cluster.sh" up >/dev/null

log "cargo test"
cargo test --locked --no-fail-fast "$@"
log "all tests passed in $(( $(date +%s) - started ))s"
