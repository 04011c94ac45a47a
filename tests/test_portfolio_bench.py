"""A smoke run of loadtest/portfolio_bench.py at tiny size, on the session's demo model: the
job's and the ceiling's child processes run, report rows/s, and the job's peak memory is
measured in the JVM and in Spark's Python workers (the full run is `python -m
loadtest.portfolio_bench`, minutes on the full-size model)."""

from __future__ import annotations

import json
import os
import sys

import bentoml
import pytest

from loadtest import portfolio_bench
from tests.portfolio_spark import needs_java, write_portfolio

pytestmark = [needs_java, pytest.mark.server, pytest.mark.timeout(600)]


def test_the_bench_measures_the_job_and_the_ceiling_with_their_memory(
    production_model, demo_rows, bentoml_home, tmp_path
):
    model = bentoml.models.get(production_model)
    features = [f["name"] for f in model.info.metadata["features"]]
    book = write_portfolio(tmp_path / "book.parquet", demo_rows, list(range(len(demo_rows))))
    args = ["--input", str(book), "--model", production_model, "--model-dir", model.path]
    args += ["--features", json.dumps(features), "--work", str(tmp_path)]
    env = {**os.environ, "BENTOML_HOME": str(bentoml_home), "PYSPARK_PYTHON": sys.executable}
    job = portfolio_bench.child("portfolio", args, env)
    assert "error" not in job, job
    assert job["rows"] == len(demo_rows)
    assert job["rows_per_s"] > 0
    assert job["reader"].startswith("pyarrow in each task")
    assert job["peak_mb"]["jvm_mb"] > 100
    assert job["peak_mb"]["python_workers_mb"] > 50
    ceiling = portfolio_bench.child("ceiling", args, env)
    assert ceiling["rows_per_s"] > job["rows_per_s"]
