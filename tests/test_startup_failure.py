"""A model the service cannot serve stops `bentoml serve` once, with one line naming the model
and the reason, instead of workers failing and being restarted over and over."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import bentoml
import pytest

from loadtest.processes import ROOT, free_port
from scoring.serving.edge.startup import CANNOT_SERVE_EXIT_CODE
from scoring.stored_model.layout import BOOSTER_FILE

pytestmark = pytest.mark.server


def copy_of(source_tag: str, tag: str, labels: dict[str, str] | None = None) -> Path:
    """The production model stored again under `tag`, optionally with other labels."""
    source = bentoml.models.get(source_tag)
    with bentoml.models.create(
        tag, labels=source.info.labels if labels is None else labels, metadata=source.info.metadata
    ) as model:
        for item in Path(source.path).iterdir():
            if item.is_file() and item.name != "model.yaml":
                shutil.copy(item, model.path_of(item.name))
    return Path(bentoml.models.get(tag).path)


def serve(tag: str, bentoml_home: Path, **settings: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "BENTOML_HOME": str(bentoml_home), "SCORING_MODEL_TAG": tag, **settings}
    command = [sys.executable, "-m", "bentoml", "serve", "service:CreditScoring",
               "--host", "127.0.0.1", "--port", str(free_port())]  # fmt: skip
    return subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, errors="replace", timeout=120
    )


def assert_stopped_once_with_one_line(result: subprocess.CompletedProcess, tag: str, reason: str):
    output = result.stdout + result.stderr
    assert result.returncode == CANNOT_SERVE_EXIT_CODE, output[-3000:]
    lines = [
        line for line in output.splitlines() if line.startswith("credit_scoring: cannot serve")
    ]
    assert len(lines) == 1, output[-3000:]
    assert tag in lines[0]
    assert reason in lines[0]
    assert "Traceback" not in output
    assert len(output) < 5000, f"{len(output)} bytes of output"


def test_a_model_imported_without_its_threshold_label_stops_the_server(
    production_model, bentoml_home
):
    labels = {k: v for k, v in bentoml.models.get(production_model).info.labels.items()}
    del labels["threshold"]
    copy_of(production_model, "credit_scoring_old:v0", labels)
    result = serve("credit_scoring_old:v0", bentoml_home)
    assert_stopped_once_with_one_line(result, "credit_scoring_old:v0", "threshold")


def test_a_corrupt_model_file_stops_the_server(production_model, bentoml_home):
    folder = copy_of(production_model, "credit_scoring_corrupt:v0")
    booster_file = folder / BOOSTER_FILE
    booster_file.write_bytes(booster_file.read_bytes()[:2000])
    result = serve("credit_scoring_corrupt:v0", bentoml_home)
    assert_stopped_once_with_one_line(result, "credit_scoring_corrupt:v0", BOOSTER_FILE)


def test_a_model_missing_from_the_store_stops_the_server(bentoml_home):
    result = serve("credit_scoring:never-imported", bentoml_home)
    assert_stopped_once_with_one_line(result, "credit_scoring:never-imported", "Bento store")


def test_a_bad_setting_stops_the_server_naming_the_variable(production_model, bentoml_home):
    result = serve(production_model, bentoml_home, SCORING_THRESHOLD="1.5")
    assert_stopped_once_with_one_line(result, "settings", "SCORING_THRESHOLD")
