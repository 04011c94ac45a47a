"""A scikit-learn Pipeline ending in a LightGBM classifier, made servable: its steps checked
against the served ones, its request contract read (the pipeline's input columns, a text
column's categories from the encoder that reads it), its steps rewritten with skops and read
back as the service will read them, which booster feature comes from which input column
measured, and the whole proven to score as `pipeline.predict_proba` does.

Which input column a feature comes from is measured, not parsed from feature names: each input
column of the example row is varied alone (every category, missing, numbers of several signs
and sizes) and the features that change are that column's. A feature that changes with two
columns, or with none, is refused: the reasons could not honestly name one column for it.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import lightgbm as lgb
import numpy as np

from scoring.core.preprocessing import (
    PipelineForest,
    Preprocessing,
    PreprocessingError,
    load_steps,
    qualified,
    refused_step,
    steps_of,
)
from scoring.importing.errors import UnservableModel
from scoring.stored_model.compiled import MAX_ABS_DIFFERENCE
from scoring.stored_model.feature_schema import (
    BOOLEAN_TYPES,
    INTEGER_TYPES,
    SERVABLE_TYPES,
    STRING_TYPES,
    FeatureColumn,
)
from scoring.stored_model.pipeline_steps import (
    COLUMN_TRANSFORMER,
    ENCODERS,
    FUNCTION_TRANSFORMER,
    ORDINAL_ENCODER,
    PIPELINE,
    short,
)


@dataclass(frozen=True)
class ServedPipeline:
    content: bytes
    """The steps before the classifier, as skops wrote them: the file the service reads."""
    preprocessing: Preprocessing
    """Those steps read back from `content`, with the feature → input column map."""
    steps: str
    """The top-level steps' classes, for the `pipeline` label."""

    def predictor(self, forest: Any) -> PipelineForest:
        return PipelineForest(self.preprocessing, forest)

    def metadata(self) -> dict[str, Any]:
        columns = self.preprocessing.columns
        return {
            "steps": [
                f"{path}: {short(qualified(step))}"
                for path, step in steps_of(self.preprocessing.steps)
                if path
            ],
            "inputs_of_features": [columns[owner].name for owner in self.preprocessing.owners],
        }


def check_steps(pipeline: Any) -> Any:
    """The steps before the classifier, refused (naming the step and its class) unless each is
    a served one."""
    steps = pipeline[:-1]
    problem = refused_step(steps)
    if problem:
        raise UnservableModel(problem)
    return steps


def _encoded(step: Any, names: list[str] | None, found: dict[str, list[Any]]) -> list[str] | None:
    """Walk `step`, recording each encoder's categories (and unknown-value handling) under the
    input column it reads; `names`: the input column behind each column `step` receives
    (None where not one column). Returns the same for what it outputs."""
    own = getattr(step, "feature_names_in_", None)
    if own is not None:
        names = [str(name) for name in own]
    kind = qualified(step)
    if kind == PIPELINE:
        for _, inner in step.steps:
            if inner is not None and not isinstance(inner, str):
                names = _encoded(inner, names, found)
        return names
    if kind == COLUMN_TRANSFORMER:
        # Private but stable since scikit-learn 1.1: each transformer's input columns, with
        # callable selectors already resolved.
        indices = getattr(step, "_transformer_to_input_indices", {})
        for name, inner, _ in step.transformers_:
            if isinstance(inner, str):
                continue
            taken = indices.get(name)
            sub = [names[i] for i in taken] if names is not None and taken is not None else None
            _encoded(inner, sub, found)
        return None
    if kind in ENCODERS:
        for position, levels in enumerate(step.categories_):
            if names is None or position >= len(names):
                raise UnservableModel(
                    f"cannot tell which input column a {short(kind)}'s categories belong to; "
                    "put the encoder directly in a ColumnTransformer on named columns"
                )
            found.setdefault(names[position], []).append((levels, step.handle_unknown))
        return names if kind == ORDINAL_ENCODER else None
    try:
        out = [str(name) for name in step.get_feature_names_out(names)] if names else None
    except (AttributeError, TypeError, ValueError):
        # A FunctionTransformer of a ufunc keeps its columns (it names none without
        # feature_names_out).
        out = names if kind == FUNCTION_TRANSFORMER else None
    return names if out == names else None


def _known(levels: Any) -> tuple[Any, ...]:
    """An encoder's categories less the missing value (a request's null is missing anyway)."""
    return tuple(
        level.item() if hasattr(level, "item") else level
        for level in levels
        if not (level is None or (isinstance(level, float) and np.isnan(level)))
    )


def inferred_signature(steps: Any) -> list[tuple[str, str]]:
    """Without a signature (--schema-from-model, an --artifact file): the columns the steps
    were fitted on, text where an encoder read text categories, every other a number."""
    fitted = getattr(steps, "feature_names_in_", None)
    if fitted is None:
        raise UnservableModel(
            "the pipeline was fitted on an array, so its input columns have no names; log it "
            "with a signature of the training frame"
        )
    names = [str(name) for name in fitted]
    found: dict[str, list[Any]] = {}
    _encoded(steps, list(names), found)

    def kind(name: str) -> str:
        levels = [_known(levels) for levels, _ in found.get(name, [])]
        text = levels and all(level and all(isinstance(v, str) for v in level) for level in levels)
        return "string" if text else "double"

    return [(name, kind(name)) for name in names]


def input_columns(steps: Any, signature: Sequence[tuple[str, str]]) -> list[FeatureColumn]:
    """The contract: the signature's columns, each text column with its encoder's categories."""
    names = [name for name, _ in signature]
    fitted = getattr(steps, "feature_names_in_", None)
    if fitted is not None and [str(name) for name in fitted] != names:
        raise UnservableModel(
            "signature columns differ from the columns the pipeline was fitted on; log it with "
            "signature=infer_signature(X, ...) of the training frame"
        )
    found: dict[str, list[Any]] = {}
    _encoded(steps, list(names), found)
    columns = []
    for name, kind in signature:
        if kind not in SERVABLE_TYPES:
            raise UnservableModel(f"signature column {name} has type {kind}; it cannot be served")
        encoders = found.get(name, [])
        if kind not in STRING_TYPES:
            if any(handle == "error" for _, handle in encoders):
                raise UnservableModel(
                    f"number column {name} is encoded with handle_unknown='error', so a value "
                    "it never saw would fail in the service; encode it as text, or fit the "
                    "encoder with handle_unknown='ignore'"
                )
            columns.append(FeatureColumn(name, kind))
            continue
        levels = {_known(found_levels) for found_levels, _ in encoders}
        if len(levels) != 1:
            what = "no encoder reads it" if not levels else "its encoders disagree on them"
            raise UnservableModel(
                f"text column {name}: its categories cannot be read ({what}); encode each text "
                "column with one OneHotEncoder or OrdinalEncoder"
            )
        (categories,) = levels
        if not categories or not all(isinstance(level, str) for level in categories):
            raise UnservableModel(f"text column {name} has categories that are not all text")
        columns.append(FeatureColumn(name, kind, True, categories))
    return columns


def _coded(column: FeatureColumn, value: Any) -> float:
    if value is None:
        return np.nan
    if column.categories is not None:
        return float(column.categories.index(value))
    return float(value)


def _variants(column: FeatureColumn, base: float) -> list[float]:
    """Values of one column to vary it by: every category, or numbers of several signs and
    sizes (missing, where the contract allows it)."""
    if column.categories is not None:
        return [*map(float, range(len(column.categories))), np.nan]
    if column.type in BOOLEAN_TYPES:
        return [0.0, 1.0]
    numbers = [0.0, 1.0, -1.0, 7.0, 1e3, -1e3, 1e6, -1e6]
    numbers += [] if np.isnan(base) else [base + 1, base - 1, base * 2]
    if column.type in INTEGER_TYPES:
        return [float(round(n)) for n in numbers]
    return [np.nan, 0.5, -0.5, 1e-3, *numbers]


def _same(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a == b) | (np.isnan(a) & np.isnan(b))


def _transform(preprocessing: Preprocessing, rows: np.ndarray, what: str) -> np.ndarray:
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            return preprocessing.transform(rows)
    except Exception as error:  # the team's fitted steps raise what they raise
        reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
        raise UnservableModel(f"the pipeline's steps fail on {what} ({reason})") from None


def feature_owners(
    preprocessing: Preprocessing, booster: lgb.Booster, base: np.ndarray
) -> tuple[tuple[int, ...], np.ndarray]:
    """Which input column each booster feature comes from, measured on `base` (one row of the
    contract's matrix); also every row it scored, for the probability check."""
    columns = preprocessing.columns
    names = booster.feature_name()
    reference = _transform(preprocessing, base, "the model's example")
    if reference.shape[1] != len(names):
        raise UnservableModel(
            f"the pipeline's steps give {reference.shape[1]} features, its classifier has "
            f"{len(names)}"
        )
    owners = np.full(len(names), -1)
    probes = [base]
    for position, column in enumerate(columns):
        if column.categories is None and column.type not in (*INTEGER_TYPES, *BOOLEAN_TYPES):
            missing = base.copy()
            missing[0, position] = np.nan
            _transform(
                preprocessing,
                missing,
                f"a missing {column.name}, which requests may send; put a SimpleImputer "
                "before the step that fails",
            )
        values = _variants(column, base[0, position])
        if column.required:
            values = values[:-1]  # the missing value, which the contract refuses
        rows = np.repeat(base, len(values), axis=0)
        rows[:, position] = values
        out = _transform(preprocessing, rows, f"values of {column.name}")
        probes.append(rows)
        for feature in np.flatnonzero((~_same(out, reference)).any(axis=0)):
            if owners[feature] >= 0:
                raise UnservableModel(
                    f"feature {names[feature]} changes with both {columns[owners[feature]].name} "
                    f"and {column.name}; reasons need each feature to come from one input column"
                )
            owners[feature] = position
    orphans = [names[f] for f in np.flatnonzero(owners < 0)]
    if orphans:
        raise UnservableModel(
            f"feature(s) {', '.join(orphans[:5])} changed with no input column the import varied"
        )
    return tuple(int(o) for o in owners), np.vstack(probes)


def _with_required(
    preprocessing: Preprocessing, columns: list[FeatureColumn], base: np.ndarray
) -> list[FeatureColumn]:
    """Each text column the steps fail on when it is missing (an encoder fitted with
    handle_unknown='error' on data without missing values) marked required: the contract
    refuses a missing value there, as the pipeline would."""
    marked = []
    for position, column in enumerate(columns):
        if column.categories is not None:
            missing = base.copy()
            missing[0, position] = np.nan
            try:
                _transform(preprocessing, missing, column.name)
            except UnservableModel:
                column = replace(column, required=True)
        marked.append(column)
    return marked


def served_pipeline(
    pipeline: Any,
    booster: lgb.Booster,
    columns: list[FeatureColumn],
    example: dict[str, Any],
) -> ServedPipeline:
    """The steps as the service will run them, proven to give the pipeline's probabilities.
    Its `preprocessing.columns` are the contract (`columns`, text the steps cannot take
    missing marked required); `example` has a category wherever one is required."""
    import skops.io

    steps = check_steps(pipeline)
    if booster.pandas_categorical:
        raise UnservableModel(
            "the pipeline's classifier was fitted on pandas category columns its steps made; "
            "encode them with an OrdinalEncoder instead"
        )
    try:
        content = skops.io.dumps(steps)
        preprocessing = Preprocessing(load_steps(content), tuple(columns), ())
    except PreprocessingError as error:
        raise UnservableModel(f"the pipeline's steps cannot be stored: {error}") from None
    # The example's missing categories as the first one, so that the row varied is one the
    # steps take whatever they require.
    base = np.array([[_coded(column, example.get(column.name)) for column in columns]])
    for position, column in enumerate(columns):
        if column.categories is not None and np.isnan(base[0, position]):
            base[0, position] = 0.0
            example[column.name] = column.categories[0]
    columns = _with_required(preprocessing, columns, base)
    preprocessing = Preprocessing(preprocessing.steps, tuple(columns), ())
    owners, probes = feature_owners(preprocessing, booster, base)
    preprocessing = Preprocessing(preprocessing.steps, tuple(columns), owners)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        served = PipelineForest(preprocessing, booster).predict(probes)
        expected = pipeline.predict_proba(preprocessing.frame(probes))[:, 1]
    worst = float(np.max(np.abs(served - expected)))
    if not worst <= MAX_ABS_DIFFERENCE:
        raise UnservableModel(
            f"the stored steps and booster score {worst:.3g} away from pipeline.predict_proba"
        )
    top = " -> ".join(
        short(qualified(step)) for _, step in pipeline.steps if not isinstance(step, str | None)
    )
    return ServedPipeline(content, preprocessing, top)
