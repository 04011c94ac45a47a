# Sourced by env/base_image.sh and env/build_image.sh: pick a container engine and, for podman,
# a private configuration selected by environment variables (nothing written under /etc). See
# README "The OCI image" for why each setting is there.
#   ENGINE=docker|podman   skip the detection
#   ENGINE_DIR=DIR         podman's configuration and storage (default .build/containers)

CONTAINER_TOOLS=(podman runc buildah debootstrap)

# Installs whichever of the tools is missing from Debian's packages; as root only.
install_container_tools() {
  local missing=() tool
  for tool in "${CONTAINER_TOOLS[@]}"; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "no Docker engine answers and ${missing[*]} missing: install them" \
      "(apt-get install ${missing[*]}) or start Docker" >&2
    return 1
  fi
  echo "installing ${missing[*]} from Debian's packages" >&2
  if ! { apt-get update -qq && apt-get install -y -qq "${CONTAINER_TOOLS[@]}" >/dev/null; }; then
    echo "apt-get could not install ${missing[*]}" >&2
    return 1
  fi
}

pick_engine() {
  if [ -z "${ENGINE:-}" ]; then
    if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
      ENGINE=docker
    else
      ENGINE=podman
    fi
  fi
  export ENGINE
  [ "$ENGINE" = podman ] || return 0
  install_container_tools || return 1
  ENGINE_DIR=$(realpath -m "${ENGINE_DIR:-$PWD/.build/containers}")
  mkdir -p "$ENGINE_DIR"
  # runc, not crun: crun fails on hybrid cgroups. Explicit ulimits: podman's default
  # nofile=1048576 is above what a root shell without CAP_SYS_RESOURCE may set. Private libpod
  # state and file locks: by default every podman on the host shares /run/libpod and one lock
  # segment, and a `podman system reset` of another storage then makes this one forget that
  # its containers run (a later `podman rm` leaves them running, orphaned).
  local nofile
  nofile=$(ulimit -Hn)
  [ "$nofile" != unlimited ] || nofile=1048576
  cat >"$ENGINE_DIR/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=32768:32768"]
[engine]
runtime = "runc"
tmp_dir = "$ENGINE_DIR/libpod"
lock_type = "file"
CONF
  cat >"$ENGINE_DIR/storage.conf" <<CONF
[storage]
driver = "overlay"
graphroot = "$ENGINE_DIR/storage"
runroot = "$ENGINE_DIR/run"
CONF
  export ENGINE_DIR
  export CONTAINERS_CONF="$ENGINE_DIR/containers.conf"
  export CONTAINERS_STORAGE_CONF="$ENGINE_DIR/storage.conf"
}
