# Sourced by the image scripts: pick a container engine and, for podman, a private
# configuration (nothing written under /etc). See ../shared/CONTAINERS.md for why each line.
ENGINE_DIR=${ENGINE_DIR:-$PWD/.build/containers}

pick_engine() {
  if [ -n "${ENGINE:-}" ]; then return; fi
  if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    ENGINE=docker
    return
  fi
  if ! command -v podman >/dev/null 2>&1 || ! command -v debootstrap >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ]; then
      echo "no Docker engine and no podman: install podman, runc and debootstrap" >&2
      return 1
    fi
    apt-get update -qq && apt-get install -y -qq podman runc buildah debootstrap >/dev/null
  fi
  ENGINE=podman
  mkdir -p "$ENGINE_DIR"
  # runc, not crun: crun fails on this host's hybrid cgroups. Explicit ulimits: the default
  # nofile=1048576 is above what a root shell without CAP_SYS_RESOURCE may set.
  cat > "$ENGINE_DIR/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=$(ulimit -Hn):$(ulimit -Hn)", "nproc=32768:32768"]
[engine]
runtime = "runc"
tmp_dir = "$ENGINE_DIR/tmp"
CONF
  cat > "$ENGINE_DIR/storage.conf" <<CONF
[storage]
driver = "overlay"
graphroot = "$ENGINE_DIR/storage"
runroot = "$ENGINE_DIR/run"
CONF
  export CONTAINERS_CONF="$ENGINE_DIR/containers.conf"
  export CONTAINERS_STORAGE_CONF="$ENGINE_DIR/storage.conf"
}
