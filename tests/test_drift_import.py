"""The drift reference at import (scoring/importing/reference.py): captured from the run's
reference_sample artifact or --reference, stored in the Bento model with its checksum, refused
with exit 10 when unusable, and its absence a warning with monitoring off. A real MLflow store
(sqlite) and a real Bento store in the session's BENTOML_HOME."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import bentoml
import mlflow
import pandas as pd
import pytest
from bentoml.exceptions import NotFound

import import_model
from scoring.importing.errors import ReferenceProblem
from scoring.serving.monitoring.drift import MonitoringOff, monitor_for, version_entry
from scoring.stored_model.drift_reference import DRIFT_REFERENCE_FILE, DriftReference
from scoring.stored_model.layout import CHECKSUMS_KEY, file_sha256


@dataclass(frozen=True)
class Store:
    uri: str
    sample: Path
    """The training rows the demo run logged as its reference, downloaded."""
    run_without_reference: str


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    from demo_store.data import make_applications
    from demo_store.mlflow_runs import (
        REFERENCE_SAMPLE_ARTIFACT,
        TINY,
        build_demo_store,
        log_production_candidate,
        train_classifier,
        use_experiment,
    )

    root = tmp_path_factory.mktemp("drift-store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    candidate = build_demo_store(uri, TINY, artifact_root=root / "artifacts")
    sample = mlflow.artifacts.download_artifacts(
        run_id=candidate.run_id,
        artifact_path=REFERENCE_SAMPLE_ARTIFACT,
        dst_path=str(root / "sample"),
        tracking_uri=uri,
    )
    features, target = make_applications(1000, seed=3)
    use_experiment("no_reference", root / "artifacts")
    bare = log_production_candidate(
        train_classifier(features, target, TINY), features, target, run_name="bare"
    )
    return Store(uri, Path(sample), bare.run_id)


def imported(capsys, store: Store, bento_name: str, *args: str) -> tuple[int, str, str]:
    code = import_model.main(["--tracking-uri", store.uri, "--bento-name", bento_name, *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def models_named(name: str) -> list[bentoml.Model]:
    try:
        return list(bentoml.models.list(name))
    except NotFound:
        return []


def stored_reference(model: bentoml.Model) -> DriftReference:
    return DriftReference.from_json(Path(model.path_of(DRIFT_REFERENCE_FILE)).read_text())


def test_import_captures_the_runs_reference_sample_with_its_checksum(store, capsys):
    code, _, err = imported(capsys, store, "drift_run_sample")
    assert code == 0, err
    assert err == ""  # no warning: the run logged its sample
    (model,) = models_named("drift_run_sample")
    reference = stored_reference(model)
    assert reference.source.endswith("/reference_sample.parquet")
    assert reference.sample_sha256 == file_sha256(store.sample)
    assert reference.rows == len(pd.read_parquet(store.sample))
    names = [f["name"] for f in model.info.metadata["features"]]
    assert [b.name for b in reference.features] == names
    assert model.info.metadata[CHECKSUMS_KEY][DRIFT_REFERENCE_FILE] == file_sha256(
        Path(model.path_of(DRIFT_REFERENCE_FILE))
    )
    assert 0 < reference.reject_rate < 1
    assert reference.threshold == float(model.info.labels["threshold"])


def test_reference_flag_wins_over_the_runs_artifact(store, capsys, tmp_path):
    sample = tmp_path / "other.csv"
    pd.read_parquet(store.sample).head(500).to_csv(sample, index=False)
    code, _, err = imported(capsys, store, "drift_flag", "--reference", str(sample))
    assert code == 0, err
    (model,) = models_named("drift_flag")
    reference = stored_reference(model)
    assert reference.source == "--reference other.csv"
    assert reference.rows == 500
    assert reference.sample_sha256 == file_sha256(sample)


def test_a_reference_missing_model_features_is_refused_with_exit_10(store, capsys, tmp_path):
    sample = tmp_path / "partial.parquet"
    pd.read_parquet(store.sample).drop(columns=["AMT_CREDIT", "CODE_GENDER"]).to_parquet(sample)
    code, _, err = imported(capsys, store, "drift_partial", "--reference", str(sample))
    assert code == ReferenceProblem.exit_code == 10
    assert len(err.strip().splitlines()) == 1, err
    assert "lacks 2 of the model's features (AMT_CREDIT, CODE_GENDER)" in err
    assert models_named("drift_partial") == []


def test_an_unreadable_reference_is_refused_with_exit_10(store, capsys, tmp_path):
    sample = tmp_path / "broken.parquet"
    sample.write_bytes(b"PAR1 not really parquet")
    code, _, err = imported(capsys, store, "drift_unreadable", "--reference", str(sample))
    assert code == 10
    assert len(err.strip().splitlines()) == 1, err
    assert "broken.parquet is not a readable CSV or Parquet file" in err
    assert models_named("drift_unreadable") == []


def test_a_reference_with_categories_the_model_never_saw_is_refused(store, capsys, tmp_path):
    sample = tmp_path / "foreign.csv"
    frame = pd.read_parquet(store.sample)
    frame["CODE_GENDER"] = frame["CODE_GENDER"].astype(object)
    frame.loc[frame.index[:3], "CODE_GENDER"] = "Robot"
    frame.to_csv(sample, index=False)
    code, _, err = imported(capsys, store, "drift_foreign", "--reference", str(sample))
    assert code == 10
    assert "CODE_GENDER holds categories the model never saw ('Robot')" in err


def test_no_reference_imports_with_a_warning_and_monitoring_off(store, capsys):
    run = store.run_without_reference
    code, out, err = imported(capsys, store, "drift_none", "--run-id", run)
    assert code == 0, err
    assert "imported drift_none:" in out
    lines = err.strip().splitlines()
    # One line per warning (this run logged no reason-code table either, which warns too).
    assert all(line.startswith("import_model: warning: ") for line in lines), lines
    assert sum(line.startswith("import_model: warning: no drift reference") for line in lines) == 1
    (model,) = models_named("drift_none")
    assert DRIFT_REFERENCE_FILE not in model.info.metadata[CHECKSUMS_KEY]
    names = [f["name"] for f in model.info.metadata["features"]]
    monitor = monitor_for(model, names, 0.5, 300)
    assert isinstance(monitor, MonitoringOff)
    assert monitor.view()["monitoring"] == "off"
    entry = version_entry(monitor)
    assert entry["enabled"] is False
    assert "without a drift reference" in json.dumps(entry)


def test_monitoring_can_be_switched_off_for_a_model_that_carries_a_reference(production_model):
    model = bentoml.models.get(production_model)
    names = [f["name"] for f in model.info.metadata["features"]]
    assert not isinstance(monitor_for(model, names, 0.5, 300), MonitoringOff)
    switched_off = monitor_for(model, names, 0.5, 300, enabled=False)
    assert isinstance(switched_off, MonitoringOff)
    assert "SCORING_DRIFT_MONITORING=false" in version_entry(switched_off)["reason"]
