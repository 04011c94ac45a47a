#!/usr/bin/env bash
# The one command that builds the OCI image: Bento, then `bentoml containerize`.
#   bash env/build_image.sh                    # local base image from Debian's packages
#   BASE_IMAGE=python:3.11-slim-bookworm-with-uv bash env/build_image.sh   # your own base
#   EXPORT=image.oci.tar bash env/build_image.sh   # also write an oci-archive for clusters
# Uses docker where an engine answers, otherwise podman (installed from Debian if missing).
# The model comes from the Bento store in $BENTOML_HOME (run import_model.py first).
set -euo pipefail
cd "$(dirname "$0")/.."
source env/containers.sh
pick_engine
started=$(date +%s)
export BENTOML_DO_NOT_TRACK=true
BENTOML=.venv/bin/bentoml
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
[ -z "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] || revision="$revision-dirty"
source_url=$(git remote get-url origin 2>/dev/null || echo "")
created=$(date -u +%Y-%m-%dT%H:%M:%SZ)
IMAGE=${IMAGE:-localhost/credit-scoring-service:$(git rev-parse --short HEAD 2>/dev/null || echo dev)}

bentofile=bentofile.yaml
if [ -n "${BASE_IMAGE:-}" ]; then
  # One setting swaps the base (it must carry Python 3.11, uv and libgomp1).
  mkdir -p .build
  sed "s|^  base_image: .*|  base_image: $BASE_IMAGE|" bentofile.yaml > .build/bentofile.yaml
  bentofile=.build/bentofile.yaml
elif [ "$ENGINE" = podman ]; then
  bash env/base_image.sh
fi

printf '{"revision": "%s", "build_time": "%s", "source": "%s"}\n' \
  "$revision" "$created" "$source_url" > build_info.json
trap 'rm -f build_info.json' EXIT
bento=$($BENTOML build -f "$bentofile" --output tag . | sed -n 's/^__tag__://p')
labels=$(.venv/bin/python - <<PY
import json, bentoml
m = bentoml.models.get("credit_scoring:latest")
print(json.dumps([str(m.tag), m.info.labels["run_id"], m.info.labels["threshold"]]))
PY
)
model_tag=$(echo "$labels" | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)[0])')
run_id=$(echo "$labels" | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)[1])')
threshold=$(echo "$labels" | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)[2])')

opts=(
  --opt "label=org.opencontainers.image.revision=$revision"
  --opt "label=org.opencontainers.image.created=$created"
  --opt "label=org.opencontainers.image.source=$source_url"
  --opt "label=org.opencontainers.image.title=credit-scoring-service"
  --opt "label=ai.credit-scoring.bento=$bento"
  --opt "label=ai.credit-scoring.model.tag=$model_tag"
  --opt "label=ai.credit-scoring.model.run_id=$run_id"
  --opt "label=ai.credit-scoring.model.threshold=$threshold"
)
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  # PyPI may sit behind a TLS-intercepting proxy: the host's CA bundle, at build time only.
  opts+=(--opt "volume=/etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro")
fi
$BENTOML containerize "$bento" --backend "$ENGINE" --image-tag "$IMAGE" "${opts[@]}"
size=$($ENGINE image inspect "$IMAGE" --format '{{.Size}}')
echo "built $IMAGE from $bento (model $model_tag, run $run_id, threshold $threshold)"
echo "image size $((size / 1024 / 1024)) MiB, build time $(( $(date +%s) - started )) s"
if [ -n "${EXPORT:-}" ]; then
  if [ "$ENGINE" = podman ]; then
    podman save --format oci-archive -o "$EXPORT" "$IMAGE"
  else
    docker save -o "$EXPORT" "$IMAGE"
  fi
  echo "exported $EXPORT ($(( $(stat -c %s "$EXPORT") / 1024 / 1024 )) MiB)"
fi
