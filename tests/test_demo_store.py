"""The embedded default: the demo store builder and an import from its local sqlite URI."""

from __future__ import annotations

import bentoml
import lightgbm as lgb
import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from mlflow.types import DataType

import import_model
from demo_store.data import CATEGORICAL_COLUMNS
from demo_store.mlflow_runs import TINY, build_demo_store


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo-store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    candidate = build_demo_store(uri, TINY, artifact_root=root / "artifacts")
    return uri, candidate


def test_demo_store_has_research_experiments_and_one_production_alias(demo_store):
    uri, candidate = demo_store
    client = MlflowClient(uri)
    names = {e.name for e in client.search_experiments()}
    assert {
        "credit_scoring_model_selection",
        "credit_scoring_feature_engineering_cv",
        "credit_scoring_optimization_fbeta",
        "credit_scoring_production",
    } <= names
    assert client.get_model_version_by_alias("credit_scoring", "production").run_id == (
        candidate.run_id
    )


def test_demo_production_run_logs_metrics_threshold_artifacts_and_signature(demo_store):
    uri, candidate = demo_store
    client = MlflowClient(uri)
    run = client.get_run(candidate.run_id)
    assert {"roc_auc", "precision", "recall", "f1", "business_cost"} <= set(run.data.metrics)
    assert float(run.data.params["decision_threshold"]) == candidate.threshold
    artifacts = {item.path for item in client.list_artifacts(candidate.run_id)}
    assert {"threshold_analysis.json", "feature_importance.csv"} <= artifacts
    mlflow.set_tracking_uri(uri)
    info = mlflow.models.get_model_info(candidate.model_uri)
    assert info.signature is not None
    assert info.saved_input_example_info is not None


def test_demo_production_model_has_categorical_features(demo_store):
    """Fitted on `category` columns as credit models are: the booster keeps the category
    lists, the signature types those columns `string`, the input example carries strings."""
    uri, candidate = demo_store
    mlflow.set_tracking_uri(uri)
    model = mlflow.lightgbm.load_model(candidate.model_uri)
    booster = model.booster_ if isinstance(model, lgb.LGBMClassifier) else model
    assert booster.pandas_categorical
    assert len(booster.pandas_categorical) == len(CATEGORICAL_COLUMNS)
    assert set(CATEGORICAL_COLUMNS) <= set(booster.feature_name())

    info = mlflow.models.get_model_info(candidate.model_uri)
    types = {spec.name: spec.type for spec in info.signature.inputs.inputs}
    assert {name: types[name] for name in CATEGORICAL_COLUMNS} == dict.fromkeys(
        CATEGORICAL_COLUMNS, DataType.string
    )
    assert DataType.string not in {
        kind for name, kind in types.items() if name not in CATEGORICAL_COLUMNS
    }

    path = mlflow.artifacts.download_artifacts(candidate.model_uri)
    example = mlflow.models.Model.load(path).load_input_example(path)
    values = [value for name in CATEGORICAL_COLUMNS for value in example[name]]
    present = [value for value in values if isinstance(value, str)]
    assert present, "no categorical value in the input example"
    assert all(isinstance(value, str) or pd.isna(value) for value in values)


def test_demo_threshold_minimises_business_cost(demo_store):
    uri, candidate = demo_store
    mlflow.set_tracking_uri(uri)
    analysis = mlflow.artifacts.load_dict(f"runs:/{candidate.run_id}/threshold_analysis.json")
    assert candidate.threshold == min(analysis["costs"], key=lambda row: row["cost"])["threshold"]


def test_import_from_local_sqlite_store(demo_store, capsys):
    uri, candidate = demo_store
    assert import_model.main(["--tracking-uri", uri, "--bento-name", "from_sqlite"]) == 0
    (model,) = bentoml.models.list("from_sqlite")
    assert model.info.labels["run_id"] == candidate.run_id
    assert float(model.info.labels["threshold"]) == candidate.threshold
