#!/usr/bin/env bash
# Runs a command as root inside a node of the kind lane's cluster: the kind counterpart of `e2e/nodes.sh exec`,
# with the same interface, so the node end-to-end suite can drive either kind of node (RKTNETES_NODE_EXEC).
#
# Usage: e2e/kind/node-exec.sh NODE -- CMD...
#   NODE  a kind node's container name (rktnetes-worker2), or a worker's index: 1 is <cluster>-worker, 2 is
#         <cluster>-worker2, and so on
#   CMD   runs with a clean environment (PATH, HOME, LANG, TERM); stdin, stdout, stderr and the exit status pass
#         through
#
# Settings (environment): RKTNETES_KIND_CLUSTER, the kind cluster's name (default rktnetes). Only its nodes are
# accepted, so a typo cannot run a command in some other container.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib/common.sh
. "$(dirname "$0")/../lib/common.sh"

CLUSTER=${RKTNETES_KIND_CLUSTER:-rktnetes}
NODE_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

if (($# < 3)) || [[ $2 != -- ]]; then die "usage: $0 NODE -- CMD..."; fi
node=$1
shift 2
if [[ $node =~ ^[0-9]+$ ]]; then
  ((node >= 1)) || die "worker indexes start at 1: '$node'"
  if ((node == 1)); then node=$CLUSTER-worker; else node=$CLUSTER-worker$node; fi
fi
command -v docker >/dev/null || die "docker is not installed; the kind lane needs Docker"
owner=$(docker inspect --type container -f '{{index .Config.Labels "io.x-k8s.kind.cluster"}}' "$node" 2>/dev/null) ||
  die "there is no container named $node (see: kind get nodes --name $CLUSTER)"
[[ $owner == "$CLUSTER" ]] || die "$node is not a node of the kind cluster $CLUSTER"
exec docker exec -i "$node" env -i PATH="$NODE_PATH" HOME=/root LANG=C.UTF-8 ${TERM:+TERM="$TERM"} "$@"
