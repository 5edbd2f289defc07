#!/usr/bin/env bash
# The test command: on a fresh machine it installs what is missing, builds the local control plane from Go
# modules (cached outside the clone), checks formatting and lints, and runs every test tier with cargo test (the
# node tier debootstraps its Debian root once, cached, and boots systemd-nspawn machines), the scale bench at 200
# nodes as a gate on the operator's writes (e2e/scale.sh ci); then the kind lane
# (e2e/kind/run.sh): a kind cluster built and run on this machine, with the chart's pods on its kubelets.
#
#   e2e/test.sh              everything
#   e2e/test.sh -- NAME      extra arguments go to cargo test (a filter, --nocapture ...); the kind lane is skipped
#   RKTNETES_SKIP_KIND=1     skips the kind lane
#
# The control plane is left running when it was already up before, and stopped otherwise.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
cd "$REPO_DIR"
[[ ${1:-} == -- ]] && shift

started=$(date +%s)
# A CI clone builds once and is thrown away: incremental compilation would only add its 1.3 GB and its time.
if [[ -n ${CI:-} ]]; then export CARGO_INCREMENTAL=0; fi
"$E2E_DIR/install-deps.sh"
"$E2E_DIR/build-tools.sh"

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
cargo clippy --lib --locked --features fuzzing -- -D warnings

was_up=false
"$E2E_DIR/cluster.sh" status >/dev/null 2>&1 && was_up=true
# The node tests boot systemd-nspawn machines; they never outlive the test run.
stop_local() {
  "$E2E_DIR/nodes.sh" down >&2 || true
  $was_up || "$E2E_DIR/cluster.sh" down >&2 || true
}
trap stop_local EXIT
log "starting the local control plane"
"$E2E_DIR/cluster.sh" up >/dev/null

log "cargo test"
cargo test --locked --no-fail-fast "$@"
if (($# == 0)); then
  # The scale bench at 200 nodes, as a gate on the operator's writes (none at rest, at most 2.5 per node for a
  # change). Figures, not assertions on time.
  log "the scale bench (200 nodes)"
  "$E2E_DIR/scale.sh" ci
fi
log "local tiers passed in $(($(date +%s) - started))s"
if (($# == 0)); then
  # The fuzzing campaign, reduced: each target for 15 s (rktnetes-e2e fuzz; the long campaign is in the README).
  log "fuzzing"
  cargo run --quiet --locked -p rktnetes-e2e -- fuzz --seconds 15
fi

if (($#)); then
  log "a test filter was given: the kind lane is skipped"
  exit 0
elif [[ -n ${RKTNETES_SKIP_KIND:-} ]]; then
  log "RKTNETES_SKIP_KIND is set: the kind lane is skipped"
  exit 0
fi
# The kind lane needs the machine's cores and memory more than the local nodes do.
stop_local
trap - EXIT
kind_started=$(date +%s)
log "the kind lane"
"$E2E_DIR/kind/run.sh" ci
log "kind lane passed in $(($(date +%s) - kind_started))s; all tests passed in $(($(date +%s) - started))s"
