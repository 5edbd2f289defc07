#!/bin/bash
# The kind lane's pod network: what kind's own kindnetd does, for the image this project builds without a
# registry (kindnetd is not published as a Go module). One of these runs on every node (host network, NET_ADMIN):
#   - it writes the node's CNI config, the ptp plugin with host-local addresses from the node's podCIDR and
#     masquerading for traffic that leaves the pod network, and the portmap plugin for hostPorts;
#   - it routes every other node's podCIDR through that node's InternalIP, so pods reach each other across nodes.
# It reads Nodes with its ServiceAccount's token, from the control plane directly (CONTROL_PLANE_ENDPOINT, which
# kind patches into the DaemonSet), because Services need kube-proxy and kube-proxy's pods need this network.
# It re-reads every RESYNC seconds, and writes or routes only what changed.
set -euo pipefail

: "${NODE_NAME:?the DaemonSet sets NODE_NAME from the downward API}"
: "${CONTROL_PLANE_ENDPOINT:?kind patches CONTROL_PLANE_ENDPOINT into the DaemonSet}"
: "${POD_SUBNET:?kind templates POD_SUBNET into the DaemonSet}"
RESYNC=${RESYNC:-10}
CNI_CONFIG=/etc/cni/net.d/10-kind-pod-network.conflist
SERVICE_ACCOUNT=/var/run/secrets/kubernetes.io/serviceaccount

log() { printf '%s pod-network: %s\n' "$(date -u +%FT%TZ)" "$*"; }

# kubectl with the ServiceAccount's current token (the kubelet rotates it in place).
kube() {
  kubectl --server="https://$CONTROL_PLANE_ENDPOINT" --certificate-authority="$SERVICE_ACCOUNT/ca.crt" \
    --token="$(cat "$SERVICE_ACCOUNT/token")" --request-timeout=10s "$@"
}

cni_config() {
  cat <<JSON
{
  "cniVersion": "0.4.0",
  "name": "kind-pod-network",
  "plugins": [
    {
      "type": "ptp",
      "ipMasq": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "/run/cni-ipam-state",
        "ranges": [[{"subnet": "$1"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      },
      "mtu": 1500
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
JSON
}

# Writes the CNI config for the node's podCIDR when it differs; whole, by rename.
write_cni_config() {
  local wanted
  wanted=$(cni_config "$1")
  [[ -f $CNI_CONFIG && $(cat "$CNI_CONFIG") == "$wanted" ]] && return 0
  printf '%s\n' "$wanted" >"$CNI_CONFIG.tmp"
  mv "$CNI_CONFIG.tmp" "$CNI_CONFIG"
  log "wrote $CNI_CONFIG for $1"
}

sync_once() {
  local nodes name cidr address own=""
  # One line per node: name, podCIDR, InternalIP.
  nodes=$(kube get nodes -o jsonpath='{range .items[*]}{.metadata.name} {.spec.podCIDR} {.status.addresses[?(@.type=="InternalIP")].address}{"\n"}{end}') ||
    return 1
  while read -r name cidr address; do
    [[ -n $name && -n $cidr ]] || continue
    if [[ $name == "$NODE_NAME" ]]; then
      own=$cidr
    elif [[ -n $address && $(ip route show "$cidr") != *"via $address "* ]]; then
      ip route replace "$cidr" via "$address"
      log "route $cidr via $address ($name)"
    fi
  done <<<"$nodes"
  if [[ -z $own ]]; then
    log "node $NODE_NAME has no podCIDR yet"
    return 1
  fi
  write_cni_config "$own"
}

log "node $NODE_NAME, pod subnet $POD_SUBNET, control plane $CONTROL_PLANE_ENDPOINT"
trap 'exit 0' TERM INT
while true; do
  sync_once || log "not in sync yet; retrying in ${RESYNC}s"
  sleep "$RESYNC" &
  wait $!
done
