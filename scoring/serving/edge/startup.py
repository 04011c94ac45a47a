"""What the service module does when it is imported, in one named step: BentoML's patches, the
settings, the worker count, and the request schema read from the stored model's metadata. In
the `bentoml serve` process itself (before any worker starts) the model is also loaded and
self-tested once: a model the service cannot serve stops it there, with one line naming the
model and the reason, instead of workers failing and being restarted over and over."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any, NoReturn

import bentoml
from bentoml.exceptions import NotFound
from pydantic import BaseModel

from scoring import bentoml_patches
from scoring.core.contract import FeatureSpec
from scoring.core.model import ModelCannotServe, ServedModel
from scoring.serving.batching.bulk_lane import in_bulk_lane
from scoring.serving.edge import log_privacy
from scoring.serving.edge.arrow_route import PATH as ARROW_PATH
from scoring.serving.edge.challenger import checked_challenger
from scoring.serving.edge.refusals import refusal
from scoring.serving.edge.settings import Settings, SettingsError
from scoring.serving.edge.version import version_app
from scoring.serving.forms.records import application_model
from scoring.serving.monitoring.metrics import count_unseen_category

# `bentoml serve` and the container exit with this when the model cannot be served.
CANNOT_SERVE_EXIT_CODE = 3
# The service's routes besides its APIs (BentoML's probes and metrics, ours): the request
# metrics label each by its path, and any other path as one (bentoml_patches/request_metrics.py).
SERVICE_PATHS = (
    ARROW_PATH,
    *(route.path for route in version_app.routes),  # GET /version, GET /monitoring
    *("/livez", "/readyz", "/healthz", "/metrics"),  # BentoML's own
)

# The answer to a request the HTTP parser cannot read (bentoml_patches/malformed_http.py).
MALFORMED_HTTP = refusal("body", "Invalid HTTP request received.", "malformed_http")


@dataclass(frozen=True)
class ServiceSetup:
    settings: Settings
    workers: int
    spec: FeatureSpec
    example: dict[str, Any]
    application: type[BaseModel]  # one application as a pydantic model, fields in model order


def cannot_start(what: str, reason: str) -> NoReturn:
    print(f"credit_scoring: cannot serve {what}: {reason}", file=sys.stderr, flush=True)
    raise SystemExit(CANNOT_SERVE_EXIT_CODE)


def prepare_service() -> ServiceSetup:
    """Call once, at service import, before the service class is built: the patches must be in
    place before BentoML builds its dispatchers and sockets."""
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        cannot_start("with these settings", str(error))
    # First: whatever is logged from here on keeps applicants' values out.
    log_privacy.install(settings.log_format)
    workers = settings.worker_count()
    sys.setswitchinterval(settings.gil_switch_ms / 1000)
    bentoml_patches.install(
        workers,
        settings.bulk_rows,
        offload=in_bulk_lane,
        offload_bytes=settings.bulk_body_bytes,
        known_paths=SERVICE_PATHS,
        malformed_http_body=json.dumps(MALFORMED_HTTP).encode(),
    )
    try:
        bento_model = bentoml.models.get(settings.model_tag)
    except NotFound:
        cannot_start(settings.model_tag, "no such model in the Bento store; import it first")
    tag = str(bento_model.tag)
    try:
        # The schema comes from the model's own columns, read from the store's model.yaml (cheap);
        # the model itself loads in the service's __init__.
        metadata = bento_model.info.metadata
        spec = FeatureSpec.from_metadata(metadata["features"])
        example = json.loads(metadata.get("input_example_json", "{}"))
    except (KeyError, TypeError, ValueError) as error:
        cannot_start(tag, f"its metadata is not this version's ({error!r}); re-import the model")
    application = application_model(
        spec, example, settings.unseen_category, on_unseen=count_unseen_category
    )
    if bentoml.server_context.worker_index is None:
        # The serving process (or an in-process test): prove the model serves before workers.
        try:
            ServedModel.load(bento_model, spec, application, example)
        except ModelCannotServe as error:
            cannot_start(tag, str(error))
        if settings.challenger:
            try:
                checked_challenger(settings.challenger, spec, settings.reason_count)
            except ModelCannotServe as error:
                cannot_start(f"with challenger {settings.challenger}", str(error))
    return ServiceSetup(settings, workers, spec, example, application)
