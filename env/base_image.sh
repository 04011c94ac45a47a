#!/usr/bin/env bash
# Builds localhost/credit-scoring-base:bookworm from Debian's packages, no registry needed:
# Python 3.11, the venv module, CA certificates, libgomp1 (LightGBM's OpenMP) and uv. No
# compilers. Skipped when the image exists. Needs root (debootstrap) and podman.
set -euo pipefail
cd "$(dirname "$0")/.."
source env/containers.sh
pick_engine
BASE=${BASE_IMAGE_NAME:-localhost/credit-scoring-base:bookworm}
if $ENGINE image exists "$BASE" 2>/dev/null; then
  echo "base image $BASE exists"
  exit 0
fi
MIRROR=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
ROOTFS=$(mktemp -d /tmp/credit-base-XXXX)
trap 'rm -rf "$ROOTFS"' EXIT
echo "debootstrap bookworm into $ROOTFS (about a minute)"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,libgomp1 \
  bookworm "$ROOTFS" "${MIRROR:-http://deb.debian.org/debian}" >/dev/null
# uv is one static binary: take the pinned one from the project's venv, no download needed.
install -m 0755 "$(.venv/bin/python -c 'import uv; print(uv.find_uv_bin())')" "$ROOTFS/usr/local/bin/uv"
rm -rf "$ROOTFS/etc/resolv.conf" "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin \
  "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/locale/*
# UV_SYSTEM_CERTS: uv (run by BentoML's Dockerfile) trusts the CA bundle the build mounts.
tar -C "$ROOTFS" -c . | $ENGINE import --change "ENV UV_SYSTEM_CERTS=1" - "$BASE" >/dev/null
echo "base image $BASE: $($ENGINE image inspect "$BASE" --format '{{.Size}}') bytes"
