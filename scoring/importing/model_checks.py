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

from scoring.importing.categorical import feature_columns
from scoring.importing.errors import BrokenRun, UnservableModel
from scoring.stored_model.feature_schema import (
    BOOLEAN_TYPES,
    FLOAT_TYPES,
    INTEGER_TYPES,
    FeatureColumn,
)

BINARY_OBJECTIVES = ("binary", "cross_entropy", "xentropy")


@dataclass(frozen=True)
class CheckedModel:
    booster: lgb.Booster
    features: list[FeatureColumn]
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


def _signature_columns(spec: Model) -> list[tuple[str, str]]:
    if spec.signature is None or spec.signature.inputs is None:
        raise UnservableModel(
            "model has no signature; log it with signature=infer_signature(X, y) to serve it"
        )
    inputs = spec.signature.inputs
    if not inputs.has_input_names():
        raise UnservableModel("model signature has no feature names (tensor-based signature)")
    return [(col.name, col.type.name) for col in inputs.inputs]


def _default_value(column: FeatureColumn) -> Any:
    if column.categories:
        return column.categories[0]
    if column.type in BOOLEAN_TYPES:
        return False
    return 0.0 if column.type in FLOAT_TYPES else 0


def _plain(value: Any) -> Any:
    """A pandas/numpy scalar as JSON would carry it; NaN (pandas' missing value) as None."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def _example_row(spec: Model, local: Path, columns: list[FeatureColumn]) -> dict[str, Any]:
    """First row of the logged input example, for the docs and the service's self-test; a value
    the request contract would refuse (or no example at all) is replaced by a valid one."""
    try:
        example = spec.load_input_example(str(local))
    except Exception:  # an unreadable example only costs the docs their realistic values
        example = None
    row = example.iloc[0].to_dict() if example is not None and hasattr(example, "iloc") else {}
    values = {}
    for column in columns:
        value = _plain(row.get(column.name))
        if column.categories is not None:
            valid = value is None or value in column.categories
        elif column.type in BOOLEAN_TYPES:
            valid = isinstance(value, bool)
        elif column.type in INTEGER_TYPES:
            valid = isinstance(value, int) and not isinstance(value, bool)
        else:
            valid = value is None or (
                isinstance(value, int | float) and not isinstance(value, bool)
            )
        values[column.name] = value if valid else _default_value(column)
    return values


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
    signature = _signature_columns(spec)
    # The native flavour, not pyfunc: pyfunc of an LGBMClassifier returns labels, not
    # the probabilities we serve.
    try:
        native = mlflow.lightgbm.load_model(str(local))
    except Exception as error:
        raise BrokenRun(f"LightGBM model files are incomplete or corrupt: {error}") from error
    booster = _booster_of(native)
    _check_binary(booster)
    if booster.feature_name() != [name for name, _ in signature]:
        raise UnservableModel("signature feature names differ from the booster's feature names")
    columns = feature_columns(booster, signature)
    example = _example_row(spec, local, columns)
    _check_scores_its_example(booster, columns, example)
    return CheckedModel(booster, columns, example)


def _check_scores_its_example(
    booster: lgb.Booster, columns: list[FeatureColumn], example: dict[str, Any]
) -> None:
    """The service's start-up self-test, run here: whatever imports also serves."""
    from scoring.core.contract import FeatureSpec
    from scoring.core.model import ModelCannotServe, score_example
    from scoring.serving.forms.records import application_model

    spec = FeatureSpec.from_metadata([column.to_metadata() for column in columns])
    try:
        score_example(booster, application_model(spec, example), example)
    except ModelCannotServe as error:
        raise UnservableModel(f"the service could not score the model's example: {error}") from None
