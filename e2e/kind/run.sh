#!/usr/bin/env bash
# The kind lane: a real kind cluster on this machine, the chart's controller Deployment and agent DaemonSet as pods
# on its kubelets, and the node end-to-end suite (the integration tests' `nodes::`) plus the lane's own checks
# (`kind::`, ignored by a plain cargo test) against it. Everything it runs is built here; nothing is pulled from a
# registry.
#
# Usage: e2e/kind/run.sh [ci] | up [-- TEST_ARGS...] | setup | test [-- TEST_ARGS...] | down
#   ci      (the default; what e2e/test.sh runs) setup, test, then down whatever happened, printing what the pods
#           did when something failed
#   up      setup, then test; leaves the cluster running (KUBECONFIG: e2e/kind/run.sh env)
#   setup   a Docker engine (e2e/kind/engine.sh: the user's own, or one it starts), the tools (e2e/build-tools.sh
#           kind), the release build of the operator (its target directory under the cache), the images (node-image.sh, operator-image.sh), the cluster of
#           kind-config.yaml with the rkt node image (recreated when the image changed), the fourth worker's older
#           rkt, the operator image loaded with `kind load`, the chart installed with it; waits for the controller
#   test    the suite against that cluster: RKTNETES_E2E_PROFILE=kind, the nodes reached with `docker exec`
#           (node-exec.sh); arguments after `--` go to the test binary, in place of `nodes:: kind:: --show-output`
#           (filters, --nocapture ...). Then checks that nothing was pulled.
#   env     prints the environment the suite uses (KUBECONFIG, DOCKER_HOST ...), to eval
#   down    deletes the cluster and stops the Docker engine if the lane started it
#
# Settings (environment):
#   RKTNETES_KIND_CLUSTER   the cluster's name (default rktnetes; workers <name>-worker, <name>-worker2, ...)
#   RKTNETES_KIND_TIMEOUT   seconds to wait for each step that waits (default 300)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib/common.sh
. "$(dirname "$0")/../lib/common.sh"

KIND_DIR="$E2E_DIR/kind"
CLUSTER=${RKTNETES_KIND_CLUSTER:-rktnetes}
TIMEOUT=${RKTNETES_KIND_TIMEOUT:-300}
RELEASE=rktnetes
RELEASE_NAMESPACE=rktnetes-system
AGENT_NAMESPACE=rktnetes-agent
CHART="$REPO_DIR/charts/rktnetes-operator"
STATE_DIR="$RKTNETES_CACHE/kind/clusters/$CLUSTER"
KUBECONFIG_FILE="$STATE_DIR/kubeconfig"
VALUES_FILE="$STATE_DIR/values.yaml"
# The suite wants its fourth node on an older rkt (tests/integration/support/nodes.rs: OLD_RKT_VERSION).
OLD_RKT_WORKER=4
OLD_RKT_VERSION=1.29.0
# The release build has a target directory of its own under the cache, so a fresh clone rebuilds only this
# project's crate, not its dependencies.
RELEASE_TARGET="$RKTNETES_CACHE/kind/target"
RELEASE_BIN="$RELEASE_TARGET/release"

[[ $TIMEOUT =~ ^[0-9]+$ ]] || die "RKTNETES_KIND_TIMEOUT is not a number of seconds: '$TIMEOUT'"
[[ $CLUSTER =~ ^[a-z0-9][a-z0-9.-]*$ ]] || die "RKTNETES_KIND_CLUSTER is not a valid kind cluster name: '$CLUSTER'"

kubectl_kind() { "$TOOLS_BIN/kubectl" --kubeconfig "$KUBECONFIG_FILE" --request-timeout=30s "$@"; }
helm_kind() { KUBECONFIG=$KUBECONFIG_FILE "$TOOLS_BIN/helm" "$@"; }
node_exec() { "$KIND_DIR/node-exec.sh" "$@"; }

# The engine and the tools this lane runs with: DOCKER_HOST (when the lane's own engine runs), kind on the PATH.
use_engine() {
  eval "$("$KIND_DIR/engine.sh" up)"
  export PATH="$KIND_TOOLS_BIN:$PATH"
}

cluster_exists() { kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; }

# The worker nodes, in order: <cluster>-worker, <cluster>-worker2, ...
workers() {
  kind get nodes --name "$CLUSTER" | grep -E "^$CLUSTER-worker[0-9]*$" | sort -V
}

# --- setup -------------------------------------------------------------------------------------------------------

build() {
  "$E2E_DIR/install-deps.sh" kind
  "$E2E_DIR/build-tools.sh" kind
  use_engine
  log "building the operator and the rkt stand-in (cargo build --release)"
  (cd "$REPO_DIR" && CARGO_TARGET_DIR=$RELEASE_TARGET cargo build --release --locked --bins -p rktnetes-operator -p rkt-standin)
  NODE_IMAGE=$("$KIND_DIR/node-image.sh" rkt-node "$RELEASE_BIN/rkt")
  OPERATOR_IMAGE=$("$KIND_DIR/operator-image.sh" "$RELEASE_BIN/rktnetes")
  remove_older_images "$NODE_IMAGE" "$("$KIND_DIR/node-image.sh" node)" "$OPERATOR_IMAGE"
}

# Every code change makes new images (their tags are hashes of what they hold); the older ones of the same
# repositories would only fill the disk. An image a container still uses stays.
remove_older_images() {
  local current=" $* " ref image
  for ref; do
    for image in $(docker images --format '{{.Repository}}:{{.Tag}}' "${ref%:*}"); do
      [[ $current == *" $image "* ]] || docker rmi "$image" >/dev/null 2>&1 || true
    done
  done
}

create_cluster() {
  mkdir -p "$STATE_DIR"
  if cluster_exists && [[ $(cat "$STATE_DIR/node-image" 2>/dev/null) != "$NODE_IMAGE" ]]; then
    log "the node image changed: recreating the kind cluster $CLUSTER"
    kind delete cluster --name "$CLUSTER" >&2
  fi
  if cluster_exists; then
    log "reusing the kind cluster $CLUSTER"
    kind export kubeconfig --name "$CLUSTER" --kubeconfig "$KUBECONFIG_FILE" >/dev/null 2>&1 ||
      die "cannot get the kubeconfig of the kind cluster $CLUSTER"
  else
    log "creating the kind cluster $CLUSTER ($NODE_IMAGE: one control plane, four workers)"
    local started=$SECONDS
    kind create cluster --name "$CLUSTER" --config "$KIND_DIR/kind-config.yaml" --image "$NODE_IMAGE" \
      --kubeconfig "$KUBECONFIG_FILE" --wait "${TIMEOUT}s" ||
      die "kind could not create the cluster (kind export logs --name $CLUSTER collects the nodes' logs)"
    log "cluster created in $((SECONDS - started))s"
  fi
  echo "$NODE_IMAGE" >"$STATE_DIR/node-image"
  kubectl_kind wait --for=condition=Ready nodes --all --timeout="${TIMEOUT}s" >/dev/null ||
    die "the nodes of $CLUSTER did not become Ready within ${TIMEOUT}s"
}

# The fourth worker's stand-in reports an older rkt: a drop-in of its rkt-api.service.
set_old_rkt() {
  local node i
  node=$(workers | sed -n "${OLD_RKT_WORKER}p")
  [[ -n $node ]] || die "the kind cluster $CLUSTER has no worker $OLD_RKT_WORKER"
  node_exec "$node" -- sh -c "mkdir -p /etc/systemd/system/rkt-api.service.d &&
    printf '[Service]\nEnvironment=RKT_STANDIN_VERSION=%s\n' $OLD_RKT_VERSION >/etc/systemd/system/rkt-api.service.d/10-rkt-version.conf &&
    systemctl daemon-reload && systemctl restart rkt-api.service"
  for ((i = 0; i < 50; i++)); do
    if node_exec "$node" -- systemctl is-active --quiet rkt-api.service; then
      log "$node: rkt-api.service runs with RKT_STANDIN_VERSION=$OLD_RKT_VERSION"
      return 0
    fi
    sleep 0.2
  done
  die "$node: rkt-api.service is not active after setting its version: $(node_exec "$node" -- systemctl status --no-pager rkt-api.service | tail -n 5)"
}

install_chart() {
  log "loading $OPERATOR_IMAGE into the nodes"
  kind load docker-image --name "$CLUSTER" "$OPERATOR_IMAGE" >&2 || die "kind could not load $OPERATOR_IMAGE"
  # The values the suite installs the chart with too (tests/integration/support/chart.rs reads
  # RKTNETES_CHART_VALUES): the local image, never pulled, and agents that check their node every 3 s, as on the
  # nspawn nodes.
  cat >"$VALUES_FILE" <<EOF
image:
  repository: ${OPERATOR_IMAGE%:*}
  tag: ${OPERATOR_IMAGE##*:}
  pullPolicy: Never
agent:
  checkIntervalSeconds: 3
EOF
  # Helm installs a chart's CRDs only on its first install; applying them first keeps a re-run's CRDs current.
  log "installing the CRDs and the chart (release $RELEASE in $RELEASE_NAMESPACE)"
  kubectl_kind apply --server-side --force-conflicts --field-manager=rktnetes-kind -f "$CHART/crds/" >/dev/null
  kubectl_kind wait --for=condition=Established --timeout=60s \
    crd/rktnodeconfigs.rktnetes.io crd/rktnodestates.rktnetes.io >/dev/null
  # The controller's namespace enforces the restricted Pod Security level, as the README's install steps do.
  kubectl_kind create namespace "$RELEASE_NAMESPACE" --dry-run=client -o yaml | kubectl_kind apply -f - >/dev/null
  kubectl_kind label --overwrite namespace "$RELEASE_NAMESPACE" pod-security.kubernetes.io/enforce=restricted \
    pod-security.kubernetes.io/warn=restricted >/dev/null
  helm_kind upgrade --install "$RELEASE" "$CHART" --namespace "$RELEASE_NAMESPACE" --skip-crds \
    --values "$VALUES_FILE" >/dev/null || die "helm could not install the chart"
  log "waiting for the controller Deployment"
  kubectl_kind -n "$RELEASE_NAMESPACE" rollout status deployment/rktnetes-controller --timeout="${TIMEOUT}s" >&2 ||
    die "the controller Deployment did not become available"
}

cmd_setup() {
  local started=$SECONDS
  build
  create_cluster
  set_old_rkt
  install_chart
  kubectl_kind get pods -A -o wide >&2
  log "the kind cluster $CLUSTER is ready in $((SECONDS - started))s (eval \"\$($0 env)\" to use it)"
}

# --- test --------------------------------------------------------------------------------------------------------

print_env() {
  "$KIND_DIR/engine.sh" env
  printf 'export KUBECONFIG=%q\n' "$KUBECONFIG_FILE"
  printf 'export PATH=%q\n' "$TOOLS_BIN:$KIND_TOOLS_BIN:$PATH"
}

# Every image the cluster runs was in a node's containerd store or loaded by kind: containerd logs each pull
# request (and sends it to a closed port, see node-image.sh); kubelets record a Pulling event before one.
check_no_pulls() {
  local node pulls events failed=false
  for node in $(kind get nodes --name "$CLUSTER"); do
    pulls=$(docker exec "$node" journalctl -u containerd --no-pager -o cat | grep -E 'PullImage' || true)
    if [[ -n $pulls ]]; then
      printf 'error: %s: containerd was asked to pull:\n%s\n' "$node" "$pulls" >&2
      failed=true
    fi
  done
  events=$(kubectl_kind get events -A --field-selector reason=Pulling -o name 2>/dev/null || true)
  if [[ -n $events ]]; then
    kubectl_kind get events -A --field-selector reason=Pulling >&2
    failed=true
  fi
  ! $failed || die "an image was pulled from a registry: the kind lane must run only images built here"
  log "no image was pulled: every image came from the node image or kind load"
}

cmd_test() {
  local nodes status=0
  use_engine
  cluster_exists || die "there is no kind cluster $CLUSTER; run: $0 setup"
  [[ -f $VALUES_FILE ]] || die "the kind cluster $CLUSTER was not set up by this script; run: $0 setup"
  kind export kubeconfig --name "$CLUSTER" --kubeconfig "$KUBECONFIG_FILE" >/dev/null 2>&1 ||
    die "cannot get the kubeconfig of the kind cluster $CLUSTER"
  nodes=$(workers | xargs)
  # The node suite and the lane's checks; these print what they saw (the pods, where they run), also when they pass.
  (($#)) || set -- nodes:: kind:: --show-output
  log "running the node end-to-end suite and the lane's checks against $CLUSTER ($nodes)"
  (
    cd "$REPO_DIR"
    PATH="$TOOLS_BIN:$PATH" \
      KUBECONFIG="$KUBECONFIG_FILE" \
      RKTNETES_E2E_PROFILE=kind \
      RKTNETES_NODE_EXEC="$KIND_DIR/node-exec.sh" \
      RKTNETES_KIND_CLUSTER="$CLUSTER" \
      RKTNETES_KIND_NODES="$nodes" \
      RKTNETES_CHART_VALUES="$VALUES_FILE" \
      cargo test --locked --no-fail-fast --test integration -- --include-ignored "$@"
  ) || status=$?
  log "the pods at the end of the suite"
  kubectl_kind get pods -A -o wide >&2 || true
  check_no_pulls
  return "$status"
}

# What the pods did, for a failed run's log.
print_diagnostics() {
  log "diagnostics of the kind cluster $CLUSTER"
  kubectl_kind get nodes -o wide >&2 || true
  kubectl_kind get pods -A -o wide >&2 || true
  kubectl_kind get rktnodeconfigs,rktnodestates -o wide >&2 || true
  kubectl_kind get events -A --sort-by=.lastTimestamp >&2 2>/dev/null | tail -n 40 >&2 || true
  kubectl_kind -n "$RELEASE_NAMESPACE" logs deployment/rktnetes-controller --all-containers --tail=60 >&2 || true
  kubectl_kind -n "$AGENT_NAMESPACE" logs -l app.kubernetes.io/name=rktnetes-agent --tail=30 --prefix >&2 || true
}

cmd_down() {
  if command -v kind >/dev/null || [[ -x $KIND_TOOLS_BIN/kind ]]; then
    export PATH="$KIND_TOOLS_BIN:$PATH"
    if "$KIND_DIR/engine.sh" status >/dev/null 2>&1; then
      eval "$("$KIND_DIR/engine.sh" env)"
      if cluster_exists; then
        log "deleting the kind cluster $CLUSTER"
        kind delete cluster --name "$CLUSTER" >&2
      fi
    fi
  fi
  rm -rf "${STATE_DIR:?}"
  "$KIND_DIR/engine.sh" down
}

# On exit, whatever happened: what the pods did if something failed, then down.
ci_exit() {
  local status=$?
  if ((status != 0)) && [[ -f $KUBECONFIG_FILE ]]; then print_diagnostics; fi
  cmd_down || true
  exit "$status"
}

cmd_ci() {
  trap ci_exit EXIT
  cmd_setup
  cmd_test "$@"
}

command=ci
if (($#)) && [[ $1 != -- ]]; then
  command=$1
  shift
fi
if (($#)); then
  [[ $1 == -- ]] || die "unexpected argument: $1 (arguments for the test binary follow --)"
  shift
  [[ $command == @(ci|up|test) ]] || die "$command takes no arguments"
fi
case $command in
  ci) cmd_ci "$@" ;;
  up)
    cmd_setup
    cmd_test "$@"
    ;;
  setup) cmd_setup ;;
  test) cmd_test "$@" ;;
  env) print_env ;;
  down) cmd_down ;;
  *) die "usage: $0 [ci] | up [-- TEST_ARGS...] | setup | test [-- TEST_ARGS...] | env | down" ;;
esac
