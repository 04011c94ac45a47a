"""`import_model.py --role challenger`: a second model imported beside the champion, refused
unless it can read the champion's requests, with the store left as it was."""

from __future__ import annotations

from pathlib import Path

import bentoml
import lightgbm as lgb
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.models import infer_signature

import import_model
from tests.service_helpers import bento_models


def log_run(uri: str, artifacts: Path, frame: pd.DataFrame, target: np.ndarray) -> str:
    """A team's run: a small booster with its signature and threshold, as mlflow.lightgbm logs;
    its artifacts under `artifacts` (a sqlite store would put them in ./mlruns)."""
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    experiment = mlflow.create_experiment("challenger-misfit", artifact_location=artifacts.as_uri())
    mlflow.set_experiment(experiment_id=experiment)
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "seed": 0}, lgb.Dataset(frame, target), 10
    )
    with mlflow.start_run() as run:
        mlflow.lightgbm.log_model(
            booster, name="model", signature=infer_signature(frame, booster.predict(frame))
        )
        mlflow.log_param("decision_threshold", 0.5)
    return run.info.run_id


@pytest.fixture(scope="module")
def misfit_run(tmp_path_factory, production_model) -> tuple[str, str]:
    """A run on the champion's features and one more, which the champion's requests lack."""
    names = bentoml.models.get(production_model).info.metadata["features"]
    numeric = [f["name"] for f in names if not f.get("categories") and f["type"] == "double"]
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(400, 4)), columns=[*numeric[:3], "SHOE_SIZE"])
    root = tmp_path_factory.mktemp("misfit")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    target = (frame.iloc[:, 0] > 0).to_numpy().astype(int)
    return uri, log_run(uri, root / "artifacts", frame, target)


def test_a_challenger_is_imported_under_its_own_name_with_its_role(challenger_model):
    model = bentoml.models.get(challenger_model)
    assert challenger_model.startswith("credit_scoring_challenger:")
    assert model.info.labels["role"] == "challenger"


def test_a_challenger_reading_a_column_the_champion_lacks_is_refused_naming_it(misfit_run, capsys):
    uri, run_id = misfit_run
    before = bento_models("credit_scoring_challenger")
    code = import_model.main(["--tracking-uri", uri, "--run-id", run_id, "--role", "challenger"])
    err = capsys.readouterr().err
    assert code == 12, err
    assert "SHOE_SIZE" in err
    assert "Traceback" not in err
    assert bento_models("credit_scoring_challenger") == before


def test_a_challenger_without_a_champion_to_compare_is_refused(misfit_run, capsys):
    uri, run_id = misfit_run
    code = import_model.main(
        ["--tracking-uri", uri, "--run-id", run_id, "--role", "challenger",
         "--champion", "credit_scoring:never-imported"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 12, err
    assert "import the champion first" in err


def test_a_challenger_under_the_champions_name_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as stopped:
        import_model.parse_args(["--role", "challenger", "--bento-name", "credit_scoring"])
    assert stopped.value.code == 2
    assert "a Bento name of its own" in capsys.readouterr().err
