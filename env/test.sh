#!/usr/bin/env bash
# The README's test command: set up the environment, lint, and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash env/setup.sh
# The image tests (tests/test_container.py) need podman, runc, buildah and debootstrap: installed
# from Debian's packages when missing and running as root (a no-op once they are there).
# Otherwise those tests skip and say what is missing.
if [ "$(id -u)" = 0 ]; then
  (source env/containers.sh && install_container_tools) ||
    echo "env/test.sh: container tools not installed; the image tests will skip" >&2
  # promtool and the Prometheus server, for the drift rules' tests.
  (source env/prometheus.sh && install_prometheus) ||
    echo "env/test.sh: prometheus not installed; the drift rules' tests will skip" >&2
fi
export BENTOML_DO_NOT_TRACK=true DO_NOT_TRACK=true MLFLOW_DISABLE_TELEMETRY=true
.venv/bin/ruff check .
.venv/bin/ruff format --check .
# Known vulnerabilities in the lock: fails on a finding, skips saying why when unreachable.
bash env/audit.sh
.venv/bin/python -m pytest "$@"
