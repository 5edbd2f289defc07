# Debian roots built with debootstrap, cached under the project cache: the kind lane's images (e2e/kind). The nspawn
# nodes' root is the Rust harness's (e2e/harness/src/machines/debian.rs). Sourced, not run; needs lib/common.sh.
# shellcheck shell=bash

# This machine's Debian release (bookworm ...); fails elsewhere.
host_suite() {
  local id codename
  id=$(sed -n 's/^ID=//p' /etc/os-release 2>/dev/null | tr -d '"') || true
  codename=$(sed -n 's/^VERSION_CODENAME=//p' /etc/os-release 2>/dev/null | tr -d '"') || true
  [[ $id == debian && -n $codename ]] || return 1
  echo "$codename"
}

unmount_under() { # every mount below a directory, deepest first
  local target
  findmnt -rn -o TARGET | awk -v dir="$1/" 'index($0, dir) == 1' | sort -r | while read -r target; do
    # findmnt escapes blanks in paths as \x20
    target=$(printf '%b' "$target")
    umount "$target" 2>/dev/null || umount --lazy "$target" || die "cannot unmount $target"
  done
}

# The Debian mirror apt uses on this machine for the suite: the first source, one-line or deb822 style, that
# serves it (not the security archive, which has its own suites); Debian's own redirector if none does.
apt_mirror() {
  local suite=$1 file uri=""
  for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f $file ]] || continue
    # deb [option=value ...] URI SUITE COMPONENT...
    uri=$(awk -v suite="$suite" '$1 == "deb" {
      i = 2
      if ($i ~ /^\[/) { while (i < NF && $i !~ /\]$/) i++; i++ }
      if ($(i + 1) == suite) { print $i; exit }
    }' "$file")
    [[ -z $uri ]] || break
  done
  for file in /etc/apt/sources.list.d/*.sources; do
    [[ -z $uri && -f $file ]] || continue
    uri=$(awk -v suite="$suite" 'BEGIN { RS = ""; FS = "\n" } {
      types = uris = suites = ""; enabled = "yes"
      for (i = 1; i <= NF; i++) {
        if ($i ~ /^#/) continue
        split($i, kv, /:[ \t]*/)
        value = substr($i, length(kv[1]) + 2); sub(/^[ \t]+/, "", value)
        if (kv[1] == "Types") types = value
        else if (kv[1] == "URIs") uris = value
        else if (kv[1] == "Suites") suites = value
        else if (kv[1] == "Enabled") enabled = tolower(value)
      }
      if (enabled != "no" && (" " types " ") ~ / deb / && (" " suites " ") ~ (" " suite " ")) {
        split(uris, uri, /[ \t]+/); print uri[1]; exit
      }
    }' "$file")
  done
  echo "${uri:-http://deb.debian.org/debian}"
}

# cached_debian_root ROOT SUITE PREPARE PACKAGE...: a minimal Debian SUITE with PACKAGEs at ROOT, then the function
# PREPARE run on it (with the root's path). Built once: it is rebuilt when the suite, the packages or PREPARE's
# code change (RKTNETES_DEBIAN_MIRROR overrides the mirror). A build that fails or is killed leaves the old root.
cached_debian_root() {
  local root=$1 suite=$2 prepare=$3 stamp want mirror log
  shift 3
  stamp=$root.stamp
  want="suite=$suite packages=$* prepare=$(declare -f "$prepare" | sha256sum | cut -c1-16)"
  if [[ -d $root && $(cat "$stamp" 2>/dev/null) == "$want" ]]; then
    return 0
  fi
  command -v debootstrap >/dev/null || die "debootstrap is not installed; run e2e/install-deps.sh"
  mirror=${RKTNETES_DEBIAN_MIRROR:-$(apt_mirror "$suite")}
  log "building a Debian $suite root from $mirror into $root (about a minute, once)"
  mkdir -p "$(dirname "$root")"
  log=$root.debootstrap.log
  # A debootstrap that died half-way can leave /proc and /sys mounted in its target.
  unmount_under "$root.tmp"
  rm -rf --one-file-system "$root.tmp"
  if ! debootstrap --variant=minbase --include="$(IFS=,; echo "$*")" "$suite" "$root.tmp" "$mirror" >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    unmount_under "$root.tmp"
    die "debootstrap failed; see $log"
  fi
  "$prepare" "$root.tmp"
  rm -f "$stamp"
  rm -rf --one-file-system "$root"
  mv "$root.tmp" "$root"
  echo "$want" >"$stamp"
  log "Debian root ready: $root ($(du -sh "$root" | cut -f1))"
}
