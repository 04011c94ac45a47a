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
UV_SYSTEM_CERTS=1 .venv/bin/python -m uv pip sync --quiet --python .venv/bin/python env/requirements.lock
echo "env/setup.sh: .venv ready ($(.venv/bin/python --version))"
