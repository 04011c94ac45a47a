"""Download an MLflow model (or a model file) and prove it is servable: a LightGBM binary
classifier whose request contract (the MLflow signature, or the booster's own features) matches
the booster."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import mlflow
from mlflow.models import Model

from scoring.importing import artifact_files, booster_contract, model_forms, pipelines
from scoring.importing.booster_contract import booster_signature
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
    model_source: str = "mlflow-lightgbm"
    """mlflow-lightgbm, mlflow-sklearn, or artifact:PATH."""
    serialization: str = "lightgbm-text"
    """How the model was read: lightgbm-text, skops, pickle, cloudpickle or joblib."""
    contract_source: str = booster_contract.SIGNATURE
    """Where the request contract came from: the MLflow signature or the booster."""
    pipeline: pipelines.ServedPipeline | None = None
    """A Pipeline's steps before the classifier; `features` are then the pipeline's input."""

    @property
    def predictor(self) -> Any:
        """What scores the contract's matrix: the booster, or the steps then the booster."""
        return self.booster if self.pipeline is None else self.pipeline.predictor(self.booster)


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


def _example_row(spec: Model | None, local: Path, columns: list[FeatureColumn]) -> dict[str, Any]:
    """First row of the logged input example, for the docs and the service's self-test; a value
    the request contract would refuse (or no example at all) is replaced by a valid one."""
    try:
        example = spec.load_input_example(str(local)) if spec is not None else None
    except Exception:  # an unreadable example only costs the docs their realistic values
        example = None
    row = example.iloc[0].to_dict() if example is not None and hasattr(example, "iloc") else {}
    values = {}
    for column in columns:
        value = _plain(row.get(column.name))
        if column.categories is not None:
            valid = value in column.categories or (value is None and not column.required)
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


def check_model(
    local: Path, allow_pickle: bool = False, schema_from_model: bool = False
) -> CheckedModel:
    """An MLflow model folder: its LightGBM model found from MLmodel, refused before loading
    when it is not LightGBM or would need unpickling without --allow-pickle."""
    try:
        spec = Model.load(str(local))
    except Exception as error:
        raise BrokenRun(f"downloaded model has no readable MLmodel file: {error}") from error
    model_file = model_forms.mlflow_model_file(local, spec)
    model_forms.check_before_loading(model_file, allow_pickle)
    signature = None if schema_from_model else _signature_columns(spec)
    read = model_forms.read_model(model_file, allow_pickle)
    booster = read.booster
    _check_binary(booster)
    if read.pipeline is not None:
        return _checked_pipeline(read.pipeline, booster, signature, spec, local, model_file)
    if signature is None:
        signature, contract = booster_signature(booster), booster_contract.FROM_MODEL
    else:
        contract = booster_contract.SIGNATURE
    if booster.feature_name() != [name for name, _ in signature]:
        raise UnservableModel("signature feature names differ from the booster's feature names")
    columns = feature_columns(booster, signature)
    example = _example_row(spec, local, columns)
    _check_scores_its_example(booster, columns, example)
    return CheckedModel(
        booster, columns, example, model_file.source, model_file.serialization, contract
    )


def check_artifact(local: Path, artifact_path: str, allow_pickle: bool = False) -> CheckedModel:
    """A model file named by --artifact: no MLmodel, so no signature; the contract is the
    booster's own."""
    model_file = artifact_files.sniff(local, artifact_path)
    read = model_forms.read_model(model_file, allow_pickle)
    booster = read.booster
    _check_binary(booster)
    if read.pipeline is not None:
        return _checked_pipeline(read.pipeline, booster, None, None, local, model_file)
    columns = feature_columns(booster, booster_signature(booster))
    example = _example_row(None, local, columns)
    _check_scores_its_example(booster, columns, example)
    return CheckedModel(
        booster,
        columns,
        example,
        model_file.source,
        model_file.serialization,
        booster_contract.FROM_ARTIFACT,
    )


def _checked_pipeline(
    pipeline: Any,
    booster: lgb.Booster,
    signature: list[tuple[str, str]] | None,
    spec: Model | None,
    local: Path,
    model_file: model_forms.ModelFile,
) -> CheckedModel:
    """A Pipeline: the contract is its input (the signature, else the columns it was fitted
    on), its steps stored to run before the booster."""
    steps = pipelines.check_steps(pipeline)
    if signature is not None:
        contract = booster_contract.SIGNATURE
    elif spec is not None:
        contract = booster_contract.PIPELINE_FROM_MODEL
    else:
        contract = booster_contract.PIPELINE_FROM_ARTIFACT
    if signature is None:
        signature = pipelines.inferred_signature(steps)
    columns = pipelines.input_columns(steps, signature)
    example = _example_row(spec, local, columns)
    served = pipelines.served_pipeline(pipeline, booster, columns, example)
    columns = list(served.preprocessing.columns)
    _check_scores_its_example(served.predictor(booster), columns, example)
    return CheckedModel(
        booster,
        columns,
        example,
        model_file.source,
        model_file.serialization,
        contract,
        served,
    )


def _check_scores_its_example(
    booster: Any, columns: list[FeatureColumn], example: dict[str, Any]
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
