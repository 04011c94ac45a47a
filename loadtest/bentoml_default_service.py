"""BentoML's default, the baseline: one plain non-batched `@bentoml.api` over the same Bento
model, written as the docs' quick start would, with the same request body as ours.

    SCORING_MODEL_TAG=credit_scoring:latest bentoml serve loadtest.bentoml_default_service:Default
"""

from __future__ import annotations

import os

import bentoml
import lightgbm as lgb
import pandas as pd


@bentoml.service(name="credit_scoring_default")
class Default:
    model = bentoml.models.BentoModel(os.environ.get("SCORING_MODEL_TAG", "credit_scoring:latest"))

    def __init__(self) -> None:
        self.booster = lgb.Booster(model_file=self.model.path_of("model.txt"))
        self.names = self.booster.feature_name()
        features = self.model.info.metadata["features"]
        self.categorical = [f["name"] for f in features if f.get("categories") is not None]
        self.numeric = [name for name in self.names if name not in self.categorical]

    @bentoml.api
    def predict(self, applications: list[dict[str, float | str | None]]) -> list[float]:
        # The quick start's way: a pandas frame, categories as `category` (LightGBM maps them).
        frame = pd.DataFrame.from_records(applications, columns=self.names)
        frame[self.categorical] = frame[self.categorical].astype("category")
        frame[self.numeric] = frame[self.numeric].astype("float64")  # a lone null is no float
        return self.booster.predict(frame).tolist()
