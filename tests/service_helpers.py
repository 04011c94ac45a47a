"""Helpers shared by the in-process and the real-server service tests."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import bentoml
import lightgbm as lgb
import numpy as np
import pandas as pd
from bentoml.exceptions import NotFound

from loadtest.processes import ROOT, free_port, running
from scoring.stored_model.layout import BOOSTER_FILE


def served_probabilities(model_tag: str, records: list[dict]) -> np.ndarray:
    """The stored model loaded as the service loads it (booster or compiled forest, a
    pipeline's steps first), scoring records validated by the service's request form."""
    from scoring.core.contract import FeatureSpec, records_to_matrix
    from scoring.core.model import ServedModel
    from scoring.serving.forms.records import application_model

    bento_model = bentoml.models.get(model_tag)
    spec = FeatureSpec.from_metadata(bento_model.info.metadata["features"])
    example = json.loads(bento_model.info.metadata["input_example_json"])
    application = application_model(spec, example)
    model = ServedModel.load(bento_model, spec, application, example)
    matrix = records_to_matrix([application.model_validate(row) for row in records])
    return model.scorer.predict(matrix)


def training_style_frame(
    booster: lgb.Booster, records: list[dict], categorical: set[str]
) -> pd.DataFrame:
    """Records as the team's training code held them: a pandas frame in the booster's column
    order, the `categorical` columns as pandas categories (LightGBM maps those onto the
    training categories itself), missing values as NaN."""
    frame = pd.DataFrame.from_records(records, columns=booster.feature_name())
    for name in frame.columns:
        kind = "category" if name in categorical else np.float64
        frame[name] = frame[name].astype(kind)
    return frame


def bento_models(name: str) -> list[str]:
    """The tags of the Bento store's models named `name` (none is not an error)."""
    try:
        return [str(model.tag) for model in bentoml.models.list(name)]
    except NotFound:
        return []


def categories_of(model_tag: str) -> dict[str, list]:
    features = bentoml.models.get(model_tag).info.metadata["features"]
    return {f["name"]: f["categories"] for f in features if f.get("categories") is not None}


def code_matrix(model_tag: str, records: list[dict]) -> np.ndarray:
    """Records as the float64 matrix a compiled forest scores: each category as its code in
    the training categories (pandas' own coding), missing and unseen values as NaN."""
    model = bentoml.models.get(model_tag)
    booster = lgb.Booster(model_file=model.path_of(BOOSTER_FILE))
    frame = pd.DataFrame.from_records(records, columns=booster.feature_name())
    for name, categories in categories_of(model_tag).items():
        codes = pd.Categorical(frame[name], categories=categories).codes.astype(np.float64)
        frame[name] = np.where(codes < 0, np.nan, codes)
    return frame.astype(np.float64).to_numpy()


def reference_probabilities(model_tag: str, records: list[dict]) -> np.ndarray:
    """What LightGBM itself says in-process, from the stored booster, on a training-style
    pandas frame."""
    model = bentoml.models.get(model_tag)
    booster = lgb.Booster(model_file=model.path_of(BOOSTER_FILE))
    frame = training_style_frame(booster, records, set(categories_of(model_tag)))
    return booster.predict(frame)


def names_the_field(body: dict, field: str) -> bool:
    """True when a JSON error body (scoring/serving/edge/refusals.py) points at `field`: as its
    `field` path or a part of it (`AMT_CREDIT` in `applications.0.AMT_CREDIT`), or in one of its
    `detail` entries' location or message."""
    path = str(body.get("field", ""))
    if field in (path, *path.split(".")):
        return True
    return any(
        field in [str(part) for part in detail.get("loc", [])] or field in detail.get("msg", "")
        for detail in body.get("detail", [])
    )


@contextmanager
def serving_one_worker(model_tag: str, bentoml_home: Path, log: Path) -> Iterator[str]:
    """A real `bentoml serve` of `model_tag` with one worker on loopback, until the block
    ends (stopped by its pid); yields its URL."""
    port = free_port()
    env = {
        **os.environ,
        "BENTOML_HOME": str(bentoml_home),
        "SCORING_MODEL_TAG": model_tag,
        "SCORING_WORKERS": "1",
    }
    command = [sys.executable, "-m", "bentoml", "serve", "service:CreditScoring"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--working-dir", str(ROOT)]
    url = f"http://127.0.0.1:{port}"
    with running(command, f"{url}/readyz", log, env=env, timeout_s=120):
        yield url
