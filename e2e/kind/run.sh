#!/usr/bin/env bash
# The kind lane: the node end-to-end suite (tests/nodes.rs) against a kind cluster, for machines with Docker.
# Not run in CI here (no Docker engine); the local lane (e2e/test.sh) covers the same tests on systemd-nspawn nodes.
#
# Usage: e2e/kind/run.sh [up] [-- CARGO_TEST_ARGS...] | setup | test [-- CARGO_TEST_ARGS...] | down
#   up      (the default) setup, then test
#   setup   creates the cluster of kind-config.yaml (or reuses it), builds the operator image (Dockerfile) and loads
#           it into the nodes, readies every worker as a node of seed 003 (the rkt stand-in as rkt-api.service under
#           the node's systemd, D-Bus, the bridge and host-local CNI plugins in /usr/lib/cni), installs the Helm
#           chart with that image and waits for the controller Deployment. Safe to run again: it rebuilds and
#           reinstalls what changed.
#   test    runs the suite against the cluster `setup` left: `cargo test --test nodes` with
#           RKTNETES_E2E_PROFILE=kind and RKTNETES_NODE_EXEC=e2e/kind/node-exec.sh; arguments after `--` go to
#           cargo test, as with e2e/test.sh (a test name; `-- --nocapture` for the test binary)
#   down    deletes the cluster and this lane's state; harmless when there is none
#
# Needs docker (with a running engine), kind, kubectl and helm (on the PATH, or those e2e/build-tools.sh builds),
# and cargo for the tests. The nodes get no package from the network except D-Bus, and only when their image
# lacks it (apt-get in the node).
#
# Settings (environment):
#   RKTNETES_KIND_CLUSTER     the kind cluster's name (default rktnetes; its workers are <name>-worker,
#                             <name>-worker2, <name>-worker3, <name>-worker4)
#   RKTNETES_KIND_NODE_IMAGE  the node image (default kindest/node:$KUBERNETES_VERSION, as kind-config.yaml pins)
#   RKTNETES_KIND_IMAGE       the operator image's repository (default rktnetes-operator; the tag is derived from
#                             the image's ID, so an unchanged build keeps its tag and the release does not roll)
#   RKTNETES_KIND_RUST_VERSION  the rust image the build stage starts from (default: the Dockerfile's)
#   RKTNETES_KIND_RKT_BIN     an rkt stand-in to install on the nodes instead of the image's (a static build, e.g.
#                             target/x86_64-unknown-linux-musl/release/rkt)
#   RKTNETES_KIND_RKT_VERSIONS  the version a node's stand-in reports, as NODE=VERSION pairs separated by blanks
#                             (NODE a name or a worker index; default 1.29.0 on the fourth worker, as the suite
#                             expects, and 1.30.0 on the others)
#   RKTNETES_CNI_PLUGINS_DIR  where to copy the CNI plugins from when a node lacks /usr/lib/cni/bridge (default
#                             this machine's /usr/lib/cni, Debian's containernetworking-plugins, else /opt/cni/bin)
#   RKTNETES_KIND_TIMEOUT     seconds to wait for each step that waits (default 300)
#
# The suite finds the cluster through the environment `test` sets: KUBECONFIG, RKTNETES_E2E_PROFILE=kind,
# RKTNETES_NODE_EXEC, RKTNETES_KIND_CLUSTER, RKTNETES_KIND_NODES (the workers, blank-separated, in order) and
# RKTNETES_IMAGE (the operator image the release runs).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib/common.sh
. "$(dirname "$0")/../lib/common.sh"

KIND_DIR="$E2E_DIR/kind"
KIND_CONFIG="$KIND_DIR/kind-config.yaml"
CLUSTER=${RKTNETES_KIND_CLUSTER:-rktnetes}
NODE_IMAGE=${RKTNETES_KIND_NODE_IMAGE:-kindest/node:$KUBERNETES_VERSION}
IMAGE_REPOSITORY=${RKTNETES_KIND_IMAGE:-rktnetes-operator}
TIMEOUT=${RKTNETES_KIND_TIMEOUT:-300}
DEFAULT_RKT_VERSION=1.30.0
RELEASE=rktnetes
RELEASE_NAMESPACE=rktnetes-system
CHART="$REPO_DIR/charts/rktnetes-operator"
STATE_DIR="$RKTNETES_CACHE/kind/$CLUSTER"
KUBECONFIG_FILE="$STATE_DIR/kubeconfig"
NODE_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# Where the image keeps the stand-in (see the Dockerfile) and where the nodes get it.
IMAGE_RKT=/usr/local/lib/rktnetes/rkt
NODE_RKT=/usr/local/bin/rkt
# Where Debian's containernetworking-plugins puts the plugins, and so where the tests run them from. kind's own
# plugins in /opt/cni/bin (the cluster's pod network) are left alone.
NODE_CNI_DIR=/usr/lib/cni

[[ $TIMEOUT =~ ^[0-9]+$ ]] || die "RKTNETES_KIND_TIMEOUT is not a number of seconds: '$TIMEOUT'"
[[ $CLUSTER =~ ^[a-z0-9][a-z0-9.-]*$ ]] || die "RKTNETES_KIND_CLUSTER is not a valid kind cluster name: '$CLUSTER'"

# --- tools -------------------------------------------------------------------------------------------------------

need_docker() {
  command -v docker >/dev/null ||
    die "docker is not installed: the kind lane runs its cluster in Docker (https://docs.docker.com/engine/install/)"
  docker info >/dev/null 2>&1 ||
    die "docker cannot reach a Docker engine (is the daemon running, and may this user use it?): $(docker info 2>&1 | tail -n 1)"
}

need_kind() {
  command -v kind >/dev/null ||
    die "kind is not installed: see https://kind.sigs.k8s.io/docs/user/quick-start/#installation (or: go install sigs.k8s.io/kind@latest)"
}

# The path of kubectl or helm: on the PATH, else the one e2e/build-tools.sh built.
tool() {
  if command -v "$1"; then return 0; fi
  if [[ -x $TOOLS_BIN/$1 ]]; then
    echo "$TOOLS_BIN/$1"
    return 0
  fi
  die "$1 is not installed: put it on the PATH, or run e2e/build-tools.sh (it builds $1 into $TOOLS_BIN)"
}

kubectl_kind() { "$KUBECTL" --kubeconfig "$KUBECONFIG_FILE" --request-timeout=30s "$@"; }
helm_kind() { KUBECONFIG=$KUBECONFIG_FILE "$HELM" "$@"; }

# Runs a command as root in a node, with a clean environment.
node_exec() {
  local node=$1
  shift
  docker exec "$node" env -i PATH="$NODE_PATH" HOME=/root LANG=C.UTF-8 "$@"
}

# Writes stdin to a file in a node, making its directory.
node_write() {
  docker exec -i "$1" sh -c 'mkdir -p "$(dirname "$1")" && cat >"$1"' sh "$2"
}

# --- the cluster -------------------------------------------------------------------------------------------------

cluster_exists() { kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; }

# kind-config.yaml pins the node image by hand; it must be the Kubernetes of versions.env.
check_config() {
  local images
  images=$(sed -n 's/^[[:space:]]*image:[[:space:]]*//p' "$KIND_CONFIG" | sort -u)
  [[ $images == "kindest/node:$KUBERNETES_VERSION" ]] ||
    die "$KIND_CONFIG pins the node image(s) '$(echo "$images" | xargs)', but e2e/versions.env says Kubernetes $KUBERNETES_VERSION: make them kindest/node:$KUBERNETES_VERSION"
}

create_cluster() {
  mkdir -p "$STATE_DIR"
  if cluster_exists; then
    log "reusing the kind cluster $CLUSTER"
    kind export kubeconfig --name "$CLUSTER" --kubeconfig "$KUBECONFIG_FILE" >/dev/null 2>&1 ||
      die "cannot get the kubeconfig of the kind cluster $CLUSTER"
  else
    log "creating the kind cluster $CLUSTER ($NODE_IMAGE, one control plane and four workers)"
    # --image wins over the config's per-node images; it is the same one unless RKTNETES_KIND_NODE_IMAGE says
    # otherwise.
    kind create cluster --name "$CLUSTER" --config "$KIND_CONFIG" --image "$NODE_IMAGE" \
      --kubeconfig "$KUBECONFIG_FILE" --wait "${TIMEOUT}s" ||
      die "kind could not create the cluster (is $NODE_IMAGE published for your kind version? see its release notes)"
  fi
  kubectl_kind wait --for=condition=Ready nodes --all --timeout="${TIMEOUT}s" >/dev/null ||
    die "the nodes of $CLUSTER did not become Ready within ${TIMEOUT}s"
}

# The worker nodes, in order: <cluster>-worker, <cluster>-worker2, ...
workers() {
  local node
  for node in $(kind get nodes --name "$CLUSTER"); do
    if [[ $(docker inspect --type container -f '{{index .Config.Labels "io.x-k8s.kind.role"}}' "$node") == worker ]]; then
      echo "$node"
    fi
  done | sort -V
}

# --- the operator image ------------------------------------------------------------------------------------------

# Builds the image and prints its reference, tagged after its ID.
build_image() {
  local args=() id
  [[ -n ${RKTNETES_KIND_RUST_VERSION:-} ]] && args+=(--build-arg "RUST_VERSION=$RKTNETES_KIND_RUST_VERSION")
  log "building the operator image (a static musl build; the first one takes several minutes)"
  DOCKER_BUILDKIT=1 docker build "${args[@]}" -f "$KIND_DIR/Dockerfile" -t "$IMAGE_REPOSITORY:kind-latest" \
    "$REPO_DIR" >&2 || die "the image build failed"
  id=$(docker image inspect -f '{{.Id}}' "$IMAGE_REPOSITORY:kind-latest")
  id=${id#sha256:}
  docker tag "$IMAGE_REPOSITORY:kind-latest" "$IMAGE_REPOSITORY:kind-${id:0:12}"
  echo "$IMAGE_REPOSITORY:kind-${id:0:12}"
}

load_image() {
  log "loading $1 into the nodes"
  kind load docker-image --name "$CLUSTER" "$1" >&2 || die "kind could not load $1 into the nodes"
}

# The rkt stand-in for the nodes: RKTNETES_KIND_RKT_BIN, else the image's copy.
rkt_binary() {
  local image=$1 container
  if [[ -n ${RKTNETES_KIND_RKT_BIN:-} ]]; then
    [[ -x $RKTNETES_KIND_RKT_BIN ]] || die "RKTNETES_KIND_RKT_BIN is not an executable file: $RKTNETES_KIND_RKT_BIN"
    echo "$RKTNETES_KIND_RKT_BIN"
    return 0
  fi
  container=$(docker create "$image")
  if ! docker cp "$container:$IMAGE_RKT" "$STATE_DIR/rkt" >/dev/null; then
    docker rm "$container" >/dev/null
    die "cannot copy $IMAGE_RKT out of $image"
  fi
  docker rm "$container" >/dev/null
  chmod 0755 "$STATE_DIR/rkt"
  echo "$STATE_DIR/rkt"
}

# --- the nodes ---------------------------------------------------------------------------------------------------

# The version node NODE's stand-in reports, from RKTNETES_KIND_RKT_VERSIONS.
rkt_version_of() {
  local node=$1 index=$2 pair key
  # The suite wants its fourth node on an older rkt (tests/support/nodes.rs: OLD_RKT_VERSION).
  for pair in ${RKTNETES_KIND_RKT_VERSIONS:-4=1.29.0}; do
    [[ $pair == ?*=?* ]] || die "RKTNETES_KIND_RKT_VERSIONS takes NODE=VERSION pairs: '$pair'"
    key=${pair%%=*}
    if [[ $key == "$node" || $key == "$index" ]]; then
      echo "${pair#*=}"
      return 0
    fi
  done
  echo "$DEFAULT_RKT_VERSION"
}

# The CNI plugins to give nodes that have none in /usr/lib/cni.
cni_source() {
  local dir
  if [[ -n ${RKTNETES_CNI_PLUGINS_DIR:-} ]]; then
    [[ -x $RKTNETES_CNI_PLUGINS_DIR/bridge && -x $RKTNETES_CNI_PLUGINS_DIR/host-local ]] ||
      die "RKTNETES_CNI_PLUGINS_DIR ($RKTNETES_CNI_PLUGINS_DIR) has no bridge and host-local plugins"
    echo "$RKTNETES_CNI_PLUGINS_DIR"
    return 0
  fi
  for dir in /usr/lib/cni /opt/cni/bin; do
    if [[ -x $dir/bridge && -x $dir/host-local ]]; then
      echo "$dir"
      return 0
    fi
  done
  die "no CNI plugins (bridge and host-local) on this machine to copy into the nodes: install Debian's
containernetworking-plugins, or point RKTNETES_CNI_PLUGINS_DIR at a directory of CNI plugins (e.g. an unpacked
release of github.com/containernetworking/plugins, whose binaries are static)"
}

# The agent talks to the node's systemd through the D-Bus system bus, and its DaemonSet mounts the bus socket.
ensure_dbus() {
  local node=$1 i
  node_exec "$node" test -S /run/dbus/system_bus_socket && return 0
  if ! node_exec "$node" sh -c 'command -v dbus-daemon || command -v dbus-broker' >/dev/null; then
    log "$node: installing D-Bus (its image has none)"
    node_exec "$node" sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends dbus' \
      >/dev/null || die "$node: cannot install the dbus package (does the node reach a Debian mirror?)"
  fi
  node_exec "$node" systemctl enable --now dbus.socket >/dev/null 2>&1 || true
  node_exec "$node" systemctl start dbus.service || die "$node: dbus.service does not start"
  for ((i = 0; i < 50; i++)); do
    node_exec "$node" test -S /run/dbus/system_bus_socket && return 0
    sleep 0.2
  done
  die "$node: the D-Bus system bus socket did not appear"
}

ensure_cni_plugins() {
  local node=$1 source
  if ! node_exec "$node" test -x "$NODE_CNI_DIR/bridge"; then
    source=$(cni_source)
    log "$node: copying the CNI plugins of $source into $NODE_CNI_DIR"
    node_exec "$node" mkdir -p "$NODE_CNI_DIR"
    docker cp "$source/." "$node:$NODE_CNI_DIR/" >/dev/null
  fi
  # Plugins from this machine may be linked against a newer C library than the node's.
  node_exec "$node" sh -c "CNI_COMMAND=VERSION $NODE_CNI_DIR/bridge </dev/null" >/dev/null 2>&1 ||
    die "$node: $NODE_CNI_DIR/bridge does not run there (a C library mismatch?); remove it and set
RKTNETES_CNI_PLUGINS_DIR to static CNI plugins (a release of github.com/containernetworking/plugins)"
}

# Installs the stand-in as the node's rkt and runs it as rkt-api.service, as e2e/nodes.sh does in its nodes.
install_rkt() {
  local node=$1 rkt=$2 version=$3 i
  # Copied beside its place and renamed over it, so a running rkt-api.service keeps its binary until restarted.
  docker cp "$rkt" "$node:$NODE_RKT.new" >/dev/null
  node_exec "$node" sh -c "chmod 0755 $NODE_RKT.new && mv -f $NODE_RKT.new $NODE_RKT"
  # The unit of the nspawn nodes, with the stand-in where this script puts it.
  sed -e "s#/usr/bin/rkt#$NODE_RKT#g" -e "s#bind-mounted read-only by e2e/nodes.sh#copied in by e2e/kind/run.sh#" \
    "$E2E_DIR/node/rkt-api.service" | node_write "$node" /etc/systemd/system/rkt-api.service
  printf '[Service]\nEnvironment=RKT_STANDIN_VERSION=%s\n' "$version" |
    node_write "$node" /etc/systemd/system/rkt-api.service.d/10-rkt-version.conf
  # reset-failed: a test may have left the unit past its start limit. restart, not start: a re-run brings a new
  # binary or version.
  node_exec "$node" sh -c 'systemctl daemon-reload && { systemctl reset-failed rkt-api.service 2>/dev/null || true; } &&
    systemctl enable rkt-api.service && systemctl restart rkt-api.service' >/dev/null 2>&1 ||
    die "$node: rkt-api.service does not start: $(node_exec "$node" systemctl status --no-pager rkt-api.service 2>&1 | tail -n 5)"
  for ((i = 0; i < 50; i++)); do
    [[ $(node_exec "$node" systemctl is-active rkt-api.service 2>/dev/null) == active ]] && return 0
    sleep 0.2
  done
  die "$node: rkt-api.service is not active: $(node_exec "$node" systemctl status --no-pager rkt-api.service 2>&1 | tail -n 5)"
}

prepare_nodes() {
  local rkt=$1 node index=0 version
  shift
  for node; do
    index=$((index + 1))
    version=$(rkt_version_of "$node" "$index")
    ensure_dbus "$node"
    ensure_cni_plugins "$node"
    install_rkt "$node" "$rkt" "$version"
    log "$node: rkt-api.service runs the stand-in (rkt $version)"
  done
}

# --- the operator ------------------------------------------------------------------------------------------------

install_chart() {
  local image=$1
  # Helm installs a chart's CRDs only on its first install; applying them first keeps a re-run's CRDs current.
  log "installing the CRDs and the chart (release $RELEASE in $RELEASE_NAMESPACE)"
  kubectl_kind apply --server-side --force-conflicts --field-manager=rktnetes-kind -f "$CHART/crds/" >/dev/null
  kubectl_kind wait --for=condition=Established --timeout=60s \
    crd/rktnodeconfigs.rktnetes.io crd/rktnodestates.rktnetes.io >/dev/null
  helm_kind upgrade --install "$RELEASE" "$CHART" --namespace "$RELEASE_NAMESPACE" --create-namespace --skip-crds \
    --set "image.repository=${image%:*},image.tag=${image##*:},image.pullPolicy=Never" >/dev/null ||
    die "helm could not install the chart"
  log "waiting for the controller Deployment"
  kubectl_kind -n "$RELEASE_NAMESPACE" rollout status deployment/rktnetes-controller --timeout="${TIMEOUT}s" >&2 ||
    die "the controller Deployment did not become available; see: kubectl --kubeconfig $KUBECONFIG_FILE -n $RELEASE_NAMESPACE describe pods"
}

# --- commands ----------------------------------------------------------------------------------------------------

cmd_setup() {
  local image rkt nodes
  need_docker
  need_kind
  KUBECTL=$(tool kubectl)
  HELM=$(tool helm)
  check_config
  create_cluster
  mapfile -t nodes < <(workers)
  ((${#nodes[@]})) || die "the kind cluster $CLUSTER has no workers"
  image=$(build_image)
  load_image "$image"
  echo "$image" >"$STATE_DIR/image"
  rkt=$(rkt_binary "$image")
  prepare_nodes "$rkt" "${nodes[@]}"
  install_chart "$image"
  log "the kind cluster $CLUSTER is ready (KUBECONFIG=$KUBECONFIG_FILE)"
}

cmd_test() {
  local image nodes
  need_docker
  need_kind
  KUBECTL=$(tool kubectl)
  HELM=$(tool helm)
  command -v cargo >/dev/null || die "cargo is not on the PATH; the suite is Rust"
  cluster_exists || die "there is no kind cluster $CLUSTER; run: $0 setup"
  [[ -f $STATE_DIR/image ]] || die "the kind cluster $CLUSTER was not set up by this script; run: $0 setup"
  kind export kubeconfig --name "$CLUSTER" --kubeconfig "$KUBECONFIG_FILE" >/dev/null 2>&1 ||
    die "cannot get the kubeconfig of the kind cluster $CLUSTER"
  image=$(cat "$STATE_DIR/image")
  mapfile -t nodes < <(workers)
  log "running the node end-to-end suite against $CLUSTER (${nodes[*]})"
  cd "$REPO_DIR"
  PATH="$(dirname "$KUBECTL"):$(dirname "$HELM"):$PATH" \
    KUBECONFIG="$KUBECONFIG_FILE" \
    RKTNETES_E2E_PROFILE=kind \
    RKTNETES_NODE_EXEC="$KIND_DIR/node-exec.sh" \
    RKTNETES_KIND_CLUSTER="$CLUSTER" \
    RKTNETES_KIND_NODES="${nodes[*]}" \
    RKTNETES_IMAGE="$image" \
    cargo test --locked --test nodes "$@"
}

cmd_down() {
  need_docker
  need_kind
  if cluster_exists; then
    log "deleting the kind cluster $CLUSTER"
    kind delete cluster --name "$CLUSTER" >&2
  fi
  rm -rf "${STATE_DIR:?}"
}

command=up
if (($#)) && [[ $1 != -- ]]; then
  command=$1
  shift
fi
if (($#)); then
  [[ $1 == -- ]] || die "unexpected argument: $1 (arguments for cargo test follow --)"
  shift
  [[ $command == @(up|test) ]] || die "$command takes no arguments"
fi
case $command in
  up)
    cmd_setup
    cmd_test "$@"
    ;;
  setup) cmd_setup ;;
  test) cmd_test "$@" ;;
  down) cmd_down ;;
  *) die "usage: $0 [up] [-- CARGO_TEST_ARGS...] | setup | test [-- CARGO_TEST_ARGS...] | down" ;;
esac
