# Container images made without a registry and without `docker build`: from a directory tree (docker import), or
# as a new layer of files on an image of ours (docker create, cp, commit). Works the same on Docker 20.10 and on
# current engines, and never pulls: every base is an image made here. Sourced, not run; needs lib/common.sh.
# shellcheck shell=bash

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

# input_key FILE_OR_STRING...: a short hash of what an image is made of (file contents, or the strings themselves
# when they are not files), for its tag, so that an unchanged input finds its image and a changed one rebuilds.
input_key() {
  local input
  for input; do
    if [[ -f $input ]]; then
      printf 'file %s ' "$(basename "$input")"
      sha256sum <"$input"
    else
      printf 'value %s\n' "$input"
    fi
  done | sha256sum | cut -c1-16
}

# image_from_tree REF DIR [CHANGE...]: an image whose single layer is DIR (owners and modes as they are there),
# with Dockerfile-style CHANGEs (ENV, ENTRYPOINT, USER ...).
image_from_tree() {
  local ref=$1 dir=$2 args=() change
  shift 2
  for change; do args+=(--change "$change"); done
  tar --numeric-owner --xattrs -C "$dir" -c . | docker import "${args[@]}" - "$ref" >/dev/null ||
    die "docker import of $dir as $ref failed"
}

# image_with_files REF BASE DIR [CHANGE...]: BASE with the tree DIR copied over its root as one more layer, and
# BASE's configuration (its entrypoint and command too, which the container made for the copy would replace).
image_with_files() {
  local ref=$1 base=$2 dir=$3 container args=() change entrypoint command
  shift 3
  entrypoint=$(docker image inspect -f '{{json .Config.Entrypoint}}' "$base") || die "there is no image $base"
  command=$(docker image inspect -f '{{json .Config.Cmd}}' "$base")
  [[ $entrypoint == null ]] && entrypoint='[]'
  [[ $command == null ]] && command='[]'
  args=(--change "ENTRYPOINT $entrypoint" --change "CMD $command")
  for change; do args+=(--change "$change"); done
  container=$(docker create --entrypoint /bin/true "$base") || die "cannot create a container of $base"
  if ! tar --numeric-owner -C "$dir" -c . | docker cp - "$container:/" ||
    ! docker commit "${args[@]}" "$container" "$ref" >/dev/null; then
    docker rm -f "$container" >/dev/null 2>&1
    die "cannot add $dir to $base as $ref"
  fi
  docker rm -f "$container" >/dev/null
}

# shared_libraries BINARY DEST: the shared libraries BINARY loads (the dynamic loader too), copied to the same paths
# under DEST, so that it runs in an image that has nothing else.
shared_libraries() {
  local binary=$1 dest=$2 library
  for library in $(ldd "$binary" | grep -o '/[^ ]*'); do
    mkdir -p "$dest$(dirname "$library")"
    cp -L "$library" "$dest$library"
  done
}
