"""What the service module does when it is imported, in one named step: BentoML's patches, the
settings, the worker count, and the request schema read from the stored model's metadata."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import bentoml
from pydantic import BaseModel

from scoring import bentoml_patches
from scoring.serving.features import FeatureSpec, application_model
from scoring.serving.settings import Settings


@dataclass(frozen=True)
class ServiceSetup:
    settings: Settings
    workers: int
    spec: FeatureSpec
    example: dict[str, Any]
    application: type[BaseModel]  # one application as a pydantic model, fields in model order


def prepare_service() -> ServiceSetup:
    """Call once, at service import, before the service class is built: the patches must be in
    place before BentoML builds its dispatchers and sockets."""
    settings = Settings.from_env()
    workers = settings.worker_count()
    bentoml_patches.install(workers)
    # The schema comes from the model's own signature, read from the store's model.yaml (cheap);
    # the model itself loads in the service's __init__.
    metadata = bentoml.models.get(settings.model_tag).info.metadata
    spec = FeatureSpec.from_metadata(metadata["features"])
    example = json.loads(metadata.get("input_example_json", "{}"))
    return ServiceSetup(settings, workers, spec, example, application_model(spec, example))
