#!/usr/bin/env bash
# The scale bench: what the operator costs a cluster of 1,000, 5,000 and 20,000 nodes (rktnetes-e2e scale,
# e2e/harness/src/scale). It installs what is missing, builds the control plane's binaries (cached) and the
# operator's release build, starts a local control plane of its own (its API server keeps an audit log of every
# write, which is how writes are counted), and prints a table of figures beside their goals; logs and the table go
# to $RKTNETES_CACHE/scale/<date>.
#
#   e2e/scale.sh                          1,000, 5,000 and 20,000 nodes, ten minutes at rest each
#   e2e/scale.sh --nodes 1000 --rest-seconds 60
#   e2e/scale.sh ci                       200 nodes, a minute at rest; fails if the operator writes at rest
#                                         (CI runs this)
#
# Other options: rktnetes-e2e scale --help.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
cd "$REPO_DIR"

args=("$@")
profile=release
if [[ ${1:-} == ci ]]; then
  # Counts, not times: the test run's debug build does, and nothing more is compiled.
  args=(--nodes 200 --rest-seconds 60 --apply-delay-ms 500 --gate)
  profile=debug
fi

"$E2E_DIR/install-deps.sh"
"$E2E_DIR/build-tools.sh"
if [[ $profile == release ]]; then
  log "building the operator and the harness (release: the simulated agents are measured too)"
  cargo build --quiet --locked --release --bin rktnetes --bin rktnetes-e2e
elif [[ ! -x target/debug/rktnetes || ! -x target/debug/rktnetes-e2e ]]; then
  # The test run (e2e/test.sh) leaves both.
  cargo build --quiet --locked --bin rktnetes --bin rktnetes-e2e
fi
# A control plane of its own (its own state directory and ports), started fresh and stopped at the end: nothing
# the test suites leave can be selected or counted, and the bench leaves nothing behind.
export RKTNETES_CLUSTER_DIR=${RKTNETES_SCALE_CLUSTER_DIR:-$RKTNETES_CACHE/scale-cluster}
export RKTNETES_ETCD_CLIENT_PORT=24791 RKTNETES_ETCD_PEER_PORT=24801 RKTNETES_APISERVER_PORT=17443 RKTNETES_KCM_PORT=21257
"$E2E_DIR/cluster.sh" down >/dev/null
trap '"$E2E_DIR/cluster.sh" down >/dev/null' EXIT
"$E2E_DIR/cluster.sh" up >/dev/null

out="$RKTNETES_CACHE/scale/$(date -u +%Y-%m-%dT%H%M%SZ)"
mkdir -p "$out"
# The agents hold one connection each.
ulimit -n "$(ulimit -Hn)"
log "the scale bench; logs in $out"
"$REPO_DIR/target/$profile/rktnetes-e2e" scale --operator "$REPO_DIR/target/$profile/rktnetes" --out "$out" "${args[@]}"
