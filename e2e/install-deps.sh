#!/usr/bin/env bash
# Installs the Debian packages the tests and the demo need, when missing. Safe to run again.
#
#   e2e/install-deps.sh        what the local lanes need
#   e2e/install-deps.sh kind   also what the kind lane needs: a C compiler and static C library (pause), and
#                              Debian's docker.io when no Docker engine answers (a user's own Docker is used as is)
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

# debootstrap and systemd-container (systemd-nspawn) build and boot the test nodes of e2e/nodes.sh; gpg signs the
# tests' rkt releases, as rkt's were.
packages=(openssl iproute2 jq curl procps containernetworking-plugins debootstrap systemd-container lua5.1 gpg)
if [[ ${1:-} == kind ]]; then
  packages+=(gcc libc6-dev)
  if ! timeout 20 docker info >/dev/null 2>&1 && ! command -v dockerd >/dev/null; then
    packages+=(docker.io)
  fi
elif (($#)); then
  die "usage: $0 [kind]"
fi
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  [[ $(id -u) == 0 ]] || die "installing ${missing[*]} needs root"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
for tool in cargo go; do
  command -v "$tool" >/dev/null || die "$tool is not on PATH: this machine needs Rust and Go"
done
