#!/usr/bin/env bash
# The local Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager as processes on this machine,
# TLS everywhere, RBAC, no kubelet) of the e2e tests and the demo: `rktnetes-e2e cluster` (e2e/harness/src/
# control_plane, where its settings are described).
#
# Usage: e2e/cluster.sh up|down|status|kubeconfig|env
#   up          start it (or do nothing if it is already healthy); the last line on stdout is the admin
#               kubeconfig's path, so `KUBECONFIG=$(e2e/cluster.sh up)` works
#   down        stop it and delete its state      status   print "up" (exit 0) or "down" (exit 1)
#   kubeconfig  print the admin kubeconfig's path  env      print exports of KUBECONFIG and PATH, for eval
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --quiet --locked -p rktnetes-e2e -- cluster "$@"
