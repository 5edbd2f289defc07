#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager, kubectl, etcd and helm from their published Go modules at the
# versions pinned in versions.env, into a cache outside the clone. Does nothing when they are already built.
#
# `go install k8s.io/kubernetes/cmd/...@vX` refuses a module with replace directives, so each tool is built inside a
# small module of our own that requires it and, for Kubernetes, replaces every staging module with its published
# v0.<minor>.<patch>; the list is read from that version's own go.mod, not typed here.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

stamp="$TOOLS_DIR/.complete"
if [[ -f "$stamp" ]]; then
  exit 0
fi
command -v go >/dev/null || die "go is not on PATH; the local cluster is built from Go modules"

work="$TOOLS_DIR/modules"
mkdir -p "$TOOLS_BIN" "$work"
export GOFLAGS="-mod=mod -buildvcs=false"
export CGO_ENABLED=0

build_kubernetes() {
  local dir="$work/kubernetes" staging_version gomod
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
  cat >"$dir/tools.go" <<'GO'
//go:build tools

// Package tools pins the commands this module builds.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
  local ldflags="" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1"
    ldflags+=" -X $pkg.gitMinor=$(echo "$KUBERNETES_VERSION" | cut -d. -f2) -X $pkg.gitTreeState=clean"
  done
  log "building kube-apiserver, kube-controller-manager and kubectl $KUBERNETES_VERSION (slow the first time)"
  (cd "$dir" && go build -trimpath -ldflags "-s -w $ldflags" -o "$TOOLS_BIN/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kubectl)
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

[[ -x "$TOOLS_BIN/etcd" ]] || build_etcd
[[ -x "$TOOLS_BIN/kube-apiserver" && -x "$TOOLS_BIN/kube-controller-manager" && -x "$TOOLS_BIN/kubectl" ]] || build_kubernetes
[[ -x "$TOOLS_BIN/helm" ]] || build_helm
touch "$stamp"
log "tools ready in $TOOLS_BIN"
