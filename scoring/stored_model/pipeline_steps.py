"""The scikit-learn steps a served Pipeline may run before its LightGBM classifier, named once
for the importer, which refuses any other step, and the service, which loads the stored steps
back trusting these and nothing else.

Each is a stock, column-wise transformer whose fitted state is numbers and category lists: it
maps each input column to one or more output columns and mixes no two columns, which is what
lets the reasons speak of input columns (an output's contribution belongs to the one column it
came from). Anything else (a team's own class, a function or lambda, PCA) is refused by name.
"""

from __future__ import annotations

# Bento model metadata key: the pipeline's steps and which input column each transformed
# feature came from (scoring/core/preprocessing.py).
PIPELINE_KEY = "pipeline"

PIPELINE = "sklearn.pipeline.Pipeline"
COLUMN_TRANSFORMER = "sklearn.compose._column_transformer.ColumnTransformer"
FUNCTION_TRANSFORMER = "sklearn.preprocessing._function_transformer.FunctionTransformer"
ONE_HOT_ENCODER = "sklearn.preprocessing._encoders.OneHotEncoder"
ORDINAL_ENCODER = "sklearn.preprocessing._encoders.OrdinalEncoder"
ENCODERS = frozenset({ONE_HOT_ENCODER, ORDINAL_ENCODER})

# Qualified class (as the class's module and skops name it) → what the docs call it.
SERVED_STEPS: dict[str, str] = {
    PIPELINE: "Pipeline (nested)",
    COLUMN_TRANSFORMER: "ColumnTransformer (remainder 'drop', 'passthrough' or a listed step)",
    "sklearn.impute._base.SimpleImputer": "SimpleImputer",
    "sklearn.preprocessing._data.StandardScaler": "StandardScaler",
    "sklearn.preprocessing._data.MinMaxScaler": "MinMaxScaler",
    "sklearn.preprocessing._data.MaxAbsScaler": "MaxAbsScaler",
    "sklearn.preprocessing._data.RobustScaler": "RobustScaler",
    ONE_HOT_ENCODER: "OneHotEncoder",
    ORDINAL_ENCODER: "OrdinalEncoder",
    FUNCTION_TRANSFORMER: "FunctionTransformer of a NumPy ufunc (np.log1p, np.sqrt, ...) or None",
}

# What a stored preprocessing's skops file holds beyond those and skops' own defaults (numpy
# arrays, ufuncs, builtins): the dtype an encoder's `dtype=` parameter names.
EXTRA_SKOPS_TYPES = ("numpy.dtype",)

REMEDY = (
    "replace it with one of the served steps (Pipeline, ColumnTransformer, SimpleImputer, "
    "StandardScaler, MinMaxScaler, MaxAbsScaler, RobustScaler, OneHotEncoder, OrdinalEncoder, "
    "FunctionTransformer of a NumPy ufunc), or log the final LGBMClassifier alone "
    "(mlflow.lightgbm.log_model(pipeline[-1])) and send the service the transformed columns"
)


def short(qualified: str) -> str:
    return qualified.rsplit(".", 1)[-1]
