#!/usr/bin/env bash
# The main job: a local cluster with the operator converging real nodes.
#
#   e2e/demo.sh [up]    builds what is missing, starts the control plane and three systemd-nspawn nodes (agents
#                       inside, under the chart's ServiceAccount and RBAC), runs the controller on this machine,
#                       applies e2e/examples/bridge.yaml and shows the nodes converging, then the files written
#   e2e/demo.sh down    stops the controller, the nodes and the control plane
#
# There is no kubelet here, so the controller runs as a process on the host and each agent as a systemd unit in
# its node, as the DaemonSet's pod would run under stage1-fly.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
cd "$REPO_DIR"

DEMO_DIR="$RKTNETES_CACHE/demo"
CONTROLLER_PID="$DEMO_DIR/controller.pid"

down() {
  if [[ -f $CONTROLLER_PID ]]; then
    kill "$(cat "$CONTROLLER_PID")" 2>/dev/null || true
    rm -f "$CONTROLLER_PID"
  fi
  "$E2E_DIR/nodes.sh" down
  "$E2E_DIR/cluster.sh" down
}

if [[ ${1:-up} == down ]]; then
  down
  exit 0
fi

"$E2E_DIR/install-deps.sh"
"$E2E_DIR/build-tools.sh"
log "building rktnetes and the rkt stand-in"
cargo build --quiet --bins
export KUBECONFIG
KUBECONFIG=$("$E2E_DIR/cluster.sh" up)
export PATH="$TOOLS_BIN:$PATH"
mkdir -p "$DEMO_DIR"

log "installing the CRDs and the chart's ServiceAccounts and RBAC"
kubectl apply --server-side --field-manager=rktnetes-demo -f crds/ >/dev/null
kubectl wait --for=condition=Established crd/rktnodeconfigs.rktnetes.io crd/rktnodestates.rktnetes.io >/dev/null
kubectl create namespace rktnetes-system --dry-run=client -o yaml | kubectl apply --server-side -f - >/dev/null
helm template rktnetes charts/rktnetes-operator --namespace rktnetes-system --kube-version "${KUBERNETES_VERSION#v}" |
  kubectl apply --server-side --field-manager=rktnetes-demo -f - >/dev/null

log "booting three nodes"
"$E2E_DIR/nodes.sh" up 3 --label rktnetes.io/network=bridge --with-agent >/dev/null

log "starting the controller (log: $DEMO_DIR/controller.log)"
[[ -f $CONTROLLER_PID ]] && kill "$(cat "$CONTROLLER_PID")" 2>/dev/null || true
setsid target/debug/rktnetes controller --namespace rktnetes-system --agent-namespace rktnetes-agent \
  --http-address 127.0.0.1:18080 >"$DEMO_DIR/controller.log" 2>&1 < /dev/null &
echo $! >"$CONTROLLER_PID"

log "applying e2e/examples/bridge.yaml"
kubectl apply --server-side --field-manager=rktnetes-demo -f e2e/examples/bridge.yaml >/dev/null

table() {
  kubectl get rktnodestates -o jsonpath='{range .items[*]}{.metadata.name}{"\t"}{.status.phase}{"\t"}{.spec.hash}{"\t"}{range .status.conditions[*]}{.type}={.status} {end}{"\n"}{end}'
}
for _ in $(seq 1 120); do
  clear 2>/dev/null || true
  printf 'NODE\tPHASE\tCONFIG HASH\tCONDITIONS\n'
  table
  echo
  kubectl get rktnodeconfig bridge
  ready=$(kubectl get rktnodeconfig bridge -o jsonpath='{.status.readyNodes}')
  [[ ${ready:-0} == 3 ]] && break
  sleep 1
done
echo
log "the files on rktnetes-node-1"
for file in /etc/rkt/net.d/00-rktnetes.conf /etc/rkt/stage1.d/rktnetes.json; do
  echo "# $file"
  "$E2E_DIR/nodes.sh" exec rktnetes-node-1 -- cat "$file"
done
echo
echo "Try: kubectl edit rktnodeconfig bridge (change the subnet) and run watch kubectl get rns; e2e/demo.sh down ends it."
echo "export KUBECONFIG=$KUBECONFIG PATH=$TOOLS_BIN:\$PATH"
