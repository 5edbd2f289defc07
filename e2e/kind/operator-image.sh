#!/usr/bin/env bash
# The operator's image, from the `rktnetes` binary built on this machine: no base image, nothing pulled.
#
# Usage: e2e/kind/operator-image.sh RKTNETES_BINARY [REPOSITORY]
#   Prints the image's reference, REPOSITORY (default rktnetes-operator) tagged with a hash of what it holds, so an
#   unchanged binary keeps its tag (and a release installed with it does not roll).
#
# The image holds the binary, the shared libraries it loads (the C library and the dynamic loader, copied from this
# machine), an /etc/passwd and /etc/group naming root and `nonroot` (65532, as distroless does) and a /tmp. It runs
# as 65532 by default, as the controller's restricted Deployment expects; the agent's DaemonSet asks for root.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib/common.sh
. "$(dirname "$0")/../lib/common.sh"
# shellcheck source=e2e/lib/images.sh
. "$E2E_DIR/lib/images.sh"

(($# >= 1 && $# <= 2)) || die "usage: $0 RKTNETES_BINARY [REPOSITORY]"
binary=$1
repository=${2:-rktnetes-operator}
[[ -x $binary ]] || die "not an executable file: $binary"
"$binary" version >/dev/null || die "$binary does not run"

ref="$repository:kind-$(input_key "$binary" "$0")"
if ! image_exists "$ref"; then
  tree=$(mktemp -d)
  trap 'rm -rf "$tree"' EXIT
  mkdir -p "$tree/usr/local/bin" "$tree/etc" "$tree/tmp"
  chmod 1777 "$tree/tmp"
  install -m 0755 "$binary" "$tree/usr/local/bin/rktnetes"
  shared_libraries "$binary" "$tree"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$tree/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' >"$tree/etc/group"
  # The image must run with nothing but what it holds.
  chroot "$tree" /usr/local/bin/rktnetes version >/dev/null ||
    die "the operator binary does not run in its image (a library missing?)"
  image_from_tree "$ref" "$tree" "USER 65532:65532" 'ENTRYPOINT ["/usr/local/bin/rktnetes"]'
  log "operator image $ref ready ($(docker image inspect -f '{{.Size}}' "$ref" | numfmt --to=iec))"
fi
echo "$ref"
