"""A few seconds of the Locust load test against a real `bentoml serve`: zero failures."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest

from loadtest.processes import ROOT, free_port, running

pytestmark = pytest.mark.server


def test_locust_smoke_run_has_no_failures(production_model, bentoml_home, tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "BENTOML_HOME": str(bentoml_home)}
    serve = [sys.executable, "-m", "bentoml", "serve", "service:CreditScoring",
             "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    with running(serve, f"{url}/readyz", tmp_path / "serve.log", env=env):
        result = subprocess.run(
            [sys.executable, "-m", "locust", "--config", "loadtest/locust.conf", "--host", url,
             "--users", "4", "--spawn-rate", "4", "--run-time", "5s",
             "--csv", str(tmp_path / "smoke"), "--html", str(tmp_path / "smoke.html")],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
            # The smoke run checks correctness; the p99 bar is for the benchmark machine.
            env={**env, "SCORING_SLO_P99_MS": "5000", "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    with (tmp_path / "smoke_stats.csv").open() as stats:
        total = next(row for row in csv.DictReader(stats) if row["Name"] == "Aggregated")
    assert int(total["Request Count"]) > 20
    assert int(total["Failure Count"]) == 0
