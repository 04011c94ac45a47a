"""Write a checked model into the Bento model store, once per (model, threshold)."""

from __future__ import annotations

import hashlib
from typing import Any

import bentoml
import lightgbm as lgb
from bentoml.exceptions import NotFound

BOOSTER_FILE = "model.txt"


def bento_tag(name: str, model_uri: str, threshold: float, model_version: str) -> str:
    """Deterministic, so importing the same model version with the same threshold is a no-op."""
    digest = hashlib.sha256(f"{model_uri}|{threshold!r}".encode()).hexdigest()[:10]
    prefix = f"v{model_version}" if model_version else "run"
    return f"{name}:{prefix}-{digest}"


def existing(tag: str) -> bentoml.Model | None:
    try:
        return bentoml.models.get(tag)
    except NotFound:
        return None


def save_booster(
    tag: str, booster: lgb.Booster, labels: dict[str, str], metadata: dict[str, Any]
) -> bentoml.Model:
    """BentoML writes into a temporary folder and moves it into the store only on success,
    so an interrupted import leaves no half-written model behind."""
    with bentoml.models.create(tag, labels=labels, metadata=metadata) as model:
        # LightGBM's own text format: no pickle, readable by any LightGBM version >= 4.
        booster.save_model(model.path_of(BOOSTER_FILE))
    return bentoml.models.get(tag)
