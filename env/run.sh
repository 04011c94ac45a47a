#!/usr/bin/env bash
# The README's main command: set up the environment, build the embedded demo MLflow store,
# import its production model into the Bento store, and serve it on 127.0.0.1:3000.
#   PORT=3001 bash env/run.sh          another port
#   MLFLOW_TRACKING_URI=http://... bash env/run.sh   import from your own tracking server
set -euo pipefail
cd "$(dirname "$0")/.."
bash env/setup.sh
export BENTOML_DO_NOT_TRACK=true DO_NOT_TRACK=true MLFLOW_DISABLE_TELEMETRY=true
if [ -z "${MLFLOW_TRACKING_URI:-}" ]; then
  .venv/bin/python -m demo_store
fi
# --compile: the forest also as machine code, scored ~4x faster (about 6 s for the demo model)
.venv/bin/python import_model.py --compile
.venv/bin/bentoml models list
exec .venv/bin/bentoml serve service:CreditScoring --host "${HOST:-127.0.0.1}" --port "${PORT:-3000}"
