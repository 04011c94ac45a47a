"""BentoML's default, the baseline: one plain non-batched `@bentoml.api` over the same Bento
model, written as the docs' quick start would, with the same request body as ours.

    SCORING_MODEL_TAG=credit_scoring:latest bentoml serve loadtest.bentoml_default_service:Default
"""

from __future__ import annotations

import os

import bentoml
import lightgbm as lgb
import numpy as np


@bentoml.service(name="credit_scoring_default")
class Default:
    model = bentoml.models.BentoModel(os.environ.get("SCORING_MODEL_TAG", "credit_scoring:latest"))

    def __init__(self) -> None:
        self.booster = lgb.Booster(model_file=self.model.path_of("model.txt"))
        self.names = self.booster.feature_name()

    @bentoml.api
    def predict(self, applications: list[dict[str, float | None]]) -> list[float]:
        rows = np.array([[a[n] for n in self.names] for a in applications], dtype=np.float64)
        return self.booster.predict(rows).tolist()
