#!/usr/bin/env bash
# The README's test command: set up the environment, lint, and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash env/setup.sh
export BENTOML_DO_NOT_TRACK=true DO_NOT_TRACK=true MLFLOW_DISABLE_TELEMETRY=true
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/python -m pytest "$@"
