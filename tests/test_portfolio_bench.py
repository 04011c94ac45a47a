"""A smoke run of loadtest/portfolio_bench.py at tiny size, on the session's demo model: the
job's and the ceiling's child processes run, report rows/s, and the job's peak memory and CPU
time are measured in the JVM and in Spark's Python workers (the full run is `python -m
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
    # Where the cores' time went: the JVM started; the groups are a part of the machine's time.
    assert job["cpu_s"]["jvm_s"] > 1
    groups = sum(v for k, v in job["cpu_s"].items() if k != "machine_busy_s")
    assert groups <= job["cpu_s"]["machine_busy_s"] + 0.5
    ceiling = portfolio_bench.child("ceiling", args, env)
    assert ceiling["rows_per_s"] > job["rows_per_s"]


def test_two_sizes_give_the_jobs_fixed_cost_and_its_marginal_rate():
    # 1M rows in 24 s and 3M in 56 s: 62,500 rows/s once running, after 8 s of fixed cost.
    split = portfolio_bench.fixed_and_marginal(1_000_000, 24.0, 3_000_000, 56.0)
    assert split.rows_per_s == pytest.approx(62_500)
    assert split.fixed_s == pytest.approx(8.0)
    # End to end, N / (8 + N / 62,500) = 50,000 rows/s at N = 2,000,000.
    assert split.rows_reaching(50_000) == pytest.approx(2_000_000)
    assert split.rows_reaching(62_500) is None  # the marginal rate is never exceeded
    with pytest.raises(ValueError, match="more rows"):
        portfolio_bench.fixed_and_marginal(1_000_000, 24.0, 1_000_000, 30.0)
