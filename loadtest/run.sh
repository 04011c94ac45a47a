#!/usr/bin/env bash
# One command for a headless Locust run (settings in loadtest/locust.conf).
#   bash loadtest/run.sh                                  starts `bentoml serve` on 127.0.0.1:3000
#   HOST=http://127.0.0.1:3000 bash loadtest/run.sh       any running server, e.g. the container
#   bash loadtest/run.sh --users 64 --run-time 2m         extra flags go to locust
# Exit code 1 when a request failed or p99 exceeded SCORING_SLO_P99_MS (default 50).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p loadtest/reports
export BENTOML_DO_NOT_TRACK=true PYTHONPATH="$PWD"
server_pid=""
if [ -z "${HOST:-}" ]; then
  HOST=http://127.0.0.1:3000
  .venv/bin/bentoml serve service:CreditScoring --host 127.0.0.1 --port 3000 \
    > loadtest/reports/serve.log 2>&1 &
  server_pid=$!
  trap 'kill "$server_pid" 2>/dev/null; wait "$server_pid" 2>/dev/null || true' EXIT
  for _ in $(seq 120); do
    curl -fs "$HOST/readyz" >/dev/null 2>&1 && break
    sleep 0.5
  done
fi
.venv/bin/locust --config loadtest/locust.conf --host "$HOST" "$@"
