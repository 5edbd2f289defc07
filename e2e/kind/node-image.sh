#!/usr/bin/env bash
# The kind lane's node images, built on this machine from Debian packages and Go modules only; nothing is pulled.
#
# Usage: e2e/kind/node-image.sh node             builds (or finds) the kind node image; prints its reference
#        e2e/kind/node-image.sh rkt-node RKT      builds (or finds) the node image of an rkt node: the kind node
#                                                 image plus the rkt stand-in RKT as /usr/bin/rkt, run as
#                                                 rkt-api.service; prints its reference
#
# The node image is laid out as kind's own (sigs.k8s.io/kind's images/base and pkg/build/nodeimage, at
# KIND_VERSION): kind's base files (the node entrypoint, the containerd and kubelet units, kind's scripts) from the
# kind module in the Go module cache; a Debian root with systemd, D-Bus, iptables and the CNI plugins; containerd,
# its runc shim, ctr and crictl from their Go modules (runc from Debian); kubelet, kubeadm and kubectl at
# /usr/bin; /kind/version; and, in containerd's store, every image the cluster runs: the control plane images
# kubeadm lists for KUBERNETES_VERSION (kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy, etcd,
# CoreDNS, pause), each made here from the binaries e2e/build-tools.sh built, and the pod network's
# (node-image/pod-network.sh, in place of kindnetd, which has no Go module). containerd sends every pull to a
# closed port on the node, so a pull fails at once and shows in its log (e2e/kind/run.sh checks that none happened).
#
# Images are tagged with a hash of their inputs (versions, scripts, files), so a second run finds them and
# rebuilds nothing; the Debian roots are cached under $RKTNETES_CACHE/kind.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib/common.sh
. "$(dirname "$0")/../lib/common.sh"
# shellcheck source=e2e/lib/debian.sh
. "$E2E_DIR/lib/debian.sh"
# shellcheck source=e2e/lib/images.sh
. "$E2E_DIR/lib/images.sh"

KIND_DIR="$E2E_DIR/kind"
FILES="$KIND_DIR/node-image"
CACHE="$RKTNETES_CACHE/kind"
# The nodes run the rkt stand-in built on this machine, so they share its Debian release (and C library).
SUITE=${RKTNETES_NODE_SUITE:-$(host_suite)} || die "this host is not Debian; set RKTNETES_NODE_SUITE to a Debian release"
REPOSITORY=rktnetes.local
IMAGE_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# What a kind node runs besides kubelet and containerd: the packages of kind's base image that exist in Debian,
# D-Bus (the agent talks to systemd through it), runc, and Debian's CNI plugins (the pod network's ptp,
# host-local, portmap and loopback, and the bridge plugin the tests run).
NODE_PACKAGES=(systemd systemd-sysv dbus conntrack iptables nftables iproute2 ethtool util-linux mount kmod
  libseccomp2 pigz bash ca-certificates jq procps runc containernetworking-plugins)
# The userland of kube-proxy's and the pod network's images.
TOOLS_PACKAGES=(iptables nftables conntrack iproute2 kmod)

# As kind's base image does: no services a container cannot or need not run, kernel messages not read.
prepare_node_root() {
  local root=$1
  find "$root/lib/systemd/system/sysinit.target.wants/" -name systemd-tmpfiles-setup.service -delete
  rm -f "$root"/lib/systemd/system/multi-user.target.wants/* "$root"/etc/systemd/system/*.wants/* \
    "$root"/lib/systemd/system/local-fs.target.wants/* "$root"/lib/systemd/system/sockets.target.wants/*udev* \
    "$root"/lib/systemd/system/sockets.target.wants/*initctl* "$root"/lib/systemd/system/basic.target.wants/*
  echo "ReadKMsg=no" >>"$root/etc/systemd/journald.conf"
  # kind's entrypoint writes the machine id of each node.
  : >"$root/etc/machine-id"
  rm -f "$root/var/lib/dbus/machine-id"
  find "$root/var/cache/apt/archives" "$root/var/lib/apt/lists" -type f -delete
}

prepare_tools_root() {
  local root=$1
  find "$root/var/cache/apt/archives" "$root/var/lib/apt/lists" -type f -delete
  rm -rf "$root/usr/share/doc" "$root/usr/share/man" "$root/usr/share/locale" "$root/usr/share/info"
}

kind_module_dir() {
  local dir
  dir=$(cd "$CACHE" && go mod download -json "sigs.k8s.io/kind@$KIND_VERSION" | jq -r .Dir) ||
    die "cannot find sigs.k8s.io/kind@$KIND_VERSION in the Go module cache (e2e/build-tools.sh kind fetches it)"
  [[ -d $dir/images/base/files ]] || die "sigs.k8s.io/kind@$KIND_VERSION has no images/base/files"
  echo "$dir"
}

# The images kubeadm deploys for this Kubernetes, one reference a line.
kubeadm_images() {
  "$KIND_TOOLS_BIN/kubeadm" config images list --kubernetes-version "$KUBERNETES_VERSION" 2>/dev/null ||
    die "kubeadm cannot list its images"
}

# --- the images in the node's containerd ---------------------------------------------------------------------

# A binary e2e/build-tools.sh built: the control plane's set, or the kind lane's.
tool_binary() {
  local dir
  for dir in "$TOOLS_BIN" "$KIND_TOOLS_BIN"; do
    if [[ -x $dir/$1 ]]; then
      echo "$dir/$1"
      return 0
    fi
  done
  die "$1 is not built; run e2e/build-tools.sh kind"
}

# component_image REF: builds the control plane image REF (a reference kubeadm lists) from the binaries built
# here, unless it exists.
component_image() {
  local ref=$1 name tag tree
  name=${ref%:*}
  name=${name##*/}
  tag=${ref##*:}
  image_exists "$ref" && return 0
  tree=$(mktemp -d "$CACHE/tree.XXXXXX")
  mkdir -p "$tree/usr/local/bin" "$tree/tmp"
  chmod 1777 "$tree/tmp"
  case $name in
    kube-apiserver | kube-controller-manager | kube-scheduler)
      cp "$(tool_binary "$name")" "$tree/usr/local/bin/"
      image_from_tree "$ref" "$tree" "ENV PATH=$IMAGE_PATH"
      ;;
    kube-proxy)
      cp "$KIND_TOOLS_BIN/kube-proxy" "$tree/usr/local/bin/"
      image_with_files "$ref" "$(tools_base_image)" "$tree"
      ;;
    etcd)
      # kubeadm tags etcd as <version>-<revision>; the etcd built for the local control plane must be that version.
      [[ v${tag%-*} == "$ETCD_VERSION" ]] ||
        die "kubeadm $KUBERNETES_VERSION deploys etcd $tag, but e2e/versions.env builds $ETCD_VERSION: make them agree"
      cp "$TOOLS_BIN/etcd" "$tree/usr/local/bin/"
      image_from_tree "$ref" "$tree" "ENV PATH=$IMAGE_PATH"
      ;;
    coredns)
      [[ $(cat "$KIND_TOOLS_BIN/coredns.version") == "$tag" ]] ||
        die "CoreDNS $(cat "$KIND_TOOLS_BIN/coredns.version") was built, but kubeadm deploys $tag: run e2e/build-tools.sh kind"
      cp "$KIND_TOOLS_BIN/coredns" "$tree/coredns"
      image_from_tree "$ref" "$tree" "ENV PATH=$IMAGE_PATH" 'ENTRYPOINT ["/coredns"]'
      ;;
    pause)
      [[ $(cat "$KIND_TOOLS_BIN/pause.version") == "$tag" ]] ||
        die "pause $(cat "$KIND_TOOLS_BIN/pause.version") was built, but kubeadm deploys $tag: run e2e/build-tools.sh kind"
      cp "$KIND_TOOLS_BIN/pause" "$tree/pause"
      image_from_tree "$ref" "$tree" 'ENTRYPOINT ["/pause"]'
      ;;
    *) die "kubeadm $KUBERNETES_VERSION lists an image this lane cannot build: $ref" ;;
  esac
  rm -rf "$tree"
}

# The Debian userland that kube-proxy (iptables) and the pod network (ip, kubectl) run on; prints its reference.
tools_base_image() {
  local root="$CACHE/roots/tools-$SUITE" ref
  cached_debian_root "$root" "$SUITE" prepare_tools_root "${TOOLS_PACKAGES[@]}"
  ref="$REPOSITORY/kind-tools:$(input_key "$root.stamp")"
  image_exists "$ref" || image_from_tree "$ref" "$root" "ENV PATH=$IMAGE_PATH"
  echo "$ref"
}

pod_network_image() {
  local ref tree
  ref="$REPOSITORY/kind-pod-network:$(input_key "$FILES/pod-network.sh" "$KUBERNETES_VERSION" "$(tools_base_image)")"
  if ! image_exists "$ref"; then
    tree=$(mktemp -d "$CACHE/tree.XXXXXX")
    mkdir -p "$tree/usr/local/bin"
    cp "$TOOLS_BIN/kubectl" "$FILES/pod-network.sh" "$tree/usr/local/bin/"
    image_with_files "$ref" "$(tools_base_image)" "$tree"
    rm -rf "$tree"
  fi
  echo "$ref"
}

# --- the node image ----------------------------------------------------------------------------------------------

# node_tree DIR KIND_MODULE POD_NETWORK_IMAGE PAUSE_IMAGE: what the node image adds to the Debian root.
node_tree() {
  local tree=$1 kind=$2 pod_network=$3 pause=$4 files
  files="$kind/images/base/files"
  mkdir -p "$tree/usr/local/bin" "$tree/usr/bin" "$tree/etc" "$tree/kind/manifests" "$tree/opt/cni" \
    "$tree/etc/kubernetes/manifests" "$tree/etc/containerd/certs.d/_default"
  cp -r "$files/." "$tree/"
  find "$tree" -type d -exec chmod 0755 {} + && find "$tree" -type f -exec chmod 0644 {} +
  chmod 0755 "$tree"/usr/local/bin/* "$tree"/kind/bin/*
  # kind's containerd configuration, with kubeadm's pause as the sandbox image, and every registry sent to a
  # closed port (hosts.toml below): this lane pulls nothing.
  # restrict_oom_score_adj: a container may not ask for a lower OOM score than containerd's own. Lowering a score
  # takes CAP_SYS_RESOURCE, which a node lacks where the engine's bounding set does (e2e/kind/engine.sh); where it
  # has it, containerd runs at -999 and the clamp changes nothing.
  sed -e "s#^\(\s*sandbox_image = \).*#\1\"$pause\"#" -e "s#^\(\s*restrict_oom_score_adj = \).*#\1true#" \
    "$files/etc/containerd/config.toml" >"$tree/etc/containerd/config.toml"
  if ! grep -q "sandbox_image = \"$pause\"" "$tree/etc/containerd/config.toml" ||
    ! grep -q "restrict_oom_score_adj = true" "$tree/etc/containerd/config.toml"; then
    die "kind's containerd config has no sandbox_image or restrict_oom_score_adj to set"
  fi
  cat >>"$tree/etc/containerd/config.toml" <<'TOML'

# rktnetes kind lane: registries are configured in certs.d, where _default sends every pull to a closed port.
[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = "/etc/containerd/certs.d"
TOML
  cat >"$tree/etc/containerd/certs.d/_default/hosts.toml" <<'TOML'
# The rktnetes kind lane pulls nothing: every image is in containerd's store when the node starts, or loaded
# with `kind load`. A pull of anything else goes here, fails at once, and is logged by containerd.
server = "http://127.0.0.1:1"

[host."http://127.0.0.1:1"]
  capabilities = ["pull", "resolve"]
TOML
  for binary in containerd containerd-shim-runc-v2 ctr crictl; do cp "$KIND_TOOLS_BIN/$binary" "$tree/usr/local/bin/"; done
  cp "$KIND_TOOLS_BIN/kubelet" "$KIND_TOOLS_BIN/kubeadm" "$TOOLS_BIN/kubectl" "$tree/usr/bin/"
  # Debian's CNI plugins, where kind's containerd looks for them.
  ln -s /usr/lib/cni "$tree/opt/cni/bin"
  # As kind's base image: containerd's default OCI spec with kind's createContainer hook and no rlimits.
  "$KIND_TOOLS_BIN/ctr" oci spec |
    jq '.hooks.createContainer[.hooks.createContainer | length] |= . + {"path": "/kind/bin/mount-product-files.sh"}' |
    jq 'del(.process.rlimits)' >"$tree/etc/containerd/cri-base.json"
  echo "$KUBERNETES_VERSION" >"$tree/kind/version"
  sed "s#POD_NETWORK_IMAGE#$pod_network#" "$FILES/pod-network.yaml" >"$tree/kind/manifests/default-cni.yaml"
}

# In a container of BASE: enables kind's units as its base image does, starts containerd, imports IMAGEs into its
# k8s.io namespace (pinned, as kind does), and commits the result as REF.
finish_node_image() {
  local ref=$1 base=$2 container
  shift 2
  # --init: an init that reaps, so that containerd is gone, not a zombie, once it has stopped.
  container=$(docker run -d --init --entrypoint=sleep --security-opt seccomp=unconfined "$base" infinity) ||
    die "cannot start a container of $base"
  # shellcheck disable=SC2016 # expanded in the container
  if ! docker exec "$container" sh -c 'systemctl enable kubelet.service containerd.service undo-mount-hacks.service &&
      systemctl mask systemd-binfmt.service' >/dev/null 2>&1 ||
    ! docker exec "$container" bash -c 'nohup containerd >/var/log/containerd-build.log 2>&1 &
      for i in $(seq 50); do [ -S /run/containerd/containerd.sock ] && break; sleep 0.2; done; ctr version >/dev/null' ||
    ! docker save "$@" | docker exec -i "$container" ctr --namespace=k8s.io images import \
      --label=io.cri-containerd.pinned=pinned --all-platforms --no-unpack --digests - >/dev/null ||
    ! docker exec "$container" bash -c 'pkill containerd; while pgrep -x containerd >/dev/null; do sleep 0.2; done
      rm -rf /run/containerd /var/log/containerd-build.log' ||
    ! docker commit --change 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' "$container" "$ref" >/dev/null; then
    docker rm -f "$container" >/dev/null 2>&1
    die "cannot load the images into the node image"
  fi
  docker rm -f "$container" >/dev/null
}

node_image() {
  local root="$CACHE/roots/node-$SUITE" kind base ref tree images=() image pod_network pause
  [[ -f $KIND_TOOLS_DIR/.complete ]] || die "the kind lane's tools are not built; run e2e/build-tools.sh kind"
  mkdir -p "$CACHE"
  cached_debian_root "$root" "$SUITE" prepare_node_root "${NODE_PACKAGES[@]}"
  kind=$(kind_module_dir)
  ref="$REPOSITORY/kind-node:$KUBERNETES_VERSION-$(input_key "$0" "$FILES/pod-network.sh" "$FILES/pod-network.yaml" \
    "$root.stamp" "$KIND_TOOLS_DIR" "$TOOLS_DIR")"
  if image_exists "$ref"; then
    echo "$ref"
    return 0
  fi
  log "building the kind node image $ref"
  mapfile -t images < <(kubeadm_images)
  for image in "${images[@]}"; do
    component_image "$image"
    [[ $image == */pause:* ]] && pause=$image
  done
  [[ -n ${pause:-} ]] || die "kubeadm lists no pause image"
  pod_network=$(pod_network_image)
  images+=("$pod_network")

  base="$REPOSITORY/kind-node-base:$(input_key "$root.stamp")"
  # `container=docker` tells systemd it runs in a container. (kind's image also sets STOPSIGNAL, which
  # `docker import` cannot; kind removes its nodes with SIGKILL anyway.)
  image_exists "$base" || image_from_tree "$base" "$root" "ENV container=docker" \
    'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]'
  tree=$(mktemp -d "$CACHE/tree.XXXXXX")
  node_tree "$tree" "$kind" "$pod_network" "$pause"
  image_with_files "$ref.files" "$base" "$tree"
  rm -rf "$tree"
  finish_node_image "$ref" "$ref.files" "${images[@]}"
  docker rmi "$ref.files" >/dev/null
  log "node image $ref ready"
  echo "$ref"
}

# The node image with the rkt stand-in RKT as the node's /usr/bin/rkt, run as rkt-api.service (the unit of
# e2e/node, as on the nspawn nodes) and D-Bus, as seed 003's nodes have them. Prints its reference.
rkt_node_image() {
  local rkt=$1 node ref tree
  [[ -x $rkt ]] || die "the rkt stand-in is not an executable file: $rkt"
  node=$(node_image)
  ref="$REPOSITORY/kind-rkt-node:$KUBERNETES_VERSION-$(input_key "$node" "$rkt" "$E2E_DIR/node/rkt-api.service")"
  if ! image_exists "$ref"; then
    tree=$(mktemp -d "$CACHE/tree.XXXXXX")
    mkdir -p "$tree/usr/bin" "$tree/etc/systemd/system/multi-user.target.wants"
    install -m 0755 "$rkt" "$tree/usr/bin/rkt"
    install -m 0644 "$E2E_DIR/node/rkt-api.service" "$tree/etc/systemd/system/rkt-api.service"
    ln -s /etc/systemd/system/rkt-api.service "$tree/etc/systemd/system/multi-user.target.wants/rkt-api.service"
    image_with_files "$ref" "$node" "$tree"
    rm -rf "$tree"
    log "rkt node image $ref ready"
  fi
  echo "$ref"
}

case ${1:-} in
  node) node_image ;;
  rkt-node)
    (($# == 2)) || die "usage: $0 rkt-node RKT_STANDIN_BINARY"
    rkt_node_image "$2"
    ;;
  *) die "usage: $0 node | rkt-node RKT_STANDIN_BINARY" ;;
esac
