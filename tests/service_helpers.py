"""Helpers shared by the in-process and the real-server service tests."""

from __future__ import annotations

import bentoml
import lightgbm as lgb
import numpy as np

from scoring.stored_model.layout import BOOSTER_FILE


def reference_probabilities(model_tag: str, records: list[dict]) -> np.ndarray:
    """What the model says in-process, straight from the stored booster."""
    model = bentoml.models.get(model_tag)
    booster = lgb.Booster(model_file=model.path_of(BOOSTER_FILE))
    names = booster.feature_name()
    matrix = np.array([[row[name] for name in names] for row in records], dtype=np.float64)
    return booster.predict(matrix)


def names_the_field(body: dict, field: str) -> bool:
    """True when a JSON error body points at `field`: in a validation error's location or
    message, or as the guard's `field`."""
    if body.get("field") == field:
        return True
    return any(
        field in [str(part) for part in detail.get("loc", [])] or field in detail.get("msg", "")
        for detail in body.get("detail", [])
    )
