"""The served model: loaded from the Bento store and proven able to score, the same way in the
`bentoml serve` process before any worker starts (so a model it cannot serve stops it once,
with one line) and in each worker."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bentoml
import lightgbm as lgb
import numpy as np
from pydantic import BaseModel

from scoring.core.contract import FeatureSpec, records_to_matrix
from scoring.core.preprocessing import (
    PipelineForest,
    Preprocessing,
    PreprocessingError,
    load_steps,
    owners_from_names,
)
from scoring.stored_model import compiled
from scoring.stored_model.feature_schema import columns_from_metadata
from scoring.stored_model.layout import (
    BOOSTER_FILE,
    CHECKSUMS_KEY,
    COMPILED_FILE,
    PREPROCESSING_FILE,
    PROBE_FILE,
    file_sha256,
)
from scoring.stored_model.pipeline_steps import PIPELINE_KEY
from scoring.stored_model.provenance import Provenance


class ModelCannotServe(RuntimeError):  # noqa: N818 - what the operator reads
    """The stored model cannot be served as it is; the message says why and what to do."""


@dataclass(frozen=True)
class ServedModel:
    tag: str
    provenance: Provenance
    booster: lgb.Booster
    scorer: Any  # the compiled forest or the booster, both called like Booster.predict
    predictor: str
    metadata: Mapping[str, Any]
    preprocessing: Preprocessing | None = None
    """A Pipeline's steps before its classifier: rows (the contract's matrix, input columns)
    pass through them to the booster's features. None for a model served on its features."""

    @classmethod
    def load(
        cls,
        bento_model: bentoml.Model,
        spec: FeatureSpec,
        application: type[BaseModel],
        example: Mapping[str, Any],
    ) -> ServedModel:
        tag = str(bento_model.tag)
        try:
            provenance = Provenance.from_labels(bento_model.info.labels)
        except ValueError as error:
            raise ModelCannotServe(str(error)) from None
        _check_files(bento_model)
        try:
            booster = lgb.Booster(model_file=bento_model.path_of(BOOSTER_FILE))
        except lgb.basic.LightGBMError as error:
            reason = str(error).splitlines()[0][:200]
            raise ModelCannotServe(
                f"{BOOSTER_FILE} is unreadable ({reason}); re-import the model"
            ) from None
        metadata = bento_model.info.metadata
        preprocessing = _preprocessing(bento_model, metadata, booster)
        if preprocessing is None and tuple(booster.feature_name()) != spec.names:
            raise ModelCannotServe(
                "the booster's features differ from the stored feature list; re-import the model"
            )
        scorer, predictor = _scorer(Path(bento_model.path), booster)
        if preprocessing is not None:
            scorer, predictor = PipelineForest(preprocessing, scorer), f"pipeline, then {predictor}"
        model = cls(tag, provenance, booster, scorer, predictor, metadata, preprocessing)
        model.self_test(application, example)
        return model

    def self_test(self, application: type[BaseModel], example: Mapping[str, Any]) -> None:
        score_example(self.scorer, application, example)

    def contributions(self, rows: np.ndarray, threads: int) -> np.ndarray:
        """TreeSHAP on the booster (the compiled forest was checked against it): one column per
        contract column (a pipeline's features folded onto their input column), then the base
        value."""
        if self.preprocessing is None:
            return self.booster.predict(rows, pred_contrib=True, num_threads=threads)
        features = self.preprocessing.transform(rows)
        contributions = self.booster.predict(features, pred_contrib=True, num_threads=threads)
        return self.preprocessing.fold(contributions)


def score_example(predictor: Any, application: type[BaseModel], example: Mapping[str, Any]) -> None:
    """Score the model's own example as a request would be scored: the service's self-test,
    also run by the importer, so that whatever imports also serves."""
    try:
        row = application.model_validate(example)
    except ValueError as error:
        reason = str(error).splitlines()[0][:200]
        raise ModelCannotServe(
            f"its example is not a valid request ({reason}); re-import the model"
        ) from None
    probability = predictor.predict(records_to_matrix([row]))
    if not np.all((probability >= 0) & (probability <= 1)):
        raise ModelCannotServe(f"it scores its example {probability}, not a probability")


def _preprocessing(
    bento_model: bentoml.Model, metadata: Mapping[str, Any], booster: lgb.Booster
) -> Preprocessing | None:
    """A pipeline's stored steps, read trusting only the served steps (never unpickled)."""
    pipeline = metadata.get(PIPELINE_KEY)
    if not pipeline:
        return None
    try:
        columns = tuple(columns_from_metadata(metadata["features"]))
        owners = owners_from_names(pipeline["inputs_of_features"], columns)
        if len(owners) != booster.num_feature():
            raise PreprocessingError(
                f"{len(owners)} features are mapped to input columns, the booster has "
                f"{booster.num_feature()}"
            )
        steps = load_steps(Path(bento_model.path_of(PREPROCESSING_FILE)).read_bytes())
    except (PreprocessingError, KeyError, OSError) as error:
        raise ModelCannotServe(f"its pipeline cannot be served ({error}); re-import it") from None
    return Preprocessing(steps, columns, owners)


def _check_files(bento_model: bentoml.Model) -> None:
    """Each model file as the import wrote it: a truncated or altered file is refused here,
    before LightGBM's parser (which can abort the process on one) ever reads it."""
    for name, expected in bento_model.info.metadata.get(CHECKSUMS_KEY, {}).items():
        path = Path(bento_model.path_of(name))
        if not path.exists():
            raise ModelCannotServe(f"{name} is missing from the stored model; re-import it")
        if file_sha256(path) != expected:
            raise ModelCannotServe(f"{name} differs from what was imported (corrupt); re-import it")


def _scorer(model_dir: Path, booster: lgb.Booster) -> tuple[Any, str]:
    """The compiled forest when the import stored one (and it matches the booster on probe
    rows), else the booster."""
    compiled_file = model_dir / COMPILED_FILE
    if not compiled_file.exists():
        return booster, f"lightgbm {lgb.__version__} Booster"
    if not compiled.runs_here():
        return (
            booster,
            f"lightgbm {lgb.__version__} Booster (a forest compiled for {compiled.ARCHITECTURE})",
        )
    try:
        forest = compiled.load_forest(model_dir / BOOSTER_FILE, compiled_file, booster)
        probes = compiled.stored_probe_rows(model_dir / PROBE_FILE, booster)
        compiled.check_matches_booster(forest, booster, probes)
    except (RuntimeError, OSError) as error:
        reason = str(error).splitlines()[0][:200]
        raise ModelCannotServe(f"its compiled forest cannot be used ({reason})") from None
    return forest, f"compiled forest, {compiled.metadata()['compiler']}"
