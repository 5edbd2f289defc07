#!/usr/bin/env bash
# A local Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager) for the e2e tests: plain
# processes on this machine, TLS everywhere, RBAC, no kubelet. Binaries come from build-tools.sh.
#
# Usage: e2e/cluster.sh up|down|status|kubeconfig|env
#   up          start it (or do nothing if it is already healthy); the last line on stdout is the admin
#               kubeconfig's path, so `KUBECONFIG=$(e2e/cluster.sh up)` works. Everything else goes to stderr.
#   down        stop it and delete its state; harmless when it is not running
#   status      print "up" (exit 0) or "down" (exit 1)
#   kubeconfig  print the admin kubeconfig's path (fails when not up)
#   env         print `export KUBECONFIG=...; export PATH=...` for `eval "$(e2e/cluster.sh env)"`
#
# Settings (environment):
#   RKTNETES_CLUSTER_DIR           state: certificates, etcd data, logs, pid files, kubeconfigs
#                                  (default $RKTNETES_CACHE/cluster; it is deleted by `down`)
#   RKTNETES_ETCD_CLIENT_PORT      23791      RKTNETES_ETCD_PEER_PORT  23801
#   RKTNETES_APISERVER_PORT        16443      RKTNETES_KCM_PORT        20257
#   RKTNETES_APISERVER_BIND        address kube-apiserver listens on (default 127.0.0.1)
#   RKTNETES_APISERVER_ADVERTISE   address it advertises as the `kubernetes` Service's endpoint (default: the
#                                  bind address if that is a specific one, else 127.0.0.1)
#   RKTNETES_APISERVER_EXTRA_SANS  comma-separated extra IPs for its serving certificate, e.g. a host bridge's
#                                  IP that machines in network namespaces reach it at
#   RKTNETES_CLUSTER_TIMEOUT       seconds to wait for each component to become ready (default 180)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"

STATE=${RKTNETES_CLUSTER_DIR:-$RKTNETES_CACHE/cluster}
ETCD_CLIENT_PORT=${RKTNETES_ETCD_CLIENT_PORT:-23791}
ETCD_PEER_PORT=${RKTNETES_ETCD_PEER_PORT:-23801}
APISERVER_PORT=${RKTNETES_APISERVER_PORT:-16443}
KCM_PORT=${RKTNETES_KCM_PORT:-20257}
APISERVER_BIND=${RKTNETES_APISERVER_BIND:-127.0.0.1}
EXTRA_SANS=${RKTNETES_APISERVER_EXTRA_SANS:-}
TIMEOUT=${RKTNETES_CLUSTER_TIMEOUT:-180}
SERVICE_CIDR=10.96.0.0/16
SERVICE_IP=10.96.0.1 # the first IP of SERVICE_CIDR: the `kubernetes` Service's ClusterIP
SA_ISSUER=https://kubernetes.default.svc.cluster.local

# Components in start order; `down` stops them in reverse.
COMPONENTS=(etcd kube-apiserver kube-controller-manager)
PKI="$STATE/pki"
LOGS="$STATE/logs"
ADMIN_KUBECONFIG="$STATE/admin.kubeconfig"
# Marks a directory as ours, so a mistyped RKTNETES_CLUSTER_DIR can never make `down` delete something else.
MARKER="$STATE/.rktnetes-cluster"

is_ipv4() { [[ $1 =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ ]]; }
is_ip() { is_ipv4 "$1" || [[ $1 =~ ^[0-9a-fA-F:]*:[0-9a-fA-F:.]*$ ]]; }
is_wildcard() { [[ $1 == 0.0.0.0 || $1 == :: ]]; }

for port in "$ETCD_CLIENT_PORT" "$ETCD_PEER_PORT" "$APISERVER_PORT" "$KCM_PORT"; do
  if ! [[ $port =~ ^[0-9]+$ ]] || ((port < 1 || port > 65535)); then die "not a TCP port: '$port'"; fi
done
[[ $TIMEOUT =~ ^[0-9]+$ ]] || die "RKTNETES_CLUSTER_TIMEOUT is not a number of seconds: '$TIMEOUT'"
is_ip "$APISERVER_BIND" || die "RKTNETES_APISERVER_BIND is not an IP address: '$APISERVER_BIND'"
# A specific bind address is the only one clients can reach it at; a wildcard or loopback one is reachable on
# loopback, which is all that needs to work without a default route.
if is_wildcard "$APISERVER_BIND"; then API_HOST=127.0.0.1; else API_HOST=$APISERVER_BIND; fi
ADVERTISE=${RKTNETES_APISERVER_ADVERTISE:-$API_HOST}
is_ip "$ADVERTISE" || die "RKTNETES_APISERVER_ADVERTISE is not an IP address: '$ADVERTISE'"
if [[ $API_HOST == *:* ]]; then API_URL="https://[$API_HOST]:$APISERVER_PORT"; else API_URL="https://$API_HOST:$APISERVER_PORT"; fi

# The apiserver's certificate names: the in-cluster ones, loopback, and whatever it binds or advertises.
SAN_IPS=(127.0.0.1 "$SERVICE_IP" "$ADVERTISE")
is_wildcard "$APISERVER_BIND" || SAN_IPS+=("$APISERVER_BIND")
if [[ -n $EXTRA_SANS ]]; then
  IFS=, read -ra extra <<<"$EXTRA_SANS"
  for ip in "${extra[@]}"; do
    ip=${ip//[[:space:]]/}
    [[ -z $ip ]] && continue
    is_ip "$ip" || die "RKTNETES_APISERVER_EXTRA_SANS: not an IP address: '$ip'"
    SAN_IPS+=("$ip")
  done
fi
mapfile -t SAN_IPS < <(printf '%s\n' "${SAN_IPS[@]}" | awk '!seen[$0]++')
SAN_DNS=(localhost kubernetes kubernetes.default kubernetes.default.svc kubernetes.default.svc.cluster.local)

# Everything the running cluster was started with; a change means `up` has to restart it.
CONFIG="tools=$TOOLS_BIN ports=$ETCD_CLIENT_PORT,$ETCD_PEER_PORT,$APISERVER_PORT,$KCM_PORT"
CONFIG+=" bind=$APISERVER_BIND advertise=$ADVERTISE sans=$(IFS=,; echo "${SAN_IPS[*]}")"

# --- processes ---------------------------------------------------------------------------------------------------

pid_of() { # prints the recorded pid of a component, if the file holds one
  local pid
  pid=$(cat "$STATE/$1.pid" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ ]] && echo "$pid"
}

alive() { # a zombie is dead too (it lingers until its parent reaps it)
  local stat
  stat=$(ps -o stat= -p "$1" 2>/dev/null) && [[ $stat != Z* ]]
}

# Whether a pid is one of our components: its program is named like one and its arguments point into our
# state dir. Pid files can be stale and pids get reused, so a pid alone proves nothing.
ours() {
  local pid=$1 program args
  alive "$pid" || return 1
  args=$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  program=${args%%$'\n'*}
  [[ " ${COMPONENTS[*]} " == *" ${program##*/} "* && $args == *"$STATE/"* ]]
}

running() { # the component's recorded pid is alive and ours
  local pid
  pid=$(pid_of "$1") && ours "$pid"
}

stop_pid() { # SIGTERM, up to 15 s for a clean exit, then SIGKILL
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 150; i++)); do
    alive "$pid" || return 0
    sleep 0.1
  done
  log "pid $pid ignored SIGTERM for 15 s; killing it"
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    alive "$pid" || return 0
    sleep 0.1
  done
  die "pid $pid survived SIGKILL"
}

holders() { # pids listening on a TCP port, any address (ours bind it on one, but a wildcard holder clashes too)
  ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u
}

# In reverse start order, so orphans stop like `down` stops them: an apiserver without etcd dawdles on SIGTERM.
ports() { echo "$KCM_PORT $APISERVER_PORT $ETCD_CLIENT_PORT $ETCD_PEER_PORT"; }

argv0() { tr '\0' '\n' <"/proc/$1/cmdline" 2>/dev/null | head -n 1; }

# Stops every process of ours: those in pid files, and orphans still holding our ports after their pid files
# went (a state dir deleted by hand, say).
stop_all() {
  local i name pid port
  for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do
    name=${COMPONENTS[i]}
    if pid=$(pid_of "$name") && ours "$pid"; then
      log "stopping $name (pid $pid)"
      stop_pid "$pid"
    fi
    rm -f "$STATE/$name.pid"
  done
  for port in $(ports); do
    for pid in $(holders "$port"); do
      if ours "$pid"; then
        log "stopping orphaned $(basename "$(argv0 "$pid")") (pid $pid) on port $port"
        stop_pid "$pid"
      fi
    done
  done
}

# Fails, naming the holder, when something that is not ours listens on a port we need.
check_ports() {
  local port held
  for port in $(ports); do
    held=$(ss -Hltnp "sport = :$port" 2>/dev/null) || held=""
    [[ -z $held ]] || die "port $port is already in use by something that is not this cluster:
$held
(set RKTNETES_ETCD_CLIENT_PORT, RKTNETES_ETCD_PEER_PORT, RKTNETES_APISERVER_PORT or RKTNETES_KCM_PORT to move ours)"
  done
}

# Starts a component in its own session, so it outlives this script and a caller's process-group kill; its
# pid file is written by the process itself (the pid `setsid` ends up running under is not always $!).
# fd 9 is the lock and must not stay held by the daemon.
start() {
  local name=$1 i
  shift
  rm -f "$STATE/$name.pid"
  # shellcheck disable=SC2016 # expanded by the inner bash
  setsid bash -c 'echo $$ >"$0" && exec "$@"' "$STATE/$name.pid" "$@" \
    </dev/null >"$LOGS/$name.log" 2>&1 9>&- &
  for ((i = 0; i < 50; i++)); do
    pid_of "$name" >/dev/null && return 0
    sleep 0.1
  done
  die "$name did not start; see $LOGS/$name.log"
}

fail() { # gives up on `up`: shows why, stops what started (the logs stay until the next up/down)
  local name=$1
  shift
  log "$*"
  if [[ -s $LOGS/$name.log ]]; then
    log "last lines of $LOGS/$name.log:"
    tail -n 40 "$LOGS/$name.log" >&2
  fi
  stop_all
  die "the cluster did not come up"
}

wait_for() { # wait_for COMPONENT DESCRIPTION COMMAND...: polls COMMAND until it succeeds
  local name=$1 what=$2 deadline=$((SECONDS + TIMEOUT))
  shift 2
  until "$@" >/dev/null 2>&1; do
    running "$name" || fail "$name" "$name exited while waiting for $what"
    ((SECONDS < deadline)) || fail "$name" "timed out after ${TIMEOUT}s waiting for $what"
    sleep 0.5
  done
}

# --- health ------------------------------------------------------------------------------------------------------

etcd_healthy() {
  curl -sf --max-time 5 --cacert "$PKI/ca.crt" --cert "$PKI/apiserver-etcd-client.crt" \
    --key "$PKI/apiserver-etcd-client.key" "https://127.0.0.1:$ETCD_CLIENT_PORT/health" | grep -q '"health":"true"'
}

apiserver_ready() {
  [[ $(curl -sf --max-time 5 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
    "$API_URL/readyz") == ok ]]
}

kcm_healthy() { # its serving certificate is self-signed; this only asks whether it is alive
  [[ $(curl -skf --max-time 5 "https://127.0.0.1:$KCM_PORT/healthz") == ok ]]
}

kubectl_admin() { "$TOOLS_BIN/kubectl" --kubeconfig "$ADMIN_KUBECONFIG" --request-timeout=5s "$@"; }

healthy() { # all components ours, running and answering
  local name
  [[ -f $MARKER && -f $ADMIN_KUBECONFIG ]] || return 1
  for name in "${COMPONENTS[@]}"; do
    running "$name" || return 1
  done
  apiserver_ready && kcm_healthy
}

# --- certificates ------------------------------------------------------------------------------------------------

quiet() { # runs a command, showing its output only if it fails (openssl chatters on stderr)
  local out
  out=$("$@" 2>&1) || {
    printf '%s\n' "$out" >&2
    die "failed: $*"
  }
}

new_key() { quiet openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$PKI/$1.key"; }

new_ca() { # new_ca NAME COMMON_NAME: a self-signed CA
  cat >"$PKI/$1.cnf" <<EOF
[req]
prompt = no
distinguished_name = dn
x509_extensions = ext
[dn]
CN = $2
[ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign, digitalSignature
subjectKeyIdentifier = hash
EOF
  new_key "$1"
  quiet openssl req -x509 -new -config "$PKI/$1.cnf" -key "$PKI/$1.key" -days 3650 \
    -set_serial "0x$(openssl rand -hex 16)" -out "$PKI/$1.crt"
}

# cert NAME SUBJECT EXTENDED_KEY_USAGE [SUBJECT_ALT_NAMES]: a key and a certificate signed by the CA named in
# $CA (default: ca). SUBJECT is "CN=..." optionally followed by "/O=...".
cert() {
  local name=$1 subject=$2 usage=$3 sans=${4:-} ca=${CA:-ca} cn org=""
  cn=${subject%%/*}
  [[ $subject == */O=* ]] && org=${subject#*/O=}
  {
    printf '[req]\nprompt = no\ndistinguished_name = dn\n[dn]\nCN = %s\n' "${cn#CN=}"
    [[ -z $org ]] || printf 'O = %s\n' "$org"
    printf '[ext]\nbasicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\n'
    printf 'extendedKeyUsage = %s\nsubjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n' "$usage"
    [[ -z $sans ]] || printf 'subjectAltName = %s\n' "$sans"
  } >"$PKI/$name.cnf"
  new_key "$name"
  quiet openssl req -new -config "$PKI/$name.cnf" -key "$PKI/$name.key" -out "$PKI/$name.csr"
  quiet openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/$ca.crt" -CAkey "$PKI/$ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -days 365 -extfile "$PKI/$name.cnf" -extensions ext -out "$PKI/$name.crt"
  rm -f "$PKI/$name.csr"
}

make_pki() {
  local sans="" ip name
  mkdir -p "$PKI"
  new_ca ca rktnetes-ca
  for name in "${SAN_DNS[@]}"; do sans+="DNS:$name,"; done
  for ip in "${SAN_IPS[@]}"; do sans+="IP:$ip,"; done
  cert apiserver "CN=kube-apiserver" serverAuth "${sans%,}"
  # etcd uses one certificate as server and, towards its (absent) peers, as client.
  cert etcd "CN=etcd" "serverAuth, clientAuth" "DNS:localhost,IP:127.0.0.1"
  cert apiserver-etcd-client "CN=kube-apiserver-etcd-client" clientAuth
  cert admin "CN=admin/O=system:masters" clientAuth
  cert controller-manager "CN=system:kube-controller-manager" clientAuth
  # The aggregation layer's identity towards extension apiservers, from a CA of its own as a certificate from it
  # can claim to be any user. Without it the controller manager's delegated authentication complains, forever,
  # that the requestheader CA bundle is missing.
  new_ca front-proxy-ca rktnetes-front-proxy-ca
  CA=front-proxy-ca cert front-proxy-client "CN=front-proxy-client" clientAuth

  # Service-account tokens are signed with RSA (RS256), which every OIDC consumer understands.
  quiet openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$PKI/sa.key"
  quiet openssl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub"
}

write_kubeconfig() { # write_kubeconfig FILE CERT_NAME USER: self-contained (certificates embedded)
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: rktnetes
  cluster:
    server: $API_URL
    certificate-authority-data: $(base64 -w0 <"$PKI/ca.crt")
users:
- name: $3
  user:
    client-certificate-data: $(base64 -w0 <"$PKI/$2.crt")
    client-key-data: $(base64 -w0 <"$PKI/$2.key")
contexts:
- name: rktnetes
  context:
    cluster: rktnetes
    user: $3
current-context: rktnetes
EOF
}

# --- commands ----------------------------------------------------------------------------------------------------

lock() { # one up/down at a time; the lock file sits beside the state dir, which gets deleted
  mkdir -p "$(dirname "$STATE")"
  exec 9>"$STATE.lock"
  flock -w 600 9 || die "another cluster.sh up/down has held $STATE.lock for 10 minutes"
}

# Deletes the state dir, but only if it is ours (or empty).
wipe() {
  if [[ -d $STATE && ! -f $MARKER ]] && [[ -n $(ls -A "$STATE") ]]; then
    die "$STATE exists and is not a cluster state dir (no $(basename "$MARKER")); refusing to delete it"
  fi
  rm -rf "$STATE"
}

cmd_up() {
  "$E2E_DIR/build-tools.sh" >&2
  lock
  if [[ $(cat "$STATE/config" 2>/dev/null) == "$CONFIG" ]] && healthy; then
    log "cluster already up"
    echo "$ADMIN_KUBECONFIG"
    return
  fi
  if [[ -f $STATE/config && $(cat "$STATE/config") != "$CONFIG" ]]; then
    log "cluster in $STATE was started with other settings; restarting it from scratch"
  elif [[ -d $STATE ]]; then
    log "cluster in $STATE is not (fully) up; restarting it from scratch"
  fi
  stop_all
  check_ports
  wipe
  local start_time=$SECONDS
  (umask 077 && mkdir -p "$STATE" "$LOGS" "$STATE/etcd" "$STATE/kcm-certs")
  touch "$MARKER"
  log "generating certificates in $PKI"
  (umask 077 && make_pki)
  (
    umask 077 # the kubeconfigs hold client keys
    write_kubeconfig "$ADMIN_KUBECONFIG" admin admin
    write_kubeconfig "$STATE/controller-manager.kubeconfig" controller-manager system:kube-controller-manager
  )
  echo "$CONFIG" >"$STATE/config"

  # etcd speaks TLS with client-certificate auth on both its ports. It skips fsync: this cluster's data is
  # thrown away on every restart anyway, and fsync dominates etcd's latency on slow disks.
  log "starting etcd on 127.0.0.1:$ETCD_CLIENT_PORT"
  GOMEMLIMIT=512MiB start etcd "$TOOLS_BIN/etcd" \
    --name rktnetes \
    --data-dir "$STATE/etcd" \
    --listen-client-urls "https://127.0.0.1:$ETCD_CLIENT_PORT" \
    --advertise-client-urls "https://127.0.0.1:$ETCD_CLIENT_PORT" \
    --listen-peer-urls "https://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "https://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "rktnetes=https://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster-state new \
    --initial-cluster-token rktnetes \
    --cert-file "$PKI/etcd.crt" --key-file "$PKI/etcd.key" \
    --trusted-ca-file "$PKI/ca.crt" --client-cert-auth \
    --peer-cert-file "$PKI/etcd.crt" --peer-key-file "$PKI/etcd.key" \
    --peer-trusted-ca-file "$PKI/ca.crt" --peer-client-cert-auth \
    --unsafe-no-fsync
  wait_for etcd "etcd to be healthy" etcd_healthy

  # The `kubernetes` Service's endpoint reconciler refuses a loopback address (which it would publish to pods);
  # with nothing but loopback to advertise, it is off and that Service has no endpoints. Nothing here needs them
  # until nodes can reach a non-loopback RKTNETES_APISERVER_ADVERTISE.
  local reconciler=lease
  [[ $ADVERTISE == 127.* || $ADVERTISE == ::1 ]] && reconciler=none
  log "starting kube-apiserver on $API_URL"
  GOMEMLIMIT=1GiB start kube-apiserver "$TOOLS_BIN/kube-apiserver" \
    --bind-address "$APISERVER_BIND" \
    --secure-port "$APISERVER_PORT" \
    --advertise-address "$ADVERTISE" \
    --endpoint-reconciler-type "$reconciler" \
    --etcd-servers "https://127.0.0.1:$ETCD_CLIENT_PORT" \
    --etcd-cafile "$PKI/ca.crt" \
    --etcd-certfile "$PKI/apiserver-etcd-client.crt" \
    --etcd-keyfile "$PKI/apiserver-etcd-client.key" \
    --tls-cert-file "$PKI/apiserver.crt" \
    --tls-private-key-file "$PKI/apiserver.key" \
    --client-ca-file "$PKI/ca.crt" \
    --requestheader-client-ca-file "$PKI/front-proxy-ca.crt" \
    --requestheader-allowed-names front-proxy-client \
    --requestheader-username-headers X-Remote-User \
    --requestheader-group-headers X-Remote-Group \
    --requestheader-extra-headers-prefix X-Remote-Extra- \
    --proxy-client-cert-file "$PKI/front-proxy-client.crt" \
    --proxy-client-key-file "$PKI/front-proxy-client.key" \
    --authorization-mode RBAC \
    --service-account-issuer "$SA_ISSUER" \
    --api-audiences "$SA_ISSUER" \
    --service-account-key-file "$PKI/sa.pub" \
    --service-account-signing-key-file "$PKI/sa.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --allow-privileged=true \
    --profiling=false
  wait_for kube-apiserver "kube-apiserver's /readyz" apiserver_ready

  log "starting kube-controller-manager"
  GOMEMLIMIT=512MiB start kube-controller-manager "$TOOLS_BIN/kube-controller-manager" \
    --kubeconfig "$STATE/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$STATE/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$STATE/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 \
    --secure-port "$KCM_PORT" \
    --cert-dir "$STATE/kcm-certs" \
    --service-account-private-key-file "$PKI/sa.key" \
    --root-ca-file "$PKI/ca.crt" \
    --use-service-account-credentials=true \
    --cluster-signing-cert-file "$PKI/ca.crt" \
    --cluster-signing-key-file "$PKI/ca.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --leader-elect=false \
    --profiling=false
  wait_for kube-controller-manager "kube-controller-manager's /healthz" kcm_healthy
  wait_for kube-apiserver "the default namespace" kubectl_admin get namespace default
  # Created by the controller manager's serviceaccount controller; pods cannot be created before it exists.
  wait_for kube-controller-manager "the default ServiceAccount" kubectl_admin -n default get serviceaccount default

  log "cluster up in $((SECONDS - start_time))s; logs in $LOGS"
  echo "$ADMIN_KUBECONFIG"
}

cmd_down() {
  lock
  stop_all
  wipe
  log "cluster down"
}

cmd_status() {
  local name partial=()
  if healthy; then
    echo up
    return 0
  fi
  for name in "${COMPONENTS[@]}"; do
    running "$name" && partial+=("$name")
  done
  ((${#partial[@]} == 0)) || log "partly running: ${partial[*]} (\`up\` restarts it, \`down\` stops it)"
  echo down
  return 1
}

require_up() { healthy || die "the cluster is not up; run: $0 up"; }

cmd_kubeconfig() {
  require_up
  echo "$ADMIN_KUBECONFIG"
}

cmd_env() {
  require_up
  # PATH stays a literal $PATH, to be expanded by the shell that evals this.
  # shellcheck disable=SC2016
  printf 'export KUBECONFIG=%q; export PATH=%q:"$PATH"\n' "$ADMIN_KUBECONFIG" "$TOOLS_BIN"
}

case ${1:-} in
  up | down | status | kubeconfig | env) "cmd_$1" ;;
  *)
    sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0" >&2
    exit 2
    ;;
esac
