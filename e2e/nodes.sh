#!/usr/bin/env bash
# The test machines of the node end-to-end tier (systemd-nspawn Debian machines behind a host bridge): a shim for
# `rktnetes-e2e nodes` (e2e/harness/src/machines/), built here if needed. Settings: the RKTNETES_* variables in
# the module doc of e2e/harness/src/machines/mod.rs.
#
# Usage: e2e/nodes.sh up N [--rkt-version I=VERSION]... | exec NODE -- CMD... | status | host-address | down
set -euo pipefail
exec cargo run --quiet --locked --manifest-path "$(dirname "$0")/../Cargo.toml" -p rktnetes-e2e -- nodes "$@"
