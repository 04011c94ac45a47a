"""Categorical features, recognised from the LightGBM model itself and cross-checked against
the MLflow signature, so that whatever imports also serves and scores as LightGBM would.

LightGBM marks its categorical features in the model file (`[categorical_feature: 1,5]`). A
model trained on a pandas frame with `category` columns (LGBMClassifier.fit, or lgb.train with
`categorical_feature=`) also stores `pandas_categorical`: each such column's categories in
training order, a value's code being its position. MLflow's signature types those columns
`string`. A model trained on integer codes has no `pandas_categorical` and takes the integers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import lightgbm as lgb

from scoring.importing.errors import UnservableModel
from scoring.stored_model.feature_schema import SERVABLE_TYPES, STRING_TYPES, FeatureColumn

_CATEGORICAL_PARAMETER = re.compile(r"^\[categorical_feature: ?(.*)\]$", re.MULTILINE)


def booster_categorical(booster: lgb.Booster) -> set[int]:
    """Positions of the features LightGBM treats as categorical."""
    names = booster.feature_name()
    found: set[int] = set()
    match = _CATEGORICAL_PARAMETER.search(booster.model_to_string())
    if match:
        for token in filter(None, (t.strip() for t in match.group(1).split(","))):
            found.add(int(token) if token.isdigit() else names.index(token.removeprefix("name:")))
    # The feature infos list a categorical feature's bins ("-1:0:2"), a numeric one's range.
    infos = booster.dump_model()["feature_infos"]
    for position, name in enumerate(names):
        if infos.get(name, {}).get("values"):
            found.add(position)
    return found


def _categories(values: Sequence[object], column: str) -> tuple[str | int, ...]:
    kinds = {type(value) for value in values}
    if kinds <= {str} or (kinds <= {int} and bool not in kinds):
        return tuple(values)  # type: ignore[arg-type]
    raise UnservableModel(
        f"categorical column {column} has categories of types "
        f"{', '.join(sorted(k.__name__ for k in kinds))}; only strings or integers can be served"
    )


def feature_columns(
    booster: lgb.Booster, signature: Sequence[tuple[str, str]]
) -> list[FeatureColumn]:
    """The signature's (name, type) columns with LightGBM's categorical facts attached; refuses
    (UnservableModel, exit 7) any disagreement between the model and the signature."""
    for name, kind in signature:
        if kind not in SERVABLE_TYPES:
            raise UnservableModel(
                f"signature column {name} has type {kind}, which LightGBM cannot score"
            )
    categorical = booster_categorical(booster)
    pandas_categorical = booster.pandas_categorical or []
    string_columns = [i for i, (_, kind) in enumerate(signature) if kind in STRING_TYPES]
    # pandas_categorical follows the frame's `category` columns in order: the categorical
    # features, unless integer-coded categoricals were declared beside them; then the
    # signature's string columns say which are which.
    if not pandas_categorical:
        with_categories = []
    elif len(pandas_categorical) == len(categorical):
        with_categories = sorted(categorical)
    elif len(pandas_categorical) == len(string_columns):
        with_categories = string_columns
    else:
        raise UnservableModel(
            f"the model stores categories for {len(pandas_categorical)} columns, but has "
            f"{len(categorical)} categorical features and {len(string_columns)} string columns "
            "in its signature; re-log it with a signature inferred from the training frame"
        )
    categories = {
        position: _categories(values, signature[position][0])
        for position, values in zip(with_categories, pandas_categorical, strict=True)
    }
    columns = []
    for position, (name, kind) in enumerate(signature):
        known = categories.get(position)
        if kind in STRING_TYPES and (position not in categorical or known is None):
            raise UnservableModel(
                f"signature column {name} is a string, but LightGBM does not treat it as "
                "categorical with known categories; train it as a pandas `category` column"
            )
        if known and (kind in STRING_TYPES) != isinstance(known[0], str):
            what = "strings" if isinstance(known[0], str) else "integers"
            raise UnservableModel(
                f"categorical column {name} has {what} as categories, but the signature "
                f"types it {kind}"
            )
        columns.append(FeatureColumn(name, kind, position in categorical, known))
    return columns
