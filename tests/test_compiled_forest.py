"""The compiled forest (scoring/stored_model/compiled.py, `import_model.py --compile`): real lleaves
compilation of real LightGBM models, then served by a real `bentoml serve`."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import bentoml
import lightgbm as lgb
import numpy as np
import pytest
import requests

import import_model
from demo_store.mlflow_runs import TINY, build_demo_store
from loadtest.processes import ROOT, free_port, running
from scoring.core.contract import FeatureSpec
from scoring.core.model import ModelCannotServe, ServedModel
from scoring.serving.forms.records import application_model
from scoring.stored_model import compiled
from scoring.stored_model.layout import (
    BOOSTER_FILE,
    CHECKSUMS_KEY,
    COMPILED_FILE,
    PROBE_FILE,
    file_sha256,
)
from tests.service_helpers import code_matrix, reference_probabilities

pytestmark = pytest.mark.skipif(
    not compiled.runs_here(),
    reason=f"forests compile for {compiled.ARCHITECTURE}",
)
BENTO_NAME = "credit_scoring_compiled"


@pytest.fixture(scope="module")
def imports(tmp_path_factory, bentoml_home) -> dict[str, str]:
    """The same model version imported with and without --compile: {"compiled"|"booster": tag}."""
    root = tmp_path_factory.mktemp("compiled-store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    build_demo_store(uri, TINY, artifact_root=root / "artifacts")
    args = ["--tracking-uri", uri, "--bento-name", BENTO_NAME]
    assert import_model.main([*args, "--compile"]) == 0
    compiled_tag = str(bentoml.models.get(f"{BENTO_NAME}:latest").tag)
    assert import_model.main(args) == 0  # the same version, not compiled: a model of its own
    booster_tag = str(bentoml.models.get(f"{BENTO_NAME}:latest").tag)
    assert booster_tag != compiled_tag
    return {"compiled": compiled_tag, "booster": booster_tag}


@pytest.fixture(scope="module")
def compiled_model(imports) -> str:
    return imports["compiled"]


def train(x: np.ndarray, y: np.ndarray) -> lgb.Booster:
    params = {"objective": "binary", "verbose": -1, "min_data_in_leaf": 5, "num_leaves": 4}
    return lgb.train(params, lgb.Dataset(x, y), num_boost_round=5)


def compile_to(booster: lgb.Booster, folder: Path) -> tuple[Path, Path]:
    booster_file, forest_file = folder / BOOSTER_FILE, folder / COMPILED_FILE
    booster.save_model(booster_file)
    compiled.compile_forest(booster_file, forest_file)
    return booster_file, forest_file


def test_compiled_import_stores_the_forest_and_says_so(compiled_model, imports):
    model = bentoml.models.get(compiled_model)
    assert Path(model.path_of(COMPILED_FILE)).stat().st_size > 0
    assert model.info.labels["compiled_forest"] == compiled.TARGET_CPU
    assert model.info.metadata["compiled_forest"]["target_cpu"] == compiled.TARGET_CPU
    plain = bentoml.models.get(imports["booster"])
    assert plain.info.labels["compiled_forest"] == "no"
    assert not Path(plain.path_of(COMPILED_FILE)).exists()


def test_compiled_forest_scores_like_the_booster(compiled_model, demo_rows):
    model = bentoml.models.get(compiled_model)
    booster = lgb.Booster(model_file=model.path_of(BOOSTER_FILE))
    forest = compiled.load_forest(
        Path(model.path_of(BOOSTER_FILE)), Path(model.path_of(COMPILED_FILE)), booster
    )
    rows = code_matrix(compiled_model, demo_rows)
    assert np.isnan(rows).any()  # missing values take their own branches
    expected = reference_probabilities(compiled_model, demo_rows)  # LightGBM on a pandas frame
    assert np.abs(forest.predict(rows) - expected).max() <= 1e-12
    probes = compiled.probe_rows(booster)
    assert np.abs(forest.predict(probes, num_threads=2) - booster.predict(probes)).max() <= 1e-12


def test_the_import_stores_the_probe_rows_it_checked_and_loading_reads_them(
    compiled_model, monkeypatch
):
    model = bentoml.models.get(compiled_model)
    booster = lgb.Booster(model_file=model.path_of(BOOSTER_FILE))
    stored = Path(model.path_of(PROBE_FILE))
    # The rows drawn again from the booster: the stored ones are the same draw, checksummed.
    np.testing.assert_array_equal(np.load(stored), compiled.probe_rows(booster))
    assert model.info.metadata[CHECKSUMS_KEY][PROBE_FILE] == file_sha256(stored)

    def no_walk(_booster):
        raise AssertionError("the stored probe rows were not used")

    monkeypatch.setattr(compiled, "probe_rows", no_walk)  # a spy: loading must not walk
    probes = compiled.stored_probe_rows(stored, booster)
    assert probes.shape == (256, booster.num_feature())


def test_stored_probe_rows_that_do_not_fit_the_booster_are_drawn_again(compiled_model, tmp_path):
    booster = lgb.Booster(model_file=bentoml.models.get(compiled_model).path_of(BOOSTER_FILE))
    wrong = tmp_path / PROBE_FILE
    compiled.save_probe_rows(np.zeros((4, booster.num_feature() + 1)), wrong)
    np.testing.assert_array_equal(
        compiled.stored_probe_rows(wrong, booster), compiled.probe_rows(booster)
    )
    absent = tmp_path / "absent.npy"  # a model imported before the rows were stored
    np.testing.assert_array_equal(
        compiled.stored_probe_rows(absent, booster), compiled.probe_rows(booster)
    )


def test_altered_probe_rows_stop_the_model_from_loading(compiled_model, tmp_path):
    model = bentoml.models.get(compiled_model)
    copy = tmp_path / "model"
    shutil.copytree(model.path, copy)
    probes = np.load(copy / PROBE_FILE)
    compiled.save_probe_rows(probes[:10], copy / PROBE_FILE)  # e.g. rows that miss a branch
    altered = bentoml.models.Model.from_path(str(copy))
    spec = FeatureSpec.from_metadata(altered.info.metadata["features"])
    example = json.loads(altered.info.metadata["input_example_json"])
    with pytest.raises(ModelCannotServe, match=f"{PROBE_FILE} differs from what was imported"):
        ServedModel.load(altered, spec, application_model(spec, example, "refuse"), example)


def test_values_in_lightgbms_zero_band_are_scored_by_the_booster(tmp_path):
    # A split between 0 and negative values sits at LightGBM's -kZeroThreshold; a value just
    # inside that float bound is "zero" to LightGBM but not to lleaves.
    rng = np.random.default_rng(0)
    x = rng.choice([-1.0, 0.0, 1.0], size=(400, 2))
    y = (x[:, 0] < 0).astype(float)
    booster = train(x, y)
    booster_file, forest_file = compile_to(booster, tmp_path)
    forest = compiled.load_forest(booster_file, forest_file, booster)
    edge = float(np.float32(-1e-35))
    rows = np.array([[edge, 0.0], [-1e-35, 0.0], [-1.0, 0.0], [0.0, 0.0]])
    raw = forest.model.predict(rows, n_jobs=1)  # lleaves alone
    assert np.abs(raw - booster.predict(rows)).max() > 1e-6, "the zero band no longer differs"
    assert np.abs(forest.predict(rows) - booster.predict(rows)).max() <= 1e-12


def test_a_forest_compiled_from_another_model_is_refused(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 3))
    first, second = train(x, (x[:, 0] > 0).astype(float)), train(x, (x[:, 1] > 0).astype(float))
    (tmp_path / "a").mkdir()
    booster_file, forest_file = compile_to(first, tmp_path / "a")
    forest = compiled.load_forest(booster_file, forest_file, second)
    with pytest.raises(compiled.CompiledForestMismatchError, match="re-import without"):
        compiled.check_matches_booster(forest, second, compiled.probe_rows(second))


@pytest.mark.server
@pytest.mark.parametrize(
    ("kind", "predictor"), [("compiled", "compiled forest, lleaves"), ("booster", "lightgbm")]
)
def test_the_service_scores_with_the_predictor_the_model_carries(
    imports, kind, predictor, bentoml_home, demo_rows, tmp_path
):
    model_tag = imports[kind]
    port = free_port()
    env = {**os.environ, "BENTOML_HOME": str(bentoml_home), "SCORING_MODEL_TAG": model_tag}
    command = [sys.executable, "-m", "bentoml", "serve", "service:CreditScoring"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    url = f"http://127.0.0.1:{port}"
    os.chdir(ROOT)
    with running(command, f"{url}/readyz", tmp_path / "serve.log", env=env, timeout_s=120):
        version = requests.get(f"{url}/version", timeout=10).json()
        response = requests.post(f"{url}/predict", json={"applications": demo_rows}, timeout=30)
    assert version["model_tag"] == model_tag
    assert version["predictor"].startswith(predictor)
    assert response.status_code == 200, response.text
    served = [p["probability_of_default"] for p in response.json()]
    expected = reference_probabilities(model_tag, demo_rows)
    assert served == pytest.approx(list(expected), abs=1e-12)
