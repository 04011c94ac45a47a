#!/usr/bin/env bash
# Creates .venv with the exact versions pinned in env/requirements.lock. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
UV_VERSION=0.13.9
PYTHON=${PYTHON:-python3.11}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
if ! .venv/bin/python -m uv --version 2>/dev/null | grep -q "$UV_VERSION"; then
  .venv/bin/python -m pip install --quiet "uv==$UV_VERSION"
fi
# UV_SYSTEM_CERTS: PyPI may sit behind a TLS-intercepting proxy whose CA is in the system bundle.
# --compile-bytecode: uv installs no .pyc by default, and with PYTHONDONTWRITEBYTECODE set (as on
# the CI machines) every Python process then compiles what it imports from source: measured
# 2026-12-07, `import lightgbm` 7.3 s, each Spark Python worker 6 s before its first row. The
# image compiles them already (BentoML's Dockerfile sets UV_COMPILE_BYTECODE=1).
UV_SYSTEM_CERTS=1 .venv/bin/python -m uv pip sync --quiet --compile-bytecode \
  --python .venv/bin/python env/requirements.lock
# Spark (the portfolio job, scoring/portfolio/) runs on a Java 17 or 21 runtime: found on PATH
# or JAVA_HOME, else installed from Debian's packages when root (as env/containers.sh installs
# podman). Without one, only the Spark tests skip, saying so.
java_major() {
  "$1" -version 2>&1 | sed -n 's/.* version "\([0-9]*\).*/\1/p' | head -n 1
}
spark_java() {
  local candidate major
  for candidate in "${JAVA_HOME:+$JAVA_HOME/bin/java}" "$(command -v java 2>/dev/null)"; do
    [ -n "$candidate" ] && [ -x "$candidate" ] || continue
    major=$(java_major "$candidate")
    if [ "$major" = 17 ] || [ "$major" = 21 ]; then
      echo "$candidate (Java $major)"
      return 0
    fi
  done
  return 1
}
if ! found=$(spark_java); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "env/setup.sh: no Java 17/21 for Spark; installing Debian's openjdk-17-jre-headless" >&2
    apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless >/dev/null || true
  fi
  found=$(spark_java) || found=""
fi
if [ -n "$found" ]; then
  echo "env/setup.sh: Spark's Java: $found"
else
  echo "env/setup.sh: no Java 17/21 (apt-get install openjdk-17-jre-headless): the Spark" \
    "portfolio job cannot run and its tests skip" >&2
fi
echo "env/setup.sh: .venv ready ($(.venv/bin/python --version))"
