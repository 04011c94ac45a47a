"""The MLflow state the source documents describe, built on a real tracking server.

Each broken situation gets its own registered model or experiment, so every refusal test can
point the import at exactly one problem.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import lightgbm as lgb
import mlflow
from mlflow.tracking import MlflowClient
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from demo_store.data import CATEGORICAL_COLUMNS, make_applications
from demo_store.mlflow_runs import (
    TINY,
    log_production_candidate,
    model_signature,
    train_classifier,
)


@dataclass(frozen=True)
class MessyStore:
    tracking_uri: str
    production_run_id: str
    features_sample: object  # pandas DataFrame of rows for probability checks
    conflicting_threshold_run_id: str
    missing_threshold_run_id: str
    out_of_range_threshold_run_id: str
    partial_artifact_run_id: str
    not_lightgbm_run_id: str
    multiclass_run_id: str
    no_signature_run_id: str


def _log_model(
    model,
    *,
    run_name: str,
    params=None,
    metrics=None,
    signature=True,
    flavor=mlflow.lightgbm,
    columns=None,
) -> str:
    features = make_applications(50, seed=9)[0]
    numeric = [name for name in features.columns if name not in CATEGORICAL_COLUMNS]
    # Numeric gaps filled; a missing category stays missing (its column then optional).
    features[numeric] = features[numeric].fillna(0)
    features = features if columns is None else features[columns]
    with mlflow.start_run(run_name=run_name) as run:
        if params:
            mlflow.log_params(params)
        if metrics:
            mlflow.log_metrics(metrics)
        predict = model.predict_proba(features)[:, 1] if hasattr(model, "predict_proba") else None
        flavor.log_model(
            model,
            name="model",
            signature=model_signature(features, predict) if signature else None,
            pip_requirements=[],  # skip requirement inference: it costs ~7 s a model
        )
    return run.info.run_id


def build_messy_store(tracking_uri: str, artifact_root: Path) -> MessyStore:
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    client = MlflowClient(tracking_uri)
    features, target = make_applications(TINY.n_rows, seed=3)
    model = train_classifier(features, target, TINY)

    # The real production model, registered credit_scoring@production and tagged.
    mlflow.set_experiment("credit_scoring_production")
    production = log_production_candidate(
        model,
        features.tail(800),
        target.tail(800),
        run_name="production_lightgbm",
        tags={"stage": "production"},
        registered_model_name="credit_scoring",
    )
    client.set_registered_model_alias("credit_scoring", "production", "1")

    # A second experiment also claims production, with a metric threshold and no model file.
    mlflow.set_experiment("credit_scoring_final_delivery")
    with mlflow.start_run(run_name="final_model_application", tags={"stage": "production"}):
        mlflow.log_metric("optimal_threshold", 0.338)
        mlflow.log_metric("roc_auc", 0.99)  # the best score, but nothing to serve

    # Research runs, an Optuna-ish tuning experiment and the old test experiment.
    mlflow.set_experiment("credit_scoring_tuning")
    tuned = _log_model(
        model, run_name="tuned", params={"decision_threshold": 0.41}, metrics={"roc_auc": 0.80}
    )
    mlflow.set_experiment("test_experiment")
    with mlflow.start_run(run_name="test_run"):
        mlflow.log_metric("roc_auc", 0.5)

    mlflow.set_experiment("credit_scoring_broken_runs")
    conflicting = _log_model(
        model,
        run_name="conflicting_threshold",
        params={"optimal_threshold": 0.48},
        metrics={"optimal_threshold": 0.338},
    )
    missing_threshold = _log_model(model, run_name="no_threshold")
    out_of_range = _log_model(model, run_name="threshold_1_5", params={"decision_threshold": 1.5})
    no_signature = _log_model(
        model, run_name="no_signature", params={"decision_threshold": 0.4}, signature=False
    )
    partial = _log_model(model, run_name="partial_artifact", params={"decision_threshold": 0.4})
    # Scaled so lbfgs converges; no SimpleImputer: skops would refuse its numpy.dtype state.
    # The numeric columns only: this model is there to be refused as not LightGBM, whatever
    # its inputs, and a numeric signature keeps that the only thing wrong with it.
    numeric = [name for name in features.columns if name not in CATEGORICAL_COLUMNS]
    logistic = make_pipeline(StandardScaler(), LogisticRegression()).fit(
        features[numeric].fillna(0).head(500), target.head(500)
    )
    not_lightgbm = _log_model(
        logistic,
        run_name="logistic",
        params={"decision_threshold": 0.4},
        flavor=mlflow.sklearn,
        columns=numeric,
    )
    multiclass = lgb.LGBMClassifier(n_estimators=5, verbose=-1).fit(
        features, features.REGION_RATING_CLIENT
    )
    multiclass_run = _log_model(
        multiclass, run_name="multiclass", params={"decision_threshold": 0.4}
    )

    # Interrupt the artifact part-way: the MLmodel file stays, the booster file is gone.
    logged = client.search_logged_models(
        experiment_ids=[client.get_run(partial).info.experiment_id],
        filter_string=f"source_run_id = '{partial}'",
    )[0]
    model_files = [p for p in artifact_root.rglob(f"{logged.model_id}/artifacts/*") if p.is_file()]
    for model_file in model_files:
        if model_file.name != "MLmodel":
            model_file.unlink()
    assert len(model_files) > 1, "the partial-artifact scenario found no booster file to remove"

    # A registered model whose alias points at a run that was later deleted.
    version = mlflow.register_model(f"runs:/{tuned}/model", "deleted_run_model")
    client.set_registered_model_alias("deleted_run_model", "production", version.version)
    client.delete_run(tuned)

    # A registered model nobody marked as production.
    mlflow.register_model(f"runs:/{conflicting}/model", "unaliased_model")

    return MessyStore(
        tracking_uri=tracking_uri,
        production_run_id=production.run_id,
        features_sample=features.head(200),
        conflicting_threshold_run_id=conflicting,
        missing_threshold_run_id=missing_threshold,
        out_of_range_threshold_run_id=out_of_range,
        partial_artifact_run_id=partial,
        not_lightgbm_run_id=not_lightgbm,
        multiclass_run_id=multiclass_run,
        no_signature_run_id=no_signature,
    )
