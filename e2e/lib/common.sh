# Shared settings for the e2e scripts. Sourced, not run.
# shellcheck shell=bash disable=SC2034 # the settings here are used by the scripts that source this

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPO_DIR=$(cd "$E2E_DIR/.." && pwd)
# shellcheck source=../versions.env
. "$E2E_DIR/versions.env"

# Everything built or downloaded lives outside the clone, so a second run (or a fresh clone) is fast.
RKTNETES_CACHE=${RKTNETES_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rktnetes}
TOOLS_DIR="$RKTNETES_CACHE/tools/kubernetes-$KUBERNETES_VERSION-etcd-$ETCD_VERSION-helm-$HELM_VERSION"
TOOLS_BIN="$TOOLS_DIR/bin"
# The kind lane's own tools (e2e/build-tools.sh kind): what its node image is made of, and kind.
KIND_TOOLS_DIR="$RKTNETES_CACHE/tools/kind-$KIND_VERSION-kubernetes-$KUBERNETES_VERSION-containerd-$CONTAINERD_VERSION-crictl-$CRI_TOOLS_VERSION"
KIND_TOOLS_BIN="$KIND_TOOLS_DIR/bin"
MONITORING_TOOLS_BIN="$RKTNETES_CACHE/tools/prometheus-$PROMETHEUS_VERSION/bin"

# Test nodes (e2e/nodes.sh, the harness's e2e/harness/src/machines/): systemd-nspawn machines behind a host bridge,
# each in a network namespace of its own. One /24: the host is .1 on the bridge, node i is .(10+i).
NODE_NETWORK=${RKTNETES_NODE_NETWORK:-10.213.0.0/24}
NODE_HOST_IP=${NODE_NETWORK%.*}.1

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
