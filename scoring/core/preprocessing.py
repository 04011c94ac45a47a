"""A Pipeline's steps before its LightGBM classifier, run in the service on each batch.

The request contract is the pipeline's input (its signature's columns, text categories as
text), so the rows every form produces stay the contract's matrix: one column per input column,
a category as its code. Here they become what the team's pipeline was fitted on (a frame of the
input columns, each code decoded back to its text, missing as NaN), pass through the fitted
steps, and come out as the float64 matrix of the booster's features. Contributions computed on
that matrix are folded back onto the input columns, each transformed feature onto the one input
column it came from (the import measured which), so reasons speak of what the applicant sent.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from scoring.stored_model.feature_schema import BOOLEAN_TYPES, FeatureColumn
from scoring.stored_model.pipeline_steps import (
    COLUMN_TRANSFORMER,
    EXTRA_SKOPS_TYPES,
    FUNCTION_TRANSFORMER,
    PIPELINE,
    REMEDY,
    SERVED_STEPS,
    short,
)

# How a signature type is held in the frame the steps see, as pandas holds the training frame.
_DTYPES = {"double": np.float64, "float": np.float32, "long": np.int64, "integer": np.int32}


class PreprocessingError(ValueError):
    """The stored steps cannot be served; the message names the step or the fault."""


def qualified(obj: object) -> str:
    kind = type(obj)
    return f"{kind.__module__}.{kind.__qualname__}"


def steps_of(step: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every estimator inside `step` (itself first), each with its path of step names
    (`pre/num/impute`); 'drop' and 'passthrough' hold nothing to run."""
    yield path, step
    kind = qualified(step)
    if kind == PIPELINE:
        children = [(name, inner) for name, inner in step.steps]
    elif kind == COLUMN_TRANSFORMER:
        fitted = getattr(step, "transformers_", None) or step.transformers
        children = [(name, inner) for name, inner, _ in fitted]
    else:
        return
    for name, inner in children:
        if inner is None or isinstance(inner, str):
            continue
        yield from steps_of(inner, f"{path}/{name}" if path else name)


def _ufunc_or_none(func: Any) -> bool:
    return func is None or isinstance(func, np.ufunc)


def refused_step(preprocessing: Any) -> str | None:
    """Why the steps cannot be served, naming the first step that is not a served one and its
    class; None when every step is. An exact class, not a subclass: a team's subclass of a
    stock step may do anything in its transform."""
    for path, step in steps_of(preprocessing):
        kind = qualified(step)
        where = f"step '{path}'" if path else "the pipeline's preprocessing"
        if kind not in SERVED_STEPS:
            return f"{where} is a {short(kind)} ({kind}), which the service does not run; {REMEDY}"
        if kind == FUNCTION_TRANSFORMER:
            for role in ("func", "inverse_func"):
                func = getattr(step, role)
                if not _ufunc_or_none(func):
                    named = getattr(func, "__qualname__", type(func).__name__)
                    return (
                        f"{where} is a FunctionTransformer whose {role} is {named}, not a NumPy "
                        f"ufunc: its code would run in the service; {REMEDY}"
                    )
    return None


def load_steps(content: bytes) -> Any:
    """The stored steps, built by skops trusting the served steps and nothing more; any other
    type is refused by name before anything is built."""
    import skops.io

    try:
        untrusted = set(skops.io.get_untrusted_types(data=content))
    except Exception as error:  # a corrupt archive or schema
        raise PreprocessingError(f"the stored preprocessing is unreadable ({error})") from None
    refused = sorted(untrusted - set(SERVED_STEPS) - set(EXTRA_SKOPS_TYPES))
    if refused:
        raise PreprocessingError(
            f"the stored preprocessing holds types outside the served steps: {', '.join(refused)}"
        )
    try:
        steps = skops.io.loads(content, trusted=sorted(untrusted))
    except Exception as error:  # skops' own errors on a file it cannot build
        raise PreprocessingError(f"the stored preprocessing cannot be loaded ({error})") from None
    problem = refused_step(steps)
    if problem:
        raise PreprocessingError(problem)
    return steps


@dataclass(frozen=True)
class Preprocessing:
    steps: Any
    """The fitted steps (`pipeline[:-1]`), as loaded by `load_steps`."""
    columns: tuple[FeatureColumn, ...]
    """The input columns, the contract's order."""
    owners: tuple[int, ...]
    """For each booster feature, the position of the input column it came from."""
    _lookups: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for i, column in enumerate(self.columns):
            if column.categories is not None:
                self._lookups[i] = np.array(list(column.categories), dtype=object)

    def frame(self, rows: np.ndarray) -> pd.DataFrame:
        """The contract's matrix as the frame the steps were fitted on: codes decoded to their
        category, missing as NaN, each column of its signature type."""
        data: dict[str, Any] = {}
        for i, column in enumerate(self.columns):
            values = rows[:, i]
            lookup = self._lookups.get(i)
            if lookup is not None:
                missing = np.isnan(values)
                decoded = lookup[np.where(missing, 0, values).astype(np.intp)]
                decoded[missing] = np.nan
                data[column.name] = decoded
            elif column.type in BOOLEAN_TYPES:
                data[column.name] = values.astype(bool)
            else:
                data[column.name] = values.astype(_DTYPES.get(column.type, np.float64))
        return pd.DataFrame(data, columns=[column.name for column in self.columns])

    def transform(self, rows: np.ndarray) -> np.ndarray:
        """The booster's features for the contract's rows."""
        out = self.steps.transform(self.frame(rows))
        if hasattr(out, "toarray"):  # a sparse matrix (OneHotEncoder's default output)
            out = out.toarray()
        elif hasattr(out, "to_numpy"):  # set_output(transform="pandas")
            out = out.to_numpy()
        return np.ascontiguousarray(out, dtype=np.float64)

    def fold(self, contributions: np.ndarray) -> np.ndarray:
        """(rows, features + 1) contributions → (rows, input columns + 1): each feature's
        added to its input column's in feature order (a fixed order, so the same row gives the
        same sums in any batch), the base value kept last."""
        folded = np.zeros((contributions.shape[0], len(self.columns) + 1))
        for feature, owner in enumerate(self.owners):
            folded[:, owner] += contributions[:, feature]
        folded[:, -1] = contributions[:, -1]
        return folded


@dataclass(frozen=True)
class PipelineForest:
    """The steps, then the forest (compiled or the booster): called like Booster.predict on
    the contract's matrix."""

    preprocessing: Preprocessing
    forest: Any

    def predict(self, rows: np.ndarray, **kwargs: Any) -> np.ndarray:
        return self.forest.predict(self.preprocessing.transform(rows), **kwargs)


def owners_from_names(inputs: Sequence[str], columns: Sequence[FeatureColumn]) -> tuple[int, ...]:
    """The stored input column name of each feature → its position in the contract."""
    position = {column.name: i for i, column in enumerate(columns)}
    unknown = sorted(set(inputs) - set(position))
    if unknown:
        raise PreprocessingError(f"features come from unknown input columns {unknown}")
    return tuple(position[name] for name in inputs)
