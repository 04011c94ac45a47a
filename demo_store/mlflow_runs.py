"""Builds the credit-scoring MLflow state a real team has: research experiments plus one
production run, registered with the `production` alias.

Used by `python -m demo_store` (the embedded default) and by the tests' fixtures.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import lightgbm as lgb
import mlflow
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, DataType, Schema, TensorSpec
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from demo_store.data import CATEGORICAL_COLUMNS, INTEGER_COLUMNS, make_applications
from demo_store.reason_codes import reason_codes_yaml
from scoring.importing.reference import REFERENCE_ARTIFACTS
from scoring.stored_model.reason_codes import REASON_CODES_FILE

log = logging.getLogger(__name__)

# Costs from the source documents: a missed default costs 10, a wrongly refused good client 1.
COST_FALSE_NEGATIVE = 10
COST_FALSE_POSITIVE = 1

REGISTERED_MODEL = "credit_scoring"
# The drift reference the import looks for: training rows, a few thousand being enough for
# decile shares to within about a point.
REFERENCE_SAMPLE_ARTIFACT = REFERENCE_ARTIFACTS[0]
REFERENCE_SAMPLE_ROWS = 5000
PRODUCTION_ALIAS = "production"
PRODUCTION_EXPERIMENT = "credit_scoring_production"


@dataclass(frozen=True)
class DemoSize:
    n_rows: int
    n_features: int | None
    n_estimators: int
    max_depth: int
    learning_rate: float


SMALL = DemoSize(n_rows=20_000, n_features=None, n_estimators=120, max_depth=6, learning_rate=0.05)
FULL = DemoSize(
    n_rows=307_511, n_features=189, n_estimators=968, max_depth=10, learning_rate=0.0188
)
TINY = DemoSize(n_rows=3_000, n_features=None, n_estimators=20, max_depth=4, learning_rate=0.1)


@dataclass(frozen=True)
class LoggedCandidate:
    run_id: str
    model_uri: str
    model_id: str | None
    threshold: float


def business_cost(target: np.ndarray, probability: np.ndarray, threshold: float) -> int:
    predicted_default = probability >= threshold
    false_negatives = int(np.sum((target == 1) & ~predicted_default))
    false_positives = int(np.sum((target == 0) & predicted_default))
    return COST_FALSE_NEGATIVE * false_negatives + COST_FALSE_POSITIVE * false_positives


def threshold_analysis(target: np.ndarray, probability: np.ndarray) -> list[dict[str, float]]:
    return [
        {"threshold": round(float(t), 2), "cost": business_cost(target, probability, t)}
        for t in np.arange(0.01, 1.0, 0.01)
    ]


def _declared_type(name: str) -> DataType:
    if name in CATEGORICAL_COLUMNS:
        return DataType.string
    return DataType.long if name in INTEGER_COLUMNS else DataType.double


def model_signature(example: pd.DataFrame, prediction: np.ndarray | None) -> ModelSignature:
    """The signature `infer_signature(example, prediction)` gives, with the column types
    declared instead of inferred: the data's `category` columns are `string` (what MLflow
    infers for them), its integer columns `long`, every other column `double`. A column is
    `required` when the example has no missing value in it, as infer_signature decides.
    Declared, the types leave MLflow no integer-column hint to give, and a categorical that
    is missing in every example row still gets its type (inferred, it would be `any`)."""
    undeclared = [
        name
        for name in example.columns
        if pd.api.types.is_integer_dtype(example[name]) != (name in INTEGER_COLUMNS)
        or isinstance(example[name].dtype, pd.CategoricalDtype) != (name in CATEGORICAL_COLUMNS)
    ]
    if undeclared:
        raise ValueError(
            f"integer or category columns differ from data.INTEGER_COLUMNS or"
            f" data.CATEGORICAL_COLUMNS: {undeclared}"
        )
    inputs = Schema(
        [
            ColSpec(_declared_type(name), name, required=bool(example[name].notna().all()))
            for name in example.columns
        ]
    )
    outputs = None if prediction is None else Schema([TensorSpec(prediction.dtype, (-1,))])
    return ModelSignature(inputs, outputs)


def _logistic_baseline(features: pd.DataFrame) -> Pipeline:
    """The research baseline: a logistic regression on imputed, standardised numeric features
    (on the raw ones, days and amounts in the hundreds of thousands, lbfgs does not converge)
    and one-hot encoded categoricals, a missing value being a category of its own."""
    categorical = [name for name in features.columns if name in CATEGORICAL_COLUMNS]
    numeric = [name for name in features.columns if name not in CATEGORICAL_COLUMNS]
    encode = ColumnTransformer(
        [
            ("numeric", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
            (
                "categorical",
                make_pipeline(
                    SimpleImputer(strategy="constant", fill_value="missing"),
                    OneHotEncoder(handle_unknown="ignore"),
                ),
                categorical,
            ),
        ]
    )
    # The one-hot columns (~120) take lbfgs about 100 iterations, just past the default.
    return make_pipeline(encode, LogisticRegression(max_iter=1000))


def _progress_callback(total: int):
    step = max(total // 10, 1)

    def callback(env: lgb.callback.CallbackEnv) -> None:
        if (env.iteration + 1) % step == 0:
            log.info("  trained %d/%d trees", env.iteration + 1, total)

    return callback


def train_classifier(
    features: pd.DataFrame, target: pd.Series, size: DemoSize, seed: int = 0
) -> lgb.LGBMClassifier:
    model = lgb.LGBMClassifier(
        n_estimators=size.n_estimators,
        max_depth=size.max_depth,
        num_leaves=31,
        learning_rate=size.learning_rate,
        class_weight="balanced",
        random_state=seed,
        verbose=-1,
    )
    model.fit(features, target, callbacks=[_progress_callback(size.n_estimators)])
    return model


def log_production_candidate(
    model: lgb.LGBMClassifier,
    valid_x: pd.DataFrame,
    valid_y: pd.Series,
    *,
    run_name: str,
    tags: dict[str, str] | None = None,
    registered_model_name: str | None = None,
    threshold_param: str = "decision_threshold",
    reason_codes: str | None = None,
    reference: pd.DataFrame | None = None,
) -> LoggedCandidate:
    """Log a complete production candidate into the active experiment, with `reason_codes` (the
    reason-code table's YAML text) and `reference` (training rows, the drift reference) as the
    run artifacts the importer looks for."""
    probability = model.predict_proba(valid_x)[:, 1]
    analysis = threshold_analysis(valid_y.to_numpy(), probability)
    best = min(analysis, key=lambda row: row["cost"])
    threshold = best["threshold"]
    decided = (probability >= threshold).astype(int)
    with mlflow.start_run(run_name=run_name, tags=tags or {}) as run:
        params = {k: v for k, v in model.get_params().items() if v is not None}
        mlflow.log_params({**params, "n_features": valid_x.shape[1], threshold_param: threshold})
        mlflow.log_metrics(
            {
                "roc_auc": roc_auc_score(valid_y, probability),
                "precision": precision_score(valid_y, decided, zero_division=0),
                "recall": recall_score(valid_y, decided),
                "f1": f1_score(valid_y, decided),
                "business_cost": best["cost"],
            }
        )
        mlflow.log_dict({"costs": analysis, "chosen": best}, "threshold_analysis.json")
        if reason_codes is not None:
            mlflow.log_text(reason_codes, REASON_CODES_FILE)
        importance = pd.DataFrame(
            {"feature": valid_x.columns, "gain": model.booster_.feature_importance("gain")}
        ).sort_values("gain", ascending=False)
        with tempfile.TemporaryDirectory() as scratch:
            path = Path(scratch) / "feature_importance.csv"
            importance.to_csv(path, index=False)
            mlflow.log_artifact(str(path))
            if reference is not None:
                sample = Path(scratch) / REFERENCE_SAMPLE_ARTIFACT
                reference.to_parquet(sample, index=False)
                mlflow.log_artifact(str(sample))
        example = valid_x.head(3)
        info = mlflow.lightgbm.log_model(
            model,
            name="model",
            signature=model_signature(example, model.predict_proba(example)[:, 1]),
            input_example=example,
            registered_model_name=registered_model_name,
            # Stated, not inferred: inference re-imports the model in a subprocess (~7 s).
            pip_requirements=[f"lightgbm=={lgb.__version__}"],
            # Model.log checks the example by scoring it through the flavor's own pyfunc,
            # which hands the JSON strings to LightGBM as they are; a model fitted on
            # `category` columns refuses them ("train and valid dataset categorical_feature
            # do not match", mlflow/mlflow#3849), so that check would always fail and log a
            # warning. The example is saved all the same; a server has to map the strings
            # to the model's categories (booster.pandas_categorical) itself.
            validate_serving_input=not model.booster_.pandas_categorical,
        )
    return LoggedCandidate(run.info.run_id, info.model_uri, info.model_id, threshold)


def use_experiment(name: str, artifact_root: Path | None) -> None:
    """Activate `name`, creating it under `artifact_root` (a sqlite store has no root of its
    own: MLflow would fall back to ./mlruns in the current directory)."""
    if artifact_root is not None and mlflow.get_experiment_by_name(name) is None:
        mlflow.create_experiment(name, artifact_location=(artifact_root / name).as_uri())
    mlflow.set_experiment(name)


def _log_research_experiments(
    features: pd.DataFrame, target: pd.Series, artifact_root: Path | None
) -> None:
    """Model selection, feature-engineering CV and tuning runs: metrics, no production claim."""
    sample_x, _, sample_y, _ = train_test_split(
        features, target, train_size=min(5000, len(target) - 100), random_state=1, stratify=target
    )
    fit_x, eval_x, fit_y, eval_y = train_test_split(
        sample_x, sample_y, test_size=0.3, random_state=2, stratify=sample_y
    )
    use_experiment("credit_scoring_model_selection", artifact_root)
    logistic = _logistic_baseline(fit_x).fit(fit_x, fit_y)
    with mlflow.start_run(run_name="LogisticRegression"):
        auc = roc_auc_score(eval_y, logistic.predict_proba(eval_x)[:, 1])
        mlflow.log_metric("roc_auc", auc)
    for n_estimators in (50, 100):
        model = lgb.LGBMClassifier(n_estimators=n_estimators, verbose=-1).fit(fit_x, fit_y)
        with mlflow.start_run(run_name=f"LightGBM_{n_estimators}"):
            mlflow.log_param("n_estimators", n_estimators)
            mlflow.log_metric("roc_auc", roc_auc_score(eval_y, model.predict_proba(eval_x)[:, 1]))

    use_experiment("credit_scoring_feature_engineering_cv", artifact_root)
    for name in ("baseline", "domain", "polynomial"):
        with mlflow.start_run(run_name=f"cv_{name}_balanced"):
            mlflow.log_params({"features": name, "sampling": "balanced"})
            for fold in range(3):
                mlflow.log_metric("roc_auc", 0.74 + 0.01 * fold, step=fold)

    use_experiment("credit_scoring_optimization_fbeta", artifact_root)
    for trial, learning_rate in enumerate((0.01, 0.03, 0.1)):
        with mlflow.start_run(run_name=f"optuna_trial_{trial}"):
            mlflow.log_param("learning_rate", learning_rate)
            mlflow.log_metric("fbeta", 0.3 + 0.02 * trial)


def build_demo_store(
    tracking_uri: str, size: DemoSize, artifact_root: Path | None = None, seed: int = 0
) -> LoggedCandidate:
    """Create the demo state in `tracking_uri` and return the production candidate."""
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)  # else a registry URI set earlier in-process wins
    started = time.perf_counter()
    log.info("generating %d applications", size.n_rows)
    features, target = make_applications(size.n_rows, size.n_features, seed=seed)
    log.info("logging research experiments")
    _log_research_experiments(features, target, artifact_root)
    train_x, valid_x, train_y, valid_y = train_test_split(
        features, target, test_size=0.2, random_state=seed, stratify=target
    )
    log.info(
        "training production model: %d rows, %d features, %d trees",
        len(train_x),
        train_x.shape[1],
        size.n_estimators,
    )
    model = train_classifier(train_x, train_y, size, seed=seed)
    use_experiment(PRODUCTION_EXPERIMENT, artifact_root)
    candidate = log_production_candidate(
        model,
        valid_x,
        valid_y,
        run_name="production_lightgbm",
        tags={"stage": "production", "model_type": "LightGBM"},
        registered_model_name=REGISTERED_MODEL,
        reason_codes=reason_codes_yaml(list(valid_x.columns)),
        reference=train_x.sample(min(REFERENCE_SAMPLE_ROWS, len(train_x)), random_state=seed),
    )
    client = MlflowClient()
    version = client.search_model_versions(
        f"name='{REGISTERED_MODEL}' and run_id='{candidate.run_id}'"
    )[0]
    client.set_registered_model_alias(REGISTERED_MODEL, PRODUCTION_ALIAS, version.version)
    log.info(
        "production run %s registered as %s v%s@%s, threshold %.2f (%.0f s)",
        candidate.run_id,
        REGISTERED_MODEL,
        version.version,
        PRODUCTION_ALIAS,
        candidate.threshold,
        time.perf_counter() - started,
    )
    return candidate
