"""The request contract read from the booster itself, for a model without an MLflow signature
(--schema-from-model, and every --artifact file): its feature names in order, a categorical
feature trained from a pandas `category` column as text with the stored categories, one trained
on integer codes as integers, every other feature as a number that may be missing."""

from __future__ import annotations

import lightgbm as lgb

from scoring.importing.categorical import booster_categorical
from scoring.importing.errors import UnservableModel

SIGNATURE = "mlflow signature"
FROM_MODEL = "booster (--schema-from-model)"
FROM_ARTIFACT = "booster (--artifact file, which has no signature)"
# A Pipeline without a signature: the columns its steps were fitted on, text where an encoder
# read text (scoring/importing/pipelines.py).
PIPELINE_FROM_MODEL = "pipeline's fitted columns (--schema-from-model)"
PIPELINE_FROM_ARTIFACT = "pipeline's fitted columns (--artifact file, which has no signature)"


def booster_signature(booster: lgb.Booster) -> list[tuple[str, str]]:
    """(name, MLflow type) per feature, as feature_columns() takes a signature's columns."""
    names = booster.feature_name()
    categorical = booster_categorical(booster)
    stored = booster.pandas_categorical or []
    # pandas_categorical lists the training frame's `category` columns in order, but does not
    # say which features they were; only when every categorical feature has a list is that
    # certain. Integer-coded categoricals declared beside them would need a signature.
    if stored and len(stored) != len(categorical):
        raise UnservableModel(
            f"the booster stores categories for {len(stored)} columns but has "
            f"{len(categorical)} categorical features, so which is which cannot be read from "
            "it; log the model with a signature"
        )
    with_categories = dict(zip(sorted(categorical), stored, strict=False)) if stored else {}
    columns = []
    for position, name in enumerate(names):
        levels = with_categories.get(position)
        if levels is not None:
            kind = "string" if all(isinstance(level, str) for level in levels) else "long"
        else:
            kind = "long" if position in categorical else "double"
        columns.append((name, kind))
    return columns
