"""Rolling back is re-importing the previous run: on a fresh Bento store (a new build machine,
a lost cache) the same run imports to the same tag and the same files, and serves the same
answers, byte for byte, as it did before."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from loadtest.processes import ROOT, free_port, running

pytestmark = pytest.mark.server


def import_into(home: Path, uri: str, *flags: str) -> str:
    env = {**os.environ, "BENTOML_HOME": str(home)}
    result = subprocess.run(
        [sys.executable, "import_model.py", "--tracking-uri", uri, "--compile", *flags],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    # "imported credit_scoring:v1-...: run ..." (or "already in the Bento store, reused")
    words = result.stdout.split()
    return next(word for word in words if word.startswith("credit_scoring:")).rstrip(":")


def answers(home: Path, tag: str, log: Path, body: dict) -> bytes:
    port = free_port()
    env = {
        **os.environ,
        "BENTOML_HOME": str(home),
        "SCORING_MODEL_TAG": tag,
        "SCORING_WORKERS": "1",
    }
    command = [sys.executable, "-m", "bentoml", "serve", "service:CreditScoring",
               "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    with running(command, f"{url}/readyz", log, env=env, timeout_s=120):
        response = requests.post(f"{url}/predict_with_reasons", json=body, timeout=30)
        assert response.status_code == 200, response.text
        run_id = requests.get(f"{url}/version", timeout=10).json()["run_id"]
        return response.content + run_id.encode()


def test_a_previous_run_re_imported_on_a_fresh_store_answers_exactly_as_before(tmp_path, demo_rows):
    from demo_store.mlflow_runs import TINY, build_demo_store

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    build_demo_store(uri, TINY, artifact_root=tmp_path / "artifacts", seed=3)
    body = {"applications": demo_rows[:50]}
    first_tag = import_into(tmp_path / "home-1", uri)
    before = answers(tmp_path / "home-1", first_tag, tmp_path / "before.log", body)
    # Later, on a new machine: the version rolled back to is named explicitly.
    again_tag = import_into(tmp_path / "home-2", uri, "--version", "1")
    assert again_tag == first_tag
    after = answers(tmp_path / "home-2", again_tag, tmp_path / "after.log", body)
    assert after == before
