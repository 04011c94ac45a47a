"""Unit tests for telling model files apart (scoring/importing/artifact_files.py): by name when
listing a run's files, by first bytes when reading the one --artifact names. No server."""

from __future__ import annotations

import json

import joblib
import lightgbm as lgb
import numpy as np
import pytest
import skops.io

from scoring.importing.artifact_files import is_model_like, sniff
from scoring.importing.errors import UnservableModel


@pytest.mark.parametrize(
    "path",
    ["production_model.pkl", "models/lgbm.joblib", "model.txt", "booster.json", "clf.skops"],
)
def test_model_files_are_recognised_by_name(path):
    assert is_model_like(path)


@pytest.mark.parametrize(
    "path",
    ["threshold_analysis.json", "feature_importance.csv", "notes.txt", "reason_codes.yaml"],
)
def test_other_run_files_are_not_taken_for_models(path):
    assert not is_model_like(path)


@pytest.fixture(scope="module")
def classifier() -> lgb.LGBMClassifier:
    rows = np.random.default_rng(0).normal(size=(100, 2))
    return lgb.LGBMClassifier(n_estimators=2, verbose=-1).fit(rows, rows[:, 0] > 0)


@pytest.mark.parametrize(
    ("name", "write", "serialization"),
    [
        ("any_name.bin", lambda m, p: m.booster_.save_model(p), "lightgbm-text"),
        ("any_name.bin", lambda m, p: skops.io.dump(m, p), "skops"),
        ("model.pkl", lambda m, p: joblib.dump(m, p), "pickle"),
        ("any_name.bin", lambda m, p: joblib.dump(m, p, compress=3), "joblib"),
        ("model.joblib", lambda m, p: joblib.dump(m, p), "joblib"),
    ],
)
def test_a_model_file_is_read_by_what_its_bytes_say(
    classifier, tmp_path, name, write, serialization
):
    path = tmp_path / name
    write(classifier, path)
    assert sniff(path, name).serialization == serialization


def test_a_dump_model_json_is_refused_naming_save_model(classifier, tmp_path):
    path = tmp_path / "model.json"
    path.write_text(json.dumps(classifier.booster_.dump_model()))
    with pytest.raises(UnservableModel, match=r"save_model\('model.txt'\)"):
        sniff(path, "model.json")


def test_a_file_that_is_no_model_is_refused(tmp_path):
    path = tmp_path / "model.txt"
    path.write_text("accuracy: 0.91\n")
    with pytest.raises(UnservableModel, match="not a model file the import reads"):
        sniff(path, "model.txt")
