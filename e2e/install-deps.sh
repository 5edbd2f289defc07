#!/usr/bin/env bash
# Installs the Debian packages the tests and the demo need, when missing. Safe to run again.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

# debootstrap and systemd-container (systemd-nspawn) build and boot the test nodes of e2e/nodes.sh.
packages=(openssl iproute2 jq curl procps containernetworking-plugins debootstrap systemd-container lua5.1)
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
