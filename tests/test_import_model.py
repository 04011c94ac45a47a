"""import_model.py against a real MLflow server holding a messy team store, and a real Bento
model store in a temporary BENTOML_HOME. One refusal per test, named for the behaviour."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import bentoml
import lightgbm as lgb
import mlflow
import numpy as np
import pytest

import import_model
from loadtest.processes import ROOT, free_port
from scoring.importing import errors
from scoring.stored_model.layout import BOOSTER_FILE
from tests.service_helpers import bento_models

pytestmark = pytest.mark.server


def run_import(store, *args: str) -> int:
    return import_model.main(["--tracking-uri", store.tracking_uri, *args])


def assert_refused(capsys, store, exit_code: int, expected_text: str, *args: str) -> None:
    bento_name = f"refusal_{exit_code}_{abs(hash(args)) % 10**8}"
    before = bento_models(bento_name)
    assert run_import(store, "--bento-name", bento_name, *args) == exit_code
    stderr = capsys.readouterr().err.strip()
    assert len(stderr.splitlines()) == 1, stderr
    assert expected_text in stderr
    assert bento_models(bento_name) == before == []


def test_import_resolves_production_alias_and_labels_run_and_threshold(messy_store, capsys):
    assert run_import(messy_store, "--bento-name", "alias_import") == 0
    assert "imported alias_import:v1-" in capsys.readouterr().out
    (tag,) = bento_models("alias_import")
    labels = bentoml.models.get(tag).info.labels
    assert labels["run_id"] == messy_store.production_run_id
    assert labels["registered_model"] == "credit_scoring"
    assert labels["model_version"] == "1"
    assert labels["model_alias"] == "production"
    assert labels["experiment"] == "credit_scoring_production"
    assert labels["stage"] == "production"
    assert 0 < float(labels["threshold"]) < 1
    assert labels["threshold_source"] == "run param decision_threshold"


def test_import_records_lineage_metadata_with_redacted_credentials(messy_store, capsys):
    uri_with_password = messy_store.tracking_uri.replace("http://", "http://alice:s3cret@")
    assert import_model.main(["--tracking-uri", uri_with_password, "--bento-name", "redacted"]) == 0
    (tag,) = bento_models("redacted")
    metadata = bentoml.models.get(tag).info.metadata
    assert "s3cret" not in str(metadata)
    assert "alice" not in str(metadata)
    assert metadata["tracking_uri"].startswith("http://***@127.0.0.1:")
    assert metadata["mlflow_model_uri"].startswith("models:/m-")
    assert {"roc_auc", "precision", "recall", "f1", "business_cost"} <= set(metadata["metrics"])
    assert metadata["features"][0] == {"name": "AMT_INCOME_TOTAL", "type": "double"}
    assert set(metadata["library_versions"]) == {"lightgbm", "mlflow", "bentoml"}
    assert metadata["imported_at"]


def test_import_twice_reuses_the_existing_bento_model(messy_store, capsys):
    assert run_import(messy_store, "--bento-name", "twice") == 0
    first = bento_models("twice")
    assert run_import(messy_store, "--bento-name", "twice") == 0
    assert "already in the Bento store, reused" in capsys.readouterr().out
    assert bento_models("twice") == first


def test_bento_model_probabilities_equal_the_mlflow_models(messy_store, capsys):
    assert run_import(messy_store, "--bento-name", "equality") == 0
    (tag,) = bento_models("equality")
    booster = lgb.Booster(model_file=bentoml.models.get(tag).path_of(BOOSTER_FILE))
    mlflow.set_tracking_uri(messy_store.tracking_uri)
    original = mlflow.lightgbm.load_model("models:/credit_scoring/1")
    rows = messy_store.features_sample  # a pandas frame with `category` columns
    np.testing.assert_allclose(
        booster.predict(rows),  # the stored booster maps the categories as at training
        original.predict_proba(rows)[:, 1],
        rtol=0,
        atol=1e-9,
    )


def test_import_by_explicit_run_id(messy_store, capsys):
    run_id = messy_store.production_run_id
    assert run_import(messy_store, "--run-id", run_id, "--bento-name", "by_run") == 0
    (tag,) = bento_models("by_run")
    assert tag.startswith("by_run:run-")
    assert bentoml.models.get(tag).info.labels["run_id"] == run_id


def test_threshold_flag_overrides_and_settles_conflicting_sources(messy_store, capsys):
    run_id = messy_store.conflicting_threshold_run_id
    args = ("--run-id", run_id, "--threshold", "0.45", "--bento-name", "settled")
    assert run_import(messy_store, *args) == 0
    (tag,) = bento_models("settled")
    labels = bentoml.models.get(tag).info.labels
    assert (labels["threshold"], labels["threshold_source"]) == ("0.45", "--threshold flag")


def test_best_by_skips_a_better_run_without_a_model(messy_store, capsys):
    # final_model_application has roc_auc 0.99 but no model; the production run is next best
    # among runs with a threshold, and the deleted tuned run is not considered.
    args = ("--best-by", "roc_auc", "--dry-run")
    assert run_import(messy_store, *args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("refused")
    assert "no model artifact" in lines[0]
    assert lines[-1].startswith("chosen")
    assert messy_store.production_run_id in lines[-1]


def test_dry_run_prints_the_choice_and_writes_nothing(messy_store, capsys):
    assert run_import(messy_store, "--bento-name", "dry", "--dry-run") == 0
    out = capsys.readouterr().out
    assert out.startswith("chosen   run " + messy_store.production_run_id)
    assert "[alias credit_scoring@production]" in out
    assert bento_models("dry") == []


def test_import_refuses_two_runs_claiming_production(messy_store, capsys):
    assert_refused(
        capsys,
        messy_store,
        errors.AmbiguousProduction.exit_code,
        "2 runs are tagged stage=production",
        "--tag",
        "stage=production",
    )


def test_import_refuses_a_production_run_missing_its_model(messy_store, capsys):
    assert_refused(
        capsys,
        messy_store,
        errors.BrokenRun.exit_code,
        "has no model artifact",
        "--tag",
        "stage=production",
        "--experiment",
        "credit_scoring_final_delivery",
    )


def test_import_refuses_a_registered_model_without_production_alias(messy_store, capsys):
    assert_refused(
        capsys,
        messy_store,
        errors.NoProductionModel.exit_code,
        "has no alias 'production'",
        "--model-name",
        "unaliased_model",
    )


def test_import_refuses_an_alias_pointing_at_a_deleted_run(messy_store, capsys):
    assert_refused(
        capsys,
        messy_store,
        errors.BrokenRun.exit_code,
        "which is deleted",
        "--model-name",
        "deleted_run_model",
    )


def test_import_refuses_a_partially_downloadable_model(messy_store, capsys):
    assert_refused(
        capsys,
        messy_store,
        errors.BrokenRun.exit_code,
        "incomplete or corrupt",
        "--run-id",
        messy_store.partial_artifact_run_id,
    )


def test_import_refuses_a_model_that_is_not_lightgbm(messy_store, capsys):
    assert_refused(
        capsys,
        messy_store,
        errors.UnservableModel.exit_code,
        "not LightGBM",
        "--run-id",
        messy_store.not_lightgbm_run_id,
    )


def test_import_refuses_a_multiclass_lightgbm_model(messy_store, capsys):
    assert_refused(
        capsys,
        messy_store,
        errors.UnservableModel.exit_code,
        "not 2 (binary)",
        "--run-id",
        messy_store.multiclass_run_id,
    )


def test_import_refuses_a_model_without_signature(messy_store, capsys):
    assert_refused(
        capsys,
        messy_store,
        errors.UnservableModel.exit_code,
        "no signature",
        "--run-id",
        messy_store.no_signature_run_id,
    )


def test_import_refuses_a_run_without_threshold(messy_store, capsys):
    assert_refused(
        capsys,
        messy_store,
        errors.ThresholdProblem.exit_code,
        "no decision threshold",
        "--run-id",
        messy_store.missing_threshold_run_id,
    )


def test_import_refuses_a_threshold_outside_zero_one(messy_store, capsys):
    assert_refused(
        capsys,
        messy_store,
        errors.ThresholdProblem.exit_code,
        "outside (0, 1)",
        "--run-id",
        messy_store.out_of_range_threshold_run_id,
    )


def test_import_refuses_an_out_of_range_threshold_flag(messy_store, capsys):
    assert_refused(
        capsys, messy_store, errors.ThresholdProblem.exit_code, "--threshold=0", "--threshold", "0"
    )


def test_import_refuses_conflicting_thresholds(messy_store, capsys):
    assert_refused(
        capsys,
        messy_store,
        errors.ThresholdProblem.exit_code,
        "run param optimal_threshold=0.48, run metric optimal_threshold=0.338",
        "--run-id",
        messy_store.conflicting_threshold_run_id,
    )


def test_cli_exits_fast_with_one_line_when_tracking_server_is_unreachable(tmp_path):
    closed_port = free_port()
    started = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            "import_model.py",
            "--tracking-uri",
            f"http://127.0.0.1:{closed_port}",
            "--timeout",
            "3",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**__import__("os").environ, "BENTOML_HOME": str(tmp_path)},
    )
    assert result.returncode == errors.TrackingUnreachable.exit_code, result.stderr
    assert result.stderr.count("\n") == 1
    assert "cannot reach the MLflow tracking server" in result.stderr
    assert time.monotonic() - started < 60
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())


def test_cli_refuses_a_missing_local_store_without_creating_one(tmp_path):
    missing = tmp_path / "absent" / "mlflow.db"
    result = subprocess.run(
        [sys.executable, "import_model.py", "--tracking-uri", f"sqlite:///{missing}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**__import__("os").environ, "BENTOML_HOME": str(tmp_path)},
    )
    assert result.returncode == errors.TrackingUnreachable.exit_code
    assert f"no MLflow store at {missing}" in result.stderr
    assert not missing.exists()


def test_best_by_with_no_complete_run_is_refused_as_a_broken_run(messy_store, capsys):
    # The only run of this experiment logged a metric but no model: a refusal with its own
    # exit code, not the generic one.
    assert_refused(
        capsys,
        messy_store,
        errors.BrokenRun.exit_code,
        "has no model artifact",
        "--best-by",
        "roc_auc",
        "--experiment",
        "credit_scoring_final_delivery",
    )


@pytest.fixture(scope="module")
def two_model_run(messy_store) -> str:
    """A run that logged two LightGBM models: which one is production cannot be told."""
    mlflow.set_tracking_uri(messy_store.tracking_uri)
    mlflow.set_experiment("two_models_in_one_run")
    rows = np.random.default_rng(0).normal(size=(200, 3))
    labels = (rows[:, 0] > 0).astype(int)
    model = lgb.LGBMClassifier(n_estimators=3, verbose=-1).fit(rows, labels)
    with mlflow.start_run() as run:
        mlflow.log_metric("roc_auc", 0.7)
        mlflow.log_param("decision_threshold", 0.5)
        for name in ("champion", "challenger"):
            mlflow.lightgbm.log_model(model, name=name, input_example=rows[:2])
    return run.info.run_id


@pytest.mark.parametrize("how", ["run-id", "best-by"])
def test_a_run_with_two_models_is_refused_as_ambiguous(messy_store, two_model_run, capsys, how):
    args = (
        ("--run-id", two_model_run)
        if how == "run-id"
        else ("--best-by", "roc_auc", "--experiment", "two_models_in_one_run")
    )
    assert_refused(
        capsys,
        messy_store,
        errors.AmbiguousProduction.exit_code,
        "logged several models",
        *args,
    )


def test_exit_code_help_lists_every_refusal(capsys):
    with pytest.raises(SystemExit):
        import_model.main(["--help"])
    out = capsys.readouterr().out
    for refusal in errors.REFUSALS:
        assert f"  {refusal.exit_code}  {refusal.meaning}" in out


USER, TOKEN = "alice", "tok-5ecret-v4lue"


def with_credentials(uri: str) -> str:
    return uri.replace("http://", f"http://{USER}:{TOKEN}@")


@pytest.mark.parametrize(
    "args",
    [
        (),
        ("--dry-run",),
        ("--run-id", "0123456789abcdef0123456789abcdef"),
        ("--tag", "stage=production"),
        ("--tag", "stage=production", "--dry-run"),
        ("--version", "99"),
        ("--best-by", "roc_auc", "--experiment", "credit_scoring_final_delivery", "--dry-run"),
    ],
)
def test_import_output_never_prints_the_tracking_credentials(messy_store, capsys, args):
    """Imports, dry runs and each kind of refusal, with a credentialed tracking URI."""
    code = import_model.main(
        [
            "--tracking-uri",
            with_credentials(messy_store.tracking_uri),
            "--bento-name",
            "creds",
            *args,
        ]
    )
    captured = capsys.readouterr()
    assert captured.out + captured.err
    assert TOKEN not in captured.out + captured.err
    assert f"{USER}:" not in captured.out + captured.err
    if code != 0:
        assert len(captured.err.splitlines()) == 1, captured.err


@pytest.mark.parametrize("args", [(), ("--dry-run",), ("--run-id", "0123abcd")])
def test_an_unreachable_credentialed_server_is_refused_without_printing_credentials(tmp_path, args):
    uri = f"http://{USER}:{TOKEN}@127.0.0.1:{free_port()}"
    result = subprocess.run(
        [sys.executable, "import_model.py", "--tracking-uri", uri, "--timeout", "3", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "BENTOML_HOME": str(tmp_path)},
    )
    assert result.returncode == errors.TrackingUnreachable.exit_code, result.stderr
    assert "cannot reach the MLflow tracking server at http://***@127.0.0.1:" in result.stderr
    assert TOKEN not in result.stdout + result.stderr
    assert f"{USER}:" not in result.stdout + result.stderr
