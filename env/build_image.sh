#!/usr/bin/env bash
# The one command that builds the service's OCI image: the Bento (`bentoml build`), then
# `bentoml containerize`. The model is the newest `credit_scoring` in the Bento store of
# $BENTOML_HOME (import_model.py puts it there); build and containerize both use that home.
#
#   bash env/build_image.sh                          # -> credit-scoring-service:<git short sha>
#   bash env/build_image.sh --export image.oci.tar   # also an oci-archive (or EXPORT=path)
#   BASE_IMAGE=registry.example/python-uv:3.11-bookworm bash env/build_image.sh   # other base
#   IMAGE=credit-scoring-service:candidate bash env/build_image.sh                # other tag
#
# Docker is used where `docker info` answers, otherwise podman (with runc, buildah and
# debootstrap installed from Debian's packages when missing and running as root), configured
# privately under ENGINE_DIR (default .build/containers). Without BASE_IMAGE the base image
# is built from Debian's packages by env/base_image.sh; a BASE_IMAGE must carry Python 3.11,
# uv and libgomp1 (and UV_SYSTEM_CERTS=1 where PyPI sits behind a TLS-intercepting proxy).
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)

fail() {
  echo "env/build_image.sh: $*" >&2
  exit 1
}
usage() { sed -n '2,15s/^# \{0,1\}//p' "$0"; }

export_path=${EXPORT:-}
while [ $# -gt 0 ]; do
  case $1 in
    --export) export_path=${2:?--export needs a path}; shift 2 ;;
    --export=*) export_path=${1#--export=}; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; fail "unknown argument $1" ;;
  esac
done
[ -x .venv/bin/bentoml ] || fail ".venv is missing: run bash env/setup.sh"
BENTOML=.venv/bin/bentoml
export BENTOML_DO_NOT_TRACK=true DO_NOT_TRACK=true
export BENTOML_HOME=${BENTOML_HOME:-$HOME/bentoml}

source env/containers.sh
pick_engine || fail "no container engine available (see above)"
if [ "$ENGINE" = podman ]; then
  echo "engine: podman (configuration and storage in $ENGINE_DIR)"
else
  echo "engine: $ENGINE"
fi

# The model: its tag, run_id and threshold become image labels.
model=$(.venv/bin/python - <<'PY'
import bentoml

try:
    info = bentoml.models.get("credit_scoring:latest").info
except bentoml.exceptions.NotFound:
    raise SystemExit(1) from None
print(info.tag, info.labels.get("run_id", ""), info.labels.get("threshold", ""), sep="\t")
PY
) || fail "no credit_scoring model in the Bento store $BENTOML_HOME: run import_model.py first"
IFS=$'\t' read -r model_tag run_id threshold <<<"$model"

revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  revision="$revision-dirty"
fi
short=$(git rev-parse --short HEAD 2>/dev/null || echo dev)
[[ $revision != *-dirty ]] || short="$short-dirty" # never under a clean commit's tag
# A remote URL may carry credentials (https://user:token@host/...): keep them out of the image.
source_url=$(git remote get-url origin 2>/dev/null | sed -E 's#//[^/@]*@#//#' || true)
created=$(date -u +%Y-%m-%dT%H:%M:%SZ)
IMAGE=${IMAGE:-credit-scoring-service:$short}

# The base image: the one scoring.serving.edge.image.py names, built here from Debian's packages;
# or BASE_IMAGE, through a copy of the bentofile whose docker.base_image overrides that name.
bentofile=bentofile.yaml
base=$(.venv/bin/python -c 'from scoring.serving.edge.image import BASE_IMAGE; print(BASE_IMAGE)')
if [ -n "${BASE_IMAGE:-}" ]; then
  mkdir -p .build
  bentofile=.build/bentofile.yaml
  { cat bentofile.yaml; printf 'docker:\n  base_image: %s\n' "$BASE_IMAGE"; } >"$bentofile"
  base=$BASE_IMAGE
else
  BASE_IMAGE_NAME=$base bash env/base_image.sh || fail "could not build the base image $base"
fi

# Which build is running, for GET /version; only inside the Bento, not left in the checkout.
jq_string() { .venv/bin/python -c 'import json, sys; print(json.dumps(sys.argv[1]))' "$1"; }
trap 'rm -f build_info.json' EXIT
printf '{"revision": %s, "build_time": %s, "source": %s}\n' "$(jq_string "$revision")" \
  "$(jq_string "$created")" "$(jq_string "${source_url:-unknown}")" >build_info.json
bento_started=$(date +%s)
bento=$($BENTOML build -f "$bentofile" --output tag . | sed -n 's/^__tag__://p') || true
[ -n "$bento" ] || fail "bentoml build failed"
rm -f build_info.json
echo "bento $bento (model $model_tag, run $run_id, threshold $threshold)" \
  "in $(($(date +%s) - bento_started)) s"

opts=(
  --opt "label=org.opencontainers.image.title=credit-scoring-service"
  --opt "label=org.opencontainers.image.description=Credit scoring: LightGBM model served by BentoML"
  --opt "label=org.opencontainers.image.revision=$revision"
  --opt "label=org.opencontainers.image.created=$created"
  --opt "label=org.opencontainers.image.base.name=$base"
  --opt "label=ai.credit-scoring.bento=$bento"
  --opt "label=ai.credit-scoring.model.tag=$model_tag"
  --opt "label=ai.credit-scoring.model.run_id=$run_id"
  --opt "label=ai.credit-scoring.model.threshold=$threshold"
)
[ -z "$source_url" ] || opts+=(--opt "label=org.opencontainers.image.source=$source_url")
if [ "$ENGINE" = podman ]; then
  # PyPI may sit behind a TLS-intercepting proxy: the host's CA bundle is mounted for the
  # build steps only, never copied into the image.
  ca=/etc/ssl/certs/ca-certificates.crt
  [ ! -f "$ca" ] || opts+=(--opt "volume=$ca:$ca:ro")
  # A localhost/ base exists only here; podman would otherwise ask https://localhost/v2/.
  # (`--opt pull=never` would become `--pull never`, which podman 4 reads as two arguments.)
  case $base in localhost/*) opts+=(--opt pull-never) ;; esac
fi
image_started=$(date +%s)
$BENTOML containerize "$bento" --backend "$ENGINE" --image-tag "$IMAGE" "${opts[@]}" ||
  fail "bentoml containerize failed"
# podman names a bare tag localhost/NAME; report the name the engine knows.
image=$($ENGINE image inspect "$IMAGE" --format '{{index .RepoTags 0}}' 2>/dev/null || echo "$IMAGE")
size=$($ENGINE image inspect "$IMAGE" --format '{{.Size}}')
echo "image $image: $((size / 1000000)) MB; containerize $(($(date +%s) - image_started)) s," \
  "total $(($(date +%s) - started)) s"

if [ -n "$export_path" ]; then
  if [ "$ENGINE" = podman ]; then
    podman save --quiet --format oci-archive -o "$export_path" "$IMAGE"
  else
    docker save -o "$export_path" "$IMAGE"
  fi || fail "could not export $IMAGE to $export_path"
  echo "exported $export_path: $(($(stat -c %s "$export_path") / 1000000)) MB"
fi
