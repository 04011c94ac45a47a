#!/usr/bin/env bash
# Builds the local base image localhost/credit-scoring-base:bookworm from Debian's packages,
# with no registry: Python 3.11 (+ venv), CA certificates, libgomp1 (LightGBM's OpenMP) and the
# project's pinned uv binary, so the image build needs PyPI only. No compilers. Skipped when the
# image exists with the same uv; FORCE=1 rebuilds. Needs root (debootstrap). About a minute.
set -euo pipefail
cd "$(dirname "$0")/.."
source env/containers.sh
pick_engine
BASE=${BASE_IMAGE_NAME:-$(.venv/bin/python -c 'from scoring.serving.edge.image import BASE_IMAGE; print(BASE_IMAGE)')}
SUITE=bookworm # Python 3.11, the version the lock and the Bento are made for

uv_bin=$(.venv/bin/python -c 'import uv; print(uv.find_uv_bin())')
uv_version=$("$uv_bin" --version | awk '{print $2}')
label='{{index .Config.Labels "ai.credit-scoring.base.uv"}}'
have=$($ENGINE image inspect "$BASE" --format "$label" 2>/dev/null || true)
if [ "${FORCE:-0}" != 1 ] && [ "$have" = "$uv_version" ]; then
  echo "base image $BASE exists (uv $uv_version)"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "env/base_image.sh: debootstrap needs root; or set BASE_IMAGE to an image with" \
    "Python 3.11, uv and libgomp1" >&2
  exit 1
fi
if ! command -v debootstrap >/dev/null; then
  apt-get update -qq && apt-get install -y -qq debootstrap >/dev/null
fi
# The host's Debian mirror (deb822 or one-line format), else Debian's own.
mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null ||
  awk '/^deb / {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
mirror=${mirror:-http://deb.debian.org/debian}

started=$(date +%s)
rootfs=$(mktemp -d "${TMPDIR:-/tmp}/credit-scoring-base-XXXXXX")
trap 'rm -rf "$rootfs" "$rootfs.log"' EXIT
echo "debootstrap $SUITE from $mirror into $rootfs"
if ! debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,libgomp1 \
  "$SUITE" "$rootfs" "$mirror" >"$rootfs.log" 2>&1; then
  tail -20 "$rootfs.log" >&2
  echo "env/base_image.sh: debootstrap failed (log above)" >&2
  exit 1
fi
install -m 0755 "$uv_bin" "$rootfs/usr/local/bin/uv"
# No resolver config or package lists baked in; docs and locales are dead weight in a server
# image (the copyright files stay).
rm -rf "$rootfs/etc/resolv.conf" "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
  "$rootfs"/var/cache/debconf/*-old "$rootfs"/var/log/* "$rootfs"/usr/share/man/* \
  "$rootfs"/usr/share/locale/* "$rootfs"/usr/share/info/*
find "$rootfs/usr/share/doc" -type f ! -name copyright -delete
# An imported image has no configuration: give it the usual PATH (BentoML's Dockerfile appends
# to it) and a UTF-8 locale. UV_SYSTEM_CERTS: uv trusts the system CA store (Debian's, or the
# host's bundle mounted over it at build time for a TLS-intercepting proxy) instead of its own.
quiet=()
[ "$ENGINE" = podman ] && quiet=(--quiet)
tar -C "$rootfs" -c . | $ENGINE import "${quiet[@]}" \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV UV_SYSTEM_CERTS=1' \
  --change "LABEL ai.credit-scoring.base.uv=$uv_version" \
  --change "LABEL org.opencontainers.image.description=\"Debian $SUITE minbase: python3, libgomp1, uv\"" \
  - "$BASE" >/dev/null
size=$($ENGINE image inspect "$BASE" --format '{{.Size}}')
echo "base image $BASE: $((size / 1000000)) MB, built in $(($(date +%s) - started)) s"
