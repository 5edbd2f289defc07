#!/usr/bin/env bash
# Builds the tools the tests run from their published Go modules at the versions pinned in versions.env, into a
# cache outside the clone (keyed by those versions). Does nothing for a set that is already built.
#
#   e2e/build-tools.sh           the local control plane: kube-apiserver, kube-controller-manager, kubectl, etcd,
#                                helm (into $TOOLS_BIN); promtool, for the chart's alerts (into
#                                $MONITORING_TOOLS_BIN)
#   e2e/build-tools.sh kind      also what the kind lane's images are made of (into $KIND_TOOLS_BIN): kind; kubelet,
#                                kubeadm, kube-scheduler, kube-proxy; containerd, ctr and its runc shim; crictl;
#                                CoreDNS and pause at the versions this Kubernetes' kubeadm deploys
#
# `go install k8s.io/kubernetes/cmd/...@vX` refuses a module with replace directives, so Kubernetes' commands are
# built inside a small module of our own that requires it and replaces every staging module with its published
# v0.<minor>.<patch>; the list is read from that version's own go.mod, not typed here. The other modules have no
# replace directives and build with `go install MODULE/CMD@VERSION`.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

set_name=${1:-control-plane}
[[ $set_name == @(control-plane|kind) ]] || die "usage: $0 [control-plane|kind]"
command -v go >/dev/null || die "go is not on PATH; the local cluster is built from Go modules"

work="$TOOLS_DIR/modules"
mkdir -p "$TOOLS_BIN" "$work"
export GOFLAGS="-mod=mod -buildvcs=false"
export CGO_ENABLED=0
# Go's build cache for these builds, kept apart from the user's: the kind lane's Kubernetes commands reuse what the
# control plane's build compiled, and once both sets are built (they are cached by version) nothing needs it, so
# its 6 GB go (see the end).
export GOCACHE="$RKTNETES_CACHE/go-build"

# build_kubernetes DIR COMMAND...: Kubernetes' commands (cmd/NAME) into DIR.
build_kubernetes() {
  local out=$1 dir="$work/kubernetes" staging_version gomod command
  shift
  staging_version="v0.${KUBERNETES_VERSION#v1.}"
  mkdir -p "$dir"
  log "resolving k8s.io/kubernetes@$KUBERNETES_VERSION"
  gomod=$(cd "$dir" && go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  [[ -f "$gomod" ]] || die "could not download the go.mod of k8s.io/kubernetes@$KUBERNETES_VERSION"
  {
    echo "module rktnetes.io/e2e/kubernetes"
    echo
    grep -E '^go [0-9.]+$' "$gomod"
    echo
    echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
    echo
    echo "replace ("
    sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\t\1 => \1 '"$staging_version"'#p' "$gomod"
    echo ")"
  } >"$dir/go.mod"
  local ldflags="" pkg packages=()
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1"
    ldflags+=" -X $pkg.gitMinor=$(echo "$KUBERNETES_VERSION" | cut -d. -f2) -X $pkg.gitTreeState=clean"
  done
  for command; do packages+=("k8s.io/kubernetes/cmd/$command"); done
  log "building $* $KUBERNETES_VERSION (slow the first time)"
  (cd "$dir" && go build -trimpath -ldflags "-s -w $ldflags" -o "$out/" "${packages[@]}")
}

build_etcd() {
  local dir="$work/etcd"
  mkdir -p "$dir"
  cat >"$dir/go.mod" <<GOMOD
module rktnetes.io/e2e/etcd

go 1.24

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
GOMOD
  # etcd's own main package lives in its root module, which pulls in its test tooling; etcdmain is all a
  # server needs.
  cat >"$dir/main.go" <<'GO'
// Command etcd is etcd's server, built from go.etcd.io/etcd/server/v3/etcdmain.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  log "building etcd $ETCD_VERSION"
  (cd "$dir" && go build -trimpath -ldflags "-s -w" -o "$TOOLS_BIN/etcd" .)
}

build_helm() {
  local dir="$work/helm" major="${HELM_VERSION%%.*}"
  mkdir -p "$dir"
  cat >"$dir/go.mod" <<GOMOD
module rktnetes.io/e2e/helm

go 1.24

require helm.sh/helm/$major $HELM_VERSION
GOMOD
  cat >"$dir/tools.go" <<GO
//go:build tools

// Package tools pins the command this module builds.
package tools

import _ "helm.sh/helm/$major/cmd/helm"
GO
  log "building helm $HELM_VERSION"
  (cd "$dir" && go build -trimpath \
    -ldflags "-s -w -X helm.sh/helm/$major/internal/version.version=$HELM_VERSION" \
    -o "$TOOLS_BIN/helm" "helm.sh/helm/$major/cmd/helm")
}

# go_install DIR MODULE/CMD@VERSION [LDFLAGS [TAGS]]: a command of a module without replace directives, into DIR.
go_install() {
  local out=$1 target=$2 ldflags=${3:-} tags=${4:-}
  log "building ${target%@*} ${target#*@}"
  GOBIN=$out GOFLAGS=-buildvcs=false go install -trimpath -tags "$tags" -ldflags "-s -w $ldflags" "$target"
}

# The images `kubeadm config images list` names for this Kubernetes: what the kind node image must carry.
kubeadm_image() {
  "$KIND_TOOLS_BIN/kubeadm" config images list --kubernetes-version "$KUBERNETES_VERSION" 2>/dev/null |
    sed -n "s#^registry.k8s.io/$1:##p"
}

# kubeadm's pause, from the pause.c of the same Kubernetes module, as a static binary (it runs in an image
# with nothing else in it).
build_pause() {
  local version source
  version=$(kubeadm_image pause)
  [[ -n $version ]] || die "kubeadm $KUBERNETES_VERSION names no pause image"
  source=$(cd "$work/kubernetes" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)/build/pause/linux/pause.c
  [[ -f $source ]] || die "k8s.io/kubernetes@$KUBERNETES_VERSION has no $source"
  log "building pause $version"
  command -v gcc >/dev/null || die "gcc is not installed; pause is C"
  gcc -Os -static -Wall -Werror -DVERSION="$version" -o "$KIND_TOOLS_BIN/pause" "$source"
  echo "$version" >"$KIND_TOOLS_BIN/pause.version"
}

build_control_plane() {
  local stamp="$TOOLS_DIR/.complete"
  [[ -f $stamp ]] && return 0
  mkdir -p "$TOOLS_BIN"
  [[ -x "$TOOLS_BIN/etcd" ]] || build_etcd
  [[ -x "$TOOLS_BIN/kube-apiserver" && -x "$TOOLS_BIN/kube-controller-manager" && -x "$TOOLS_BIN/kubectl" ]] ||
    build_kubernetes "$TOOLS_BIN" kube-apiserver kube-controller-manager kubectl
  [[ -x "$TOOLS_BIN/helm" ]] || build_helm
  touch "$stamp"
  log "tools ready in $TOOLS_BIN"
}

# promtool, kept apart from the control plane's set: its version moves on its own.
build_promtool() {
  [[ -x "$MONITORING_TOOLS_BIN/promtool" ]] && return 0
  mkdir -p "$MONITORING_TOOLS_BIN"
  go_install "$MONITORING_TOOLS_BIN" "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_VERSION"
}

build_kind_lane() {
  local stamp="$KIND_TOOLS_DIR/.complete" coredns
  [[ -f $stamp ]] && return 0
  mkdir -p "$KIND_TOOLS_BIN"
  [[ -x "$KIND_TOOLS_BIN/kind" ]] || go_install "$KIND_TOOLS_BIN" "sigs.k8s.io/kind@$KIND_VERSION"
  [[ -x "$KIND_TOOLS_BIN/kubelet" && -x "$KIND_TOOLS_BIN/kubeadm" && -x "$KIND_TOOLS_BIN/kube-scheduler" &&
    -x "$KIND_TOOLS_BIN/kube-proxy" ]] ||
    build_kubernetes "$KIND_TOOLS_BIN" kubelet kubeadm kube-scheduler kube-proxy
  local containerd_module=github.com/containerd/containerd/v2 command
  for command in containerd ctr containerd-shim-runc-v2; do
    # No btrfs, devmapper or zfs snapshotters: kind's nodes use overlayfs, and those need cgo.
    [[ -x "$KIND_TOOLS_BIN/$command" ]] || go_install "$KIND_TOOLS_BIN" \
      "$containerd_module/cmd/$command@$CONTAINERD_VERSION" \
      "-X $containerd_module/version.Version=$CONTAINERD_VERSION -X $containerd_module/version.Revision=module" \
      no_btrfs,no_devmapper,no_zfs
  done
  [[ -x "$KIND_TOOLS_BIN/crictl" ]] || go_install "$KIND_TOOLS_BIN" "sigs.k8s.io/cri-tools/cmd/crictl@$CRI_TOOLS_VERSION" \
    "-X sigs.k8s.io/cri-tools/pkg/version.Version=$CRI_TOOLS_VERSION"
  coredns=$(kubeadm_image coredns/coredns)
  [[ -n $coredns ]] || die "kubeadm $KUBERNETES_VERSION names no CoreDNS image"
  if [[ ! -x "$KIND_TOOLS_BIN/coredns" || $(cat "$KIND_TOOLS_BIN/coredns.version" 2>/dev/null) != "$coredns" ]]; then
    go_install "$KIND_TOOLS_BIN" "github.com/coredns/coredns@$coredns" "-X github.com/coredns/coredns/coremain.GitCommit=$coredns"
    echo "$coredns" >"$KIND_TOOLS_BIN/coredns.version"
  fi
  [[ -x "$KIND_TOOLS_BIN/pause" ]] || build_pause
  touch "$stamp"
  log "kind lane tools ready in $KIND_TOOLS_BIN"
}

build_control_plane
build_promtool
[[ $set_name == kind ]] && build_kind_lane
if [[ -f "$TOOLS_DIR/.complete" && -f "$KIND_TOOLS_DIR/.complete" && -d $GOCACHE ]]; then
  log "both tool sets are built: removing Go's build cache for them ($(du -sh "$GOCACHE" | cut -f1))"
  go clean -cache
  rm -rf "$GOCACHE"
fi
exit 0
