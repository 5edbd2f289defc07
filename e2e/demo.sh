#!/usr/bin/env bash
# The main job: a local cluster with the operator converging real nodes.
#
#   e2e/demo.sh [up]    builds what is missing, starts the control plane, installs the Helm chart, boots three
#                       systemd-nspawn nodes (agents inside, under the chart's ServiceAccount, RBAC and admission
#                       policy), runs the controller on this machine as the chart's Deployment would, applies
#                       e2e/examples/bridge.yaml and shows the nodes converging, then the files written
#   e2e/demo.sh down    stops the controller, the nodes and the control plane
#   e2e/demo.sh kind [up|down]
#                       the same on the kind lane's cluster (e2e/kind/run.sh setup: Docker, kind and its images
#                       built here), where the controller and the agents are the chart's pods on real kubelets
#
# The default demo has no kubelet, so the controller runs as a process on the host and each agent as a systemd
# unit in its node, as the DaemonSet's pod would run under stage1-fly.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
cd "$REPO_DIR"

# Shows the RktNodeStates and the config until `ready` nodes run it.
watch_convergence() {
  local ready_wanted=$1 ready
  for _ in $(seq 1 120); do
    clear 2>/dev/null || true
    printf 'NODE\tPHASE\tCONFIG HASH\tCONDITIONS\n'
    kubectl get rktnodestates -o jsonpath='{range .items[*]}{.metadata.name}{"\t"}{.status.phase}{"\t"}{.spec.hash}{"\t"}{range .status.conditions[*]}{.type}={.status} {end}{"\n"}{end}'
    echo
    kubectl get rktnodeconfig bridge
    ready=$(kubectl get rktnodeconfig bridge -o jsonpath='{.status.readyNodes}')
    [[ ${ready:-0} == "$ready_wanted" ]] && break
    sleep 1
  done
  echo
}

# show_files NODE EXEC...: the files the agent wrote on NODE, read there with EXEC NODE -- cat.
show_files() {
  local node=$1 file
  shift
  log "the files on $node"
  for file in /etc/rkt/net.d/00-rktnetes.conf /etc/rkt/stage1.d/rktnetes.json; do
    echo "# $file"
    "$@" "$node" -- cat "$file"
  done
  echo
}

if [[ ${1:-} == kind ]]; then
  if [[ ${2:-up} == down ]]; then
    exec "$E2E_DIR/kind/run.sh" down
  fi
  "$E2E_DIR/kind/run.sh" setup
  eval "$("$E2E_DIR/kind/run.sh" env)"
  log "applying e2e/examples/bridge.yaml (it selects the four workers; the fourth runs an older rkt)"
  kubectl apply --server-side --field-manager=rktnetes-demo -f e2e/examples/bridge.yaml >/dev/null
  watch_convergence 3
  kubectl get pods -A -o wide
  echo
  show_files rktnetes-worker "$E2E_DIR/kind/node-exec.sh"
  echo "Try: kubectl edit rktnodeconfig bridge (change the subnet) and run watch kubectl get rns; e2e/demo.sh kind down ends it."
  echo "eval \"\$(e2e/kind/run.sh env)\""
  exit 0
fi

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
log "building rktnetes, the rkt stand-in and the harness"
cargo build --quiet --bins
export KUBECONFIG
KUBECONFIG=$("$E2E_DIR/cluster.sh" up)
export PATH="$TOOLS_BIN:$PATH"
mkdir -p "$DEMO_DIR"

log "helm install rktnetes charts/rktnetes-operator (CRDs, RBAC, admission policy, controller Deployment)"
# The controller's namespace enforces the `restricted` Pod Security level; the chart labels the agent's `privileged`.
kubectl create namespace rktnetes-system --dry-run=client -o yaml |
  kubectl label --local -f - -o yaml pod-security.kubernetes.io/enforce=restricted pod-security.kubernetes.io/warn=restricted |
  kubectl apply --server-side --field-manager=rktnetes-demo -f - >/dev/null
helm upgrade --install rktnetes charts/rktnetes-operator --namespace rktnetes-system --create-namespace >/dev/null
kubectl wait --for=jsonpath='{.status.conditions[?(@.type=="Established")].status}'=True crd/rktnodeconfigs.rktnetes.io crd/rktnodestates.rktnetes.io >/dev/null

log "booting three nodes; each agent runs with a token of the chart's agent ServiceAccount, bound to its node"
"$E2E_DIR/nodes.sh" up 3 >/dev/null
target/debug/rktnetes-e2e join --label rktnetes.io/network=bridge >/dev/null

# No kubelet runs the Deployment's pods here: the controller runs on this machine with the Deployment's own
# arguments and a token of the chart's controller ServiceAccount, so the chart's RBAC is all it has.
log "starting the controller as the chart's Deployment would (log: $DEMO_DIR/controller.log)"
[[ -f $CONTROLLER_PID ]] && kill "$(cat "$CONTROLLER_PID")" 2>/dev/null || true
mapfile -t controller_args < <(kubectl -n rktnetes-system get deployment rktnetes-controller \
  -o jsonpath='{range .spec.template.spec.containers[0].args[*]}{@}{"\n"}{end}' |
  sed -e 's/\$(POD_NAMESPACE)/rktnetes-system/' -e 's/\$(POD_NAME)/rktnetes-controller-demo/' \
    -e 's/^--http-address=.*/--http-address=127.0.0.1:18080/')
controller_kubeconfig="$DEMO_DIR/controller.kubeconfig"
target/debug/rktnetes-e2e kubeconfig --service-account rktnetes-system/rktnetes-controller --out "$controller_kubeconfig"
KUBECONFIG=$controller_kubeconfig setsid target/debug/rktnetes "${controller_args[@]}" \
  >"$DEMO_DIR/controller.log" 2>&1 </dev/null &
echo $! >"$CONTROLLER_PID"

log "applying e2e/examples/bridge.yaml"
kubectl apply --server-side --field-manager=rktnetes-demo -f e2e/examples/bridge.yaml >/dev/null

watch_convergence 3
show_files rktnetes-node-1 "$E2E_DIR/nodes.sh" exec
echo "Try: kubectl edit rktnodeconfig bridge (change the subnet) and run watch kubectl get rns; e2e/demo.sh down ends it."
echo "export KUBECONFIG=$KUBECONFIG PATH=$TOOLS_BIN:\$PATH"
