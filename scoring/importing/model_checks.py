"""Download an MLflow model and prove it is servable: a LightGBM binary classifier with a
signature whose features match the booster's."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import mlflow
from mlflow.models import Model

from scoring.importing.errors import BrokenRun, UnservableModel
from scoring.stored_model.signature_types import INTEGER_TYPES

BINARY_OBJECTIVES = ("binary", "cross_entropy", "xentropy")


@dataclass(frozen=True)
class Feature:
    name: str
    type: str  # MLflow signature type: double, float, long, integer, boolean


@dataclass(frozen=True)
class CheckedModel:
    booster: lgb.Booster
    features: list[Feature]
    input_example: dict[str, Any]


def download_model(model_uri: str, destination: Path, tracking_uri: str) -> Path:
    try:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=model_uri,
            dst_path=str(destination),
            tracking_uri=tracking_uri,
            registry_uri=tracking_uri,
        )
    except Exception as error:  # a missing file, a dropped connection: the artifact is unusable
        reason = str(error).splitlines()[0][:200]
        raise BrokenRun(f"cannot download model {model_uri}: {reason}") from error
    return Path(local)


def _booster_of(native: object) -> lgb.Booster:
    if isinstance(native, lgb.LGBMClassifier):
        if native.n_classes_ != 2:
            raise UnservableModel(f"classifier has {native.n_classes_} classes, not 2 (binary)")
        return native.booster_
    if isinstance(native, lgb.Booster):
        return native
    kind = type(native).__name__
    raise UnservableModel(f"model is a {kind}, not a LightGBM binary classifier")


def _check_binary(booster: lgb.Booster) -> None:
    objective = str(booster.params.get("objective", "")) or booster.dump_model().get(
        "objective", ""
    )
    if (
        not objective.split()[0].startswith(BINARY_OBJECTIVES)
        or booster.num_model_per_iteration() != 1
    ):
        raise UnservableModel(f"LightGBM objective is {objective!r}, not binary classification")


def _features(spec: Model) -> list[Feature]:
    if spec.signature is None or spec.signature.inputs is None:
        raise UnservableModel(
            "model has no signature; log it with signature=infer_signature(X, y) to serve it"
        )
    inputs = spec.signature.inputs
    if not inputs.has_input_names():
        raise UnservableModel("model signature has no feature names (tensor-based signature)")
    return [Feature(col.name, col.type.name) for col in inputs.inputs]


def _example_row(spec: Model, local: Path, features: list[Feature]) -> dict[str, Any]:
    """First row of the logged input example (NaN as None), for docs and the self-test."""
    try:
        example = spec.load_input_example(str(local))
    except Exception:
        example = None
    if example is None or not hasattr(example, "iloc"):
        return {f.name: 0 if f.type in INTEGER_TYPES else 0.0 for f in features}
    row = example.iloc[0].to_dict()
    return {
        key: (
            None
            if isinstance(value, float) and math.isnan(value)
            else value.item()
            if hasattr(value, "item")
            else value
        )
        for key, value in row.items()
    }


def check_model(local: Path) -> CheckedModel:
    try:
        spec = Model.load(str(local))
    except Exception as error:
        raise BrokenRun(f"downloaded model has no readable MLmodel file: {error}") from error
    if "lightgbm" not in spec.flavors:
        flavors = ", ".join(sorted(spec.flavors)) or "none"
        raise UnservableModel(
            f"model is not LightGBM (flavors: {flavors}); cannot serve it natively"
        )
    features = _features(spec)
    # The native flavour, not pyfunc: pyfunc of an LGBMClassifier returns labels, not
    # the probabilities we serve.
    try:
        native = mlflow.lightgbm.load_model(str(local))
    except Exception as error:
        raise BrokenRun(f"LightGBM model files are incomplete or corrupt: {error}") from error
    booster = _booster_of(native)
    _check_binary(booster)
    names = [f.name for f in features]
    if booster.feature_name() != names:
        raise UnservableModel("signature feature names differ from the booster's feature names")
    return CheckedModel(booster, features, _example_row(spec, local, features))
