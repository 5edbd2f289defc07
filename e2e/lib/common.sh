# Shared settings for the e2e scripts. Sourced, not run.
# shellcheck shell=bash

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPO_DIR=$(cd "$E2E_DIR/.." && pwd)
# shellcheck source=../versions.env
. "$E2E_DIR/versions.env"

# Everything built or downloaded lives outside the clone, so a second run (or a fresh clone) is fast.
RKTNETES_CACHE=${RKTNETES_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rktnetes}
TOOLS_DIR="$RKTNETES_CACHE/tools/kubernetes-$KUBERNETES_VERSION-etcd-$ETCD_VERSION-helm-$HELM_VERSION"
TOOLS_BIN="$TOOLS_DIR/bin"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
