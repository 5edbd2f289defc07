#!/usr/bin/env bash
# The Docker engine of the kind lane: the user's own when one answers, else one this script starts (Debian's
# docker.io, its state under the project cache) and stops again.
#
# Usage: e2e/kind/engine.sh up | env | down | status
#   up      makes sure an engine answers. When `docker info` already works (DOCKER_HOST, the default socket), that
#           engine is used as it is and nothing is started. Otherwise dockerd starts with its own data root
#           ($RKTNETES_CACHE/docker: images built here survive between runs), exec root, pid file and socket, and
#           `up` waits for it. Prints `export DOCKER_HOST=...` for the engine to use (empty when the default one
#           answers).
#   env     prints the same line, for an engine `up` found or started
#   down    stops the engine if this script started it (its containers with it); leaves a user's engine alone
#   status  says which engine the lane uses, and exits 1 when none answers
#
# Where the capability bounding set lacks CAP_SYS_RESOURCE (some sandboxes and CI runners: see `CapBnd` in
# /proc/self/status), Docker's `--privileged` containers cannot start ("unable to apply caps"); the engine started
# here then runs its containers through e2e/kind/runc-without-sys-resource, which drops that one capability from
# what a container asks for. Nothing changes on a machine whose bounding set is whole.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib/common.sh
. "$(dirname "$0")/../lib/common.sh"

ENGINE_DIR="$RKTNETES_CACHE/docker"
# Sockets have a short length limit, so the run-time files live under /run, not under the cache.
RUN_DIR=${RKTNETES_DOCKER_RUN_DIR:-/run/rktnetes-docker}
SOCKET="$RUN_DIR/docker.sock"
PID_FILE="$RUN_DIR/dockerd.pid"
LOG_FILE="$ENGINE_DIR/dockerd.log"
# Written when this script started the engine; `down` stops only such an engine.
STARTED_MARK="$RUN_DIR/started-by-rktnetes"
CAP_SYS_RESOURCE=24

answers() { timeout 20 docker info >/dev/null 2>&1; }
ours_answers() { [[ -S $SOCKET ]] && DOCKER_HOST="unix://$SOCKET" answers; }

# Whether this process may hold CAP_SYS_RESOURCE at all.
bounding_set_has_sys_resource() {
  local mask
  mask=$(awk '/^CapBnd:/ {print $2}' /proc/self/status)
  (((16#$mask >> CAP_SYS_RESOURCE) & 1))
}

print_env() {
  if ours_answers; then
    echo "export DOCKER_HOST=unix://$SOCKET"
  elif answers; then
    echo "# the lane uses the Docker engine that already answers"
  else
    die "no Docker engine answers; run: $0 up"
  fi
}

cmd_up() {
  if ours_answers || answers; then
    print_env
    return 0
  fi
  command -v dockerd >/dev/null || die "dockerd is not installed; run e2e/install-deps.sh kind (Debian's docker.io)"
  command -v docker >/dev/null || die "the docker command is not installed; run e2e/install-deps.sh kind"
  mkdir -p "$ENGINE_DIR/data" "$RUN_DIR/exec"
  local config="$RUN_DIR/daemon.json"
  if bounding_set_has_sys_resource; then
    echo '{}' >"$config"
  else
    log "this machine's capability bounding set lacks CAP_SYS_RESOURCE: privileged containers run through runc-without-sys-resource"
    jq -n --arg wrapper "$E2E_DIR/kind/runc-without-sys-resource" \
      '{runtimes: {"rktnetes-runc": {path: $wrapper}}, "default-runtime": "rktnetes-runc"}' >"$config"
  fi
  log "starting a Docker engine (data in $ENGINE_DIR, socket $SOCKET, log $LOG_FILE)"
  # setsid: the engine outlives this script and is not part of its process group.
  setsid dockerd --config-file "$config" --data-root "$ENGINE_DIR/data" --exec-root "$RUN_DIR/exec" \
    --pidfile "$PID_FILE" --host "unix://$SOCKET" >>"$LOG_FILE" 2>&1 </dev/null &
  touch "$STARTED_MARK"
  local i
  for ((i = 0; i < 120; i++)); do
    if ours_answers; then
      print_env
      return 0
    fi
    sleep 0.5
  done
  tail -n 20 "$LOG_FILE" >&2
  die "the Docker engine did not answer within 60s; see $LOG_FILE"
}

cmd_down() {
  [[ -f $STARTED_MARK ]] || return 0
  local pid i
  pid=$(cat "$PID_FILE" 2>/dev/null || true)
  if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
    log "stopping the Docker engine this lane started (pid $pid)"
    if ours_answers; then
      # Containers first, so that their mounts and network namespaces go with them.
      DOCKER_HOST="unix://$SOCKET" docker ps -q | xargs -r env DOCKER_HOST="unix://$SOCKET" docker rm -f >/dev/null 2>&1 || true
    fi
    kill "$pid"
    for ((i = 0; i < 60; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.5
    done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  fi
  rm -f "$STARTED_MARK" "$SOCKET" "$PID_FILE"
}

cmd_status() {
  if ours_answers; then
    echo "the engine this lane started: unix://$SOCKET"
  elif answers; then
    echo "the engine that answers the docker command: ${DOCKER_HOST:-the default socket}"
  else
    echo "no Docker engine answers"
    return 1
  fi
}

case ${1:-} in
  up) cmd_up ;;
  env) print_env ;;
  down) cmd_down ;;
  status) cmd_status ;;
  *) die "usage: $0 up | env | down | status" ;;
esac
