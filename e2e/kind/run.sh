#!/usr/bin/env bash
# The kind lane, run by the end-to-end harness (e2e/harness/src/kind_lane/): a kind cluster built here with the
# chart's pods on its kubelets, and the node suite against it. This shim keeps `e2e/kind/run.sh` working for
# e2e/test.sh, e2e/demo.sh and people; `rktnetes-e2e kind --help` says the rest.
#
# Usage: e2e/kind/run.sh [ci] | up [-- TEST_ARGS...] | setup | test [-- TEST_ARGS...] | env | down
set -euo pipefail
cd "$(dirname "$0")/../.."
exec cargo run --quiet --locked -p rktnetes-e2e -- kind "$@"
