#!/usr/bin/env bash
# Test machines for the node end-to-end tier: Debian roots booted with systemd-nspawn, each with its own systemd,
# D-Bus, network namespace (behind a host bridge), rkt-api.service running the project's rkt stand-in, the real
# CNI plugins, and the rktnetes agent's unit (started once it has a kubeconfig). Machine plumbing only: making them
# cluster nodes (Node objects, the agents' tokens and kubeconfigs) is the Rust harness's (e2e/harness:
# `rktnetes-e2e join`, and the tests). Everything lives under $RKTNETES_CACHE/nodes.
#
# Usage: e2e/nodes.sh up N [--rkt-version I=VERSION]... | exec NODE -- CMD... | status | host-address | down
#   up N         replaces whatever nodes exist with N fresh ones, rktnetes-node-1 .. rktnetes-node-N, node i at
#                10.213.0.(10+i), and waits until each has booted. Prints the node names on stdout, one a line;
#                everything else goes to stderr. The Debian root is debootstrapped once (about a minute) and cached.
#     --rkt-version I=VERSION    the rkt version node I's stand-in reports (RKT_STANDIN_VERSION of its
#                                rkt-api.service; default 1.30.0; repeatable)
#   exec NODE -- CMD...          runs CMD as root inside NODE (its name or its index) with a clean environment
#                                (PATH, HOME, LANG, TERM); stdin, stdout, stderr and the exit status pass through
#   status                       one line per node: name, running or stopped, address; exit 1 if any is stopped
#   host-address                 the address the nodes reach this host (and kube-apiserver) at
#   down                         stops every node (cleanly, then by force), deletes their roots and removes the
#                                bridge; harmless when nothing runs
# `up` and `down` also clean up what a killed run left: stale pid files, orphaned systemd-nspawn processes and
# containers, mounts.
#
# Settings (environment):
#   RKTNETES_BIN_DIR         where the binaries `rktnetes` and `rkt` (the stand-in) are (default target/debug);
#                            they are bind-mounted read-only into each node at `up`, so after a rebuild run `up`
#                            again
#   RKTNETES_NODE_BRIDGE     the host bridge (default rktnetes0)
#   RKTNETES_NODE_NETWORK    its /24 (default 10.213.0.0/24; the host takes .1)
#   RKTNETES_NODE_SUITE      the Debian release of the nodes (default: this host's, so that binaries built here
#                            find the same libc there)
#   RKTNETES_DEBIAN_MIRROR   where debootstrap downloads from (default: the Debian mirror apt uses here)
#   RKTNETES_NODE_ROOT_MODE  how each node gets its own root: overlay (an overlayfs over the cached root, instant),
#                            copy (cp -a --reflink=auto), or auto (overlay where the kernel allows it; default)
#   RKTNETES_NODE_TIMEOUT    seconds to wait for the nodes to boot (default 120)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
# shellcheck source=lib/debian.sh
. "$E2E_DIR/lib/debian.sh"

BIN_DIR=${RKTNETES_BIN_DIR:-$REPO_DIR/target/debug}
ROOT_MODE=${RKTNETES_NODE_ROOT_MODE:-auto}
TIMEOUT=${RKTNETES_NODE_TIMEOUT:-120}
DEFAULT_RKT_VERSION=1.30.0
NODE_PREFIX=rktnetes-node-
NODE_FILES="$E2E_DIR/node"
ROOTFS_DIR="$RKTNETES_CACHE/rootfs"
# Marks NODES_DIR as ours, so that a mistyped RKTNETES_CACHE can never make `down` delete something else.
MARKER="$NODES_DIR/.rktnetes-nodes"
# Every node runs in a cgroup of its own, below this one at the top of each hierarchy systemd-nspawn uses. Two
# nspawns in the same cgroup put their containers in the same `payload` cgroup, and then each container's
# systemd manages the other's services too. It also finds the processes of a node whose nspawn was killed.
CGROUP_NAME=rktnetes-nodes
# What goes into the node root besides debootstrap's minimal base. curl and procps are for people and tests
# looking around in a node.
ROOT_PACKAGES=(systemd systemd-sysv dbus containernetworking-plugins iproute2 iptables ca-certificates curl procps)
NODE_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

[[ $NODE_NETWORK =~ ^([0-9]{1,3}\.){3}0/24$ ]] || die "RKTNETES_NODE_NETWORK must be a /24 like 10.213.0.0/24: '$NODE_NETWORK'"
[[ $TIMEOUT =~ ^[0-9]+$ ]] || die "RKTNETES_NODE_TIMEOUT is not a number of seconds: '$TIMEOUT'"
[[ $ROOT_MODE == @(auto|overlay|copy) ]] || die "RKTNETES_NODE_ROOT_MODE must be auto, overlay or copy: '$ROOT_MODE'"

node_ip() { echo "${NODE_NETWORK%.*}.$((10 + $1))"; }

# The node names that have a state dir, in index order.
node_names() {
  local dir
  for dir in "$NODES_DIR/$NODE_PREFIX"*/; do
    [[ -d $dir ]] && basename "$dir"
  done | sort -t- -k3 -n
}

# A node's name from its name or its index.
node_name() {
  local name=$1
  [[ $name =~ ^[0-9]+$ ]] && name=$NODE_PREFIX$name
  [[ -d $NODES_DIR/$name ]] || die "no node named $name (see: $0 status)"
  echo "$name"
}

# --- processes ---------------------------------------------------------------------------------------------------

alive() { # a zombie is dead too (it lingers until its parent reaps it)
  local stat
  stat=$(ps -o stat= -p "$1" 2>/dev/null) && [[ $stat != Z* ]]
}

# Whether a pid is a systemd-nspawn running a node root of ours. Pid files can be stale and pids get reused, so a
# pid alone proves nothing.
ours() {
  local args
  alive "$1" || return 1
  args=$(tr '\0' '\n' <"/proc/$1/cmdline" 2>/dev/null) || return 1
  [[ $(basename "${args%%$'\n'*}") == systemd-nspawn && $args == *$'\n'"--directory=$NODES_DIR/"* ]]
}

nspawn_pid() { # the running nspawn of a node
  local pid
  pid=$(cat "$NODES_DIR/$1.pid" 2>/dev/null) && [[ $pid =~ ^[0-9]+$ ]] && ours "$pid" && echo "$pid"
}

# The pid of a node's init: the child of its nspawn that lives in a pid namespace of its own (while the
# container is being set up, nspawn has another child, in its own pid namespace).
init_pid() {
  local nspawn child
  nspawn=$(nspawn_pid "$1") || return 1
  for child in $(pgrep -P "$nspawn"); do
    if [[ $(readlink "/proc/$child/ns/pid") != "$(readlink "/proc/$nspawn/ns/pid")" ]]; then
      echo "$child"
      return 0
    fi
  done
  return 1
}

# Every systemd-nspawn running a root under NODES_DIR, with or without a pid file.
all_nspawns() {
  local pid
  for pid in $(pgrep -x systemd-nspawn); do
    if ours "$pid"; then echo "$pid"; fi
  done
}

# The cgroup hierarchies systemd-nspawn places a container in: cgroup v2, and v1's name=systemd on a hybrid host.
cgroup_mounts() {
  awk '{
    for (i = 7; i <= NF && $i != "-"; i++) {}
    if ($(i + 1) == "cgroup2" || ($(i + 1) == "cgroup" && $(i + 3) ~ /(^|,)name=systemd(,|$)/)) print $5
  }' /proc/self/mountinfo
}

# Every process left in our cgroups: the containers of nspawns that were killed (their init outlives them).
cgroup_pids() {
  local mnt
  for mnt in $(cgroup_mounts); do
    [[ -d $mnt/$CGROUP_NAME ]] && find "$mnt/$CGROUP_NAME" -name cgroup.procs -exec cat {} +
  done | sort -un
}

# Waits up to SECONDS for the pids to exit; prints those still alive.
wait_gone() {
  local seconds=$1 pid left i
  shift
  for ((i = 0; i <= seconds * 10; i++)); do
    left=()
    for pid; do
      if alive "$pid"; then left+=("$pid"); fi
    done
    ((${#left[@]})) || return 0
    sleep 0.1
  done
  echo "${left[@]}"
}

# Stops every node (those in pid files and orphans), then whatever their containers left, and deletes their state;
# the console logs stay until the next `up`, for a post-mortem.
teardown_nodes() {
  local pids=() pid left name mnt
  mapfile -t pids < <(
    for name in $(node_names); do nspawn_pid "$name" || true; done
    all_nspawns
  )
  mapfile -t pids < <(printf '%s\n' "${pids[@]}" | sed '/^$/d' | sort -un)
  if ((${#pids[@]})); then
    # SIGTERM makes systemd-nspawn power its container off, cleanly; all at once, as a shutdown takes a while.
    log "stopping ${#pids[@]} node(s)"
    kill -TERM "${pids[@]}" 2>/dev/null || true
    left=$(wait_gone 30 "${pids[@]}")
    if [[ -n $left ]]; then
      log "systemd-nspawn $left did not stop within 30 s; killing it"
      # shellcheck disable=SC2086 # a list of pids
      kill -KILL $left 2>/dev/null || true
    fi
  fi
  # A killed nspawn leaves its container running; our cgroups still hold it.
  mapfile -t pids < <(cgroup_pids)
  if ((${#pids[@]})); then
    log "killing ${#pids[@]} leftover node process(es)"
    kill -KILL "${pids[@]}" 2>/dev/null || true
    left=$(wait_gone 10 "${pids[@]}")
    [[ -z $left ]] || die "processes $left survived SIGKILL"
  fi
  for mnt in $(cgroup_mounts); do
    if [[ -d $mnt/$CGROUP_NAME ]]; then
      find "$mnt/$CGROUP_NAME" -depth -type d -exec rmdir {} + 2>/dev/null || true
    fi
  done
  if [[ -d $NODES_DIR ]]; then
    unmount_under "$NODES_DIR"
    for name in $(node_names); do
      rm -rf --one-file-system "${NODES_DIR:?}/$name"
      rm -f "$NODES_DIR/$name.pid"
    done
  fi
}

# --- the node root -----------------------------------------------------------------------------------------------

# What every node has in common, done once on the cached root.
prepare_root() {
  local root=$1
  # Each node gets a machine id of its own (written by `up`); the image must not carry one.
  : >"$root/etc/machine-id"
  rm -f "$root/var/lib/dbus/machine-id"
  ln -s /etc/machine-id "$root/var/lib/dbus/machine-id"
  # Nodes never install packages; the downloaded .debs and indexes would only make each copy bigger.
  find "$root/var/cache/apt/archives" "$root/var/lib/apt/lists" -type f -delete
  # systemd-networkd gives host0 the node's address, from a file `up` writes.
  chroot "$root" systemctl enable --quiet systemd-networkd.service
  # Housekeeping timers (apt downloads, file system checks) would only wake up at random times in a test, and
  # nobody logs in on the console.
  chroot "$root" systemctl mask --quiet apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer \
    e2scrub_all.timer e2scrub_reap.service fstrim.timer systemd-pstore.service console-getty.service getty@tty1.service
  mkdir -p "$root/etc/systemd/journald.conf.d" "$root/etc/systemd/system.conf.d"
  printf '[Journal]\nStorage=volatile\nRuntimeMaxUse=16M\n' >"$root/etc/systemd/journald.conf.d/10-rktnetes-e2e.conf"
  # A service that ignores SIGTERM holds up a node's shutdown for 10 s, not the default 90 s (`down` waits 30 s).
  printf '[Manager]\nDefaultTimeoutStopSec=10s\n' >"$root/etc/systemd/system.conf.d/10-rktnetes-e2e.conf"
}

# Builds the Debian root once; it is rebuilt when the suite, the package list or prepare_root change.
ensure_root() {
  cached_debian_root "$ROOTFS_DIR/$1" "$1" prepare_root "${ROOT_PACKAGES[@]}"
}

# Gives a node its own root at DIR/root: an overlay over the cached root (its changes in DIR/upper), or a copy.
# Prints the mode it used.
make_node_root() {
  local lower=$1 dir=$2 mode=$3
  mkdir -p "$dir/root"
  if [[ $mode != copy ]]; then
    mkdir -p "$dir/upper" "$dir/work"
    if mount -t overlay overlay -o "lowerdir=$lower,upperdir=$dir/upper,workdir=$dir/work" "$dir/root" 2>/dev/null; then
      echo overlay
      return 0
    fi
    [[ $mode == auto ]] || die "cannot mount an overlay at $dir/root (RKTNETES_NODE_ROOT_MODE=overlay)"
    rm -rf "$dir/upper" "$dir/work"
  fi
  rmdir "$dir/root"
  cp -a --reflink=auto "$lower" "$dir/root"
  echo copy
}

# The files that make a node itself: identity, address, the units and their per-node settings.
configure_node() {
  local root=$1 index=$2 name=$3 rkt_version=$4 ip
  ip=$(node_ip "$index")
  echo "$name" >"$root/etc/hostname"
  printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n%s\t%s\n' "$ip" "$name" >"$root/etc/hosts"
  tr -d - </proc/sys/kernel/random/uuid >"$root/etc/machine-id"
  # Sorts before the image's 80-container-host0.network, which would ask for DHCP.
  mkdir -p "$root/etc/systemd/network"
  cat >"$root/etc/systemd/network/10-host0.network" <<EOF
[Match]
Name=host0

[Network]
Address=$ip/24
Gateway=$NODE_HOST_IP
DHCP=no
LinkLocalAddressing=no
IPv6AcceptRA=no
EOF
  install -m 0644 "$NODE_FILES/rkt-api.service" "$NODE_FILES/rktnetes-agent.service" "$root/etc/systemd/system/"
  mkdir -p "$root/etc/systemd/system/multi-user.target.wants" "$root/etc/systemd/system/rkt-api.service.d"
  ln -sf ../rkt-api.service "$root/etc/systemd/system/multi-user.target.wants/rkt-api.service"
  printf '[Service]\nEnvironment=RKT_STANDIN_VERSION=%s\n' "$rkt_version" \
    >"$root/etc/systemd/system/rkt-api.service.d/10-rkt-version.conf"
  mkdir -p "$root/etc/rktnetes"
  # Checks every 3 s (30 s by default) so that the tests see a stopped rkt API service quickly.
  printf 'NODE_NAME=%s\nRKTNETES_CHECK_INTERVAL=3\n' "$name" >"$root/etc/rktnetes/agent.env"
}

# Boots a node in the background, in its own session (so it outlives this script and a caller's process-group
# kill) and its own cgroups; the pid file is written by the process that becomes systemd-nspawn.
# fd 9 is the lock and must not stay held by the node.
boot_node() {
  local name=$1 dir=$NODES_DIR/$1 cgroups=() mnt i
  for mnt in $(cgroup_mounts); do
    mkdir -p "$mnt/$CGROUP_NAME/$name"
    cgroups+=("$mnt/$CGROUP_NAME/$name/cgroup.procs")
  done
  rm -f "$NODES_DIR/$name.pid"
  # shellcheck disable=SC2016 # expanded by the inner bash
  setsid bash -c '
    pidfile=$1; shift
    while [[ $1 != -- ]]; do echo $$ >"$1"; shift; done
    shift
    echo $$ >"$pidfile" && exec "$@"' bash "$NODES_DIR/$name.pid" "${cgroups[@]}" -- \
    systemd-nspawn --boot --register=no --keep-unit \
    --directory="$dir/root" --machine="$name" --network-bridge="$NODE_BRIDGE" \
    --bind-ro="$BIN_DIR/rktnetes:/usr/local/bin/rktnetes" --bind-ro="$BIN_DIR/rkt:/usr/bin/rkt" \
    --console=read-only --link-journal=no \
    </dev/null >"$NODES_DIR/$name.log" 2>&1 9>&- &
  for ((i = 0; i < 50; i++)); do
    [[ -s $NODES_DIR/$name.pid ]] && return 0
    sleep 0.1
  done
  die "$name did not start; see $NODES_DIR/$name.log"
}

# Runs a command in a node's namespaces, as root, with a clean environment.
node_exec() {
  local name=$1 init
  shift
  init=$(init_pid "$name") || die "$name is not running"
  nsenter --target "$init" --mount --uts --ipc --net --pid --root --wd -- \
    env -i PATH="$NODE_PATH" HOME=/root LANG=C.UTF-8 ${TERM:+TERM="$TERM"} "$@"
}

# Waits until every node's systemd has finished booting and answers on D-Bus.
wait_booted() {
  local deadline=$((SECONDS + TIMEOUT)) name state
  for name; do
    while :; do
      state=""
      if init_pid "$name" >/dev/null; then
        state=$(node_exec "$name" systemctl is-system-running 2>/dev/null) || true
        if [[ $state == running || $state == degraded ]] && node_exec "$name" busctl get-property \
          org.freedesktop.systemd1 /org/freedesktop/systemd1 org.freedesktop.systemd1.Manager Version >/dev/null 2>&1; then
          break
        fi
      elif ! alive "$(cat "$NODES_DIR/$name.pid")"; then # (until it has exec'd, the pid is a bash)
        tail -n 30 "$NODES_DIR/$name.log" >&2
        die "$name exited while booting; its console is in $NODES_DIR/$name.log"
      fi
      if ((SECONDS >= deadline)); then
        tail -n 30 "$NODES_DIR/$name.log" >&2
        die "$name did not finish booting within ${TIMEOUT}s (systemd: ${state:-not answering}); see $NODES_DIR/$name.log"
      fi
      sleep 0.2
    done
    if [[ $state == degraded ]]; then
      log "$name is degraded; failed units: $(node_exec "$name" systemctl list-units --failed --plain --no-legend | awk '{print $1}' | xargs)"
    fi
  done
}

# --- the host bridge ---------------------------------------------------------------------------------------------

ensure_bridge() {
  local other
  if [[ ! -d /sys/class/net/$NODE_BRIDGE ]]; then
    log "creating bridge $NODE_BRIDGE ($NODE_HOST_IP/24)"
    ip link add name "$NODE_BRIDGE" type bridge
  fi
  [[ -d /sys/class/net/$NODE_BRIDGE/bridge ]] || die "$NODE_BRIDGE exists and is not a bridge (set RKTNETES_NODE_BRIDGE)"
  other=$(ip -o -4 addr show to "$NODE_NETWORK" | awk -v bridge="$NODE_BRIDGE" '$2 != bridge {print $2}' | sort -u | xargs)
  [[ -z $other ]] || die "$NODE_NETWORK is already used on $other (set RKTNETES_NODE_NETWORK)"
  ip addr replace "$NODE_HOST_IP/24" dev "$NODE_BRIDGE"
  ip link set dev "$NODE_BRIDGE" up
}

remove_bridge() {
  if [[ -d /sys/class/net/$NODE_BRIDGE/bridge ]]; then
    ip link delete dev "$NODE_BRIDGE"
    log "removed bridge $NODE_BRIDGE"
  fi
}

# --- commands ----------------------------------------------------------------------------------------------------

lock() { # one up/down at a time
  mkdir -p "$NODES_DIR"
  exec 9>"$NODES_DIR.lock"
  flock -w 600 9 || die "another nodes.sh has held $NODES_DIR.lock for 10 minutes"
  if [[ ! -f $MARKER && -n $(ls -A "$NODES_DIR") ]]; then
    die "$NODES_DIR exists and is not a nodes dir (no $(basename "$MARKER")); refusing to touch it"
  fi
  touch "$MARKER"
}

cmd_up() {
  local count="" versions=() i name dir suite mode start
  while (($#)); do
    case $1 in
      --rkt-version)
        [[ ${2:-} =~ ^([0-9]+)=(.+)$ ]] || die "--rkt-version takes NODE_INDEX=VERSION: '${2:-}'"
        versions[BASH_REMATCH[1]]=${BASH_REMATCH[2]}
        shift
        ;;
      -*) die "unknown option: $1" ;;
      *)
        [[ -z $count ]] || die "unexpected argument: $1"
        count=$1
        ;;
    esac
    shift
  done
  if ! [[ $count =~ ^[0-9]+$ ]] || ((count < 1 || count > 200)); then
    die "usage: $0 up N [--rkt-version I=VERSION]... (N from 1 to 200)"
  fi
  for i in "${!versions[@]}"; do
    ((i >= 1 && i <= count)) || die "--rkt-version $i=${versions[i]}: there is no node $i"
  done
  for name in rktnetes rkt; do
    [[ -x $BIN_DIR/$name ]] || die "$BIN_DIR/$name is missing; build it (cargo build) or point RKTNETES_BIN_DIR at it"
  done
  for name in systemd-nspawn nsenter ip; do
    command -v "$name" >/dev/null || die "$name is not installed; run e2e/install-deps.sh"
  done
  [[ $(id -u) == 0 ]] || die "test nodes need root"
  suite=${RKTNETES_NODE_SUITE:-$(host_suite)} || die "this host is not Debian; set RKTNETES_NODE_SUITE to a Debian release"

  lock
  start=$SECONDS
  # If anything below fails, no half-made node stays behind (their console logs do).
  trap 'if (($? != 0)); then log "up failed; removing its nodes"; teardown_nodes; fi' EXIT
  teardown_nodes
  rm -f "$NODES_DIR/$NODE_PREFIX"*.log
  ensure_root "$suite"
  ensure_bridge

  local names=()
  for ((i = 1; i <= count; i++)); do
    name=$NODE_PREFIX$i
    dir=$NODES_DIR/$name
    mode=$(make_node_root "$ROOTFS_DIR/$suite" "$dir" "$ROOT_MODE")
    configure_node "$dir/root" "$i" "$name" "${versions[i]:-$DEFAULT_RKT_VERSION}"
    names+=("$name")
  done
  log "node roots made ($mode) in $((SECONDS - start))s; booting ${names[*]}"
  for name in "${names[@]}"; do
    boot_node "$name"
  done
  wait_booted "${names[@]}"
  trap - EXIT
  log "$count node(s) up in $((SECONDS - start))s; consoles in $NODES_DIR/<name>.log"
  printf '%s\n' "${names[@]}"
}

cmd_exec() {
  local name
  if (($# < 3)) || [[ $2 != -- ]]; then die "usage: $0 exec NODE -- CMD..."; fi
  name=$(node_name "$1")
  shift 2
  node_exec "$name" "$@"
}

cmd_status() {
  local name state all_running=0 names
  mapfile -t names < <(node_names)
  ((${#names[@]})) || log "no nodes"
  for name in "${names[@]}"; do
    state=stopped
    if init_pid "$name" >/dev/null; then state=running; else all_running=1; fi
    printf '%s\t%s\t%s\n' "$name" "$state" "$(node_ip "${name#"$NODE_PREFIX"}")"
  done
  return "$all_running"
}

cmd_host_address() { echo "$NODE_HOST_IP"; }

cmd_down() {
  local start=$SECONDS
  lock
  teardown_nodes
  remove_bridge
  log "nodes down in $((SECONDS - start))s"
}

case ${1:-} in
  up | exec | status | host-address | down)
    cmd=${1//-/_}
    shift
    "cmd_$cmd" "$@"
    ;;
  *)
    sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0" >&2
    exit 2
    ;;
esac
