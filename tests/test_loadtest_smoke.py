"""A few seconds of the Locust load test against a real `bentoml serve`: zero failures."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from loadtest.memory import server_memory
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


def test_equal_workers_floor_scores_like_the_service_from_its_own_sockets(
    production_model, demo_rows, tmp_path
):
    """The benchmark's like-for-like floor: two processes, each on its own SO_REUSEPORT socket,
    scoring with the model's compiled forest; its answers equal LightGBM's own, from JSON and
    from an Arrow stream (columns by name: sent in reverse order)."""
    import bentoml
    import numpy as np
    import pyarrow as pa
    import requests

    from loadtest.payloads import arrow_stream
    from scoring.stored_model.layout import BOOSTER_FILE, COMPILED_FILE
    from tests.service_helpers import reference_probabilities

    model = bentoml.models.get(production_model)
    port = free_port()
    command = [sys.executable, "-m", "loadtest.floor_server", "--workers", "2",
               "--model-file", model.path_of(BOOSTER_FILE),
               "--compiled-file", model.path_of(COMPILED_FILE), "--port", str(port)]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with running(command, f"{url}/health", tmp_path / "floor.log", env=env) as floor:
        answered = requests.post(f"{url}/predict", json={"applications": demo_rows}, timeout=30)
        table = pa.Table.from_pylist(demo_rows)
        table = table.select(table.column_names[::-1])
        from_arrow = requests.post(
            f"{url}/predict_arrow",
            data=arrow_stream(table),
            headers={"Content-Type": "application/vnd.apache.arrow.stream"},
            timeout=30,
        )
        children = subprocess.run(
            ["pgrep", "-P", str(floor.pid)], capture_output=True, text=True, check=False
        ).stdout.split()
        memory = server_memory(floor.pid)
    assert answered.status_code == 200, answered.text
    expected = reference_probabilities(production_model, demo_rows)
    np.testing.assert_allclose(answered.json(), expected, rtol=0, atol=1e-9)
    assert from_arrow.status_code == 200, from_arrow.text
    np.testing.assert_allclose(from_arrow.json(), expected, rtol=0, atol=1e-9)
    assert len(children) >= 2  # the two serving processes (spawn may add its tracker)
    # The benchmark's memory figures: the parent and every process it started, each loaded.
    assert len(memory.workers_mb) >= len(children)
    assert memory.parent_mb > 20
    assert sorted(memory.workers_mb)[-2] > 20  # both serving processes hold a model


def test_the_benchmark_ceiling_scores_with_the_services_compiled_forest(
    production_model, demo_rows
):
    import bentoml

    from loadtest import bench
    from scoring.serving.edge.settings import Settings

    assert (
        Settings.from_env({}).worker_count() * (Settings.from_env({}).booster_threads())
        == bench.CEILING_THREADS
    )
    model_dir = bentoml.models.get(production_model).path
    ceiling = bench.in_process_rows_per_s(model_dir, demo_rows, threads=2, seconds=0.5)
    assert ceiling.one_call > 100, ceiling
    assert ceiling.parallel > 100, ceiling


def test_the_bulk_ratio_is_taken_against_the_highest_ceiling_measured_either_way():
    from loadtest import bench

    batch = bench.Measurement(
        "this service", f"{bench.BATCH_ROWS} rows x {bench.BATCH_CLIENTS} clients, Arrow form",
        160, 80_000, 20, 40, 0,
    )  # fmt: skip
    ceilings = [bench.Ceiling(one_call=90_000, parallel=100_000), bench.Ceiling(95_000, 80_000)]
    report = bench.render([batch], {}, ceilings, "tag", 189, 10)
    assert "| this service, 500-row rows/s, Arrow form / in-process | 0.80 |" in report
    assert "best of 20 (90,000, 95,000)" in report
    assert "sustained (100,000, 80,000)" in report


def test_bulk_is_also_compared_like_for_like_with_the_floor_reading_the_same_arrow_bodies():
    from loadtest import bench

    load = f"{bench.BATCH_ROWS} rows x {bench.BATCH_CLIENTS} clients, Arrow form"
    ours = bench.Measurement("this service", load, 140, 70_000, 25, 50, 0)
    floor = bench.Measurement(bench.EQUAL_FLOOR, load, 160, 80_000, 22, 40, 0)
    report = bench.render([ours, floor], {}, [bench.Ceiling(90_000, 100_000)], "tag", 189, 10)
    like_for_like = f"| this service, 500-row rows/s, Arrow form / {bench.EQUAL_FLOOR}, Arrow form"
    assert f"{like_for_like} | 0.88 |" in report
    assert f"| {bench.EQUAL_FLOOR}, 500-row rows/s, Arrow form / in-process" in report
    assert "(what HTTP costs a bare server) | 0.80 |" in report


def test_a_challengers_cost_is_the_same_service_with_and_without_it_on_the_same_load():
    from loadtest import bench

    single = "1 row x 32 clients"
    results = [
        bench.Measurement("this service", single, 5_000, 5_000, 4, 10, 0),
        bench.Measurement(bench.WITH_CHALLENGER, single, 4_500, 4_500, 5, 13.5, 0),
    ]
    report = bench.render(results, {}, [bench.Ceiling(90_000, 100_000)], "tag", 189, 10)
    assert f"| {bench.WITH_CHALLENGER} / this service, {single}: rows/s | 0.90 |" in report
    assert f"| {bench.WITH_CHALLENGER} − this service, {single}: p99 ms | +3.5 |" in report


def test_the_benchmark_sets_up_every_server_it_compares(tmp_path):
    from loadtest import bench

    names = set(bench.servers({}, "model.txt", {"compiled": "c", "booster": "b"}, tmp_path))
    expected = {"this service", bench.BOOSTER_VARIANT, "HTTP floor", bench.EQUAL_FLOOR}
    assert expected | {bench.MLSERVER, bench.NO_MONITORING, bench.WITH_CHALLENGER} <= names
    assert bench.EQUAL_FLOOR.startswith(f"HTTP floor, {bench.SERVICE_WORKERS} processes")


def test_bulk_figures_are_the_median_round_each_on_new_connections(monkeypatch, tmp_path):
    """The selection only (wrk stands in with canned rounds, as a real run's draws vary): the
    median round is reported, not the best, and each round is its own wrk run."""
    from loadtest import bench

    rounds = iter([{"rows_per_s": 88.0}, {"rows_per_s": 48.0}, {"rows_per_s": 89.0}])
    calls = []

    def one_round(url, bodies, clients, duration, rows, content_type=""):
        calls.append(duration)
        return next(rounds)

    monkeypatch.setattr(bench, "wrk", one_round)
    assert bench.bulk_median("http://127.0.0.1:1/predict", tmp_path / "b", 9.0) == {
        "rows_per_s": 88.0
    }
    assert calls == [3.0, 3.0, 3.0]


def test_mixed_load_figures_are_the_median_round_paced_and_bulk_together(monkeypatch, tmp_path):
    """The selection only (wrk stands in with canned rounds): each round runs paced singles
    beside the bulk on new connections; the round with the median bulk rate is reported, its
    paced figures with it (not the best paced round, not another round's)."""
    from loadtest import bench

    bulk_rounds = iter([{"rows_per_s": 88.0}, {"rows_per_s": 48.0}, {"rows_per_s": 89.0}])
    paced_rounds = iter([{"p99_ms": 9.0}, {"p99_ms": 5.0}, {"p99_ms": 30.0}])
    durations = []

    def one_run(url, bodies, clients, duration, rows, content_type="", delay_ms=0):
        durations.append(duration)
        return next(bulk_rounds if rows == bench.BATCH_ROWS else paced_rounds)

    monkeypatch.setattr(bench, "wrk", one_run)
    paced, bulk = bench.mixed_median(
        "http://127.0.0.1:1/predict", tmp_path / "one", "http://127.0.0.1:1/b", tmp_path, "", 9.0
    )
    assert (paced, bulk) == ({"p99_ms": 9.0}, {"rows_per_s": 88.0})
    assert durations == [9.0] * 6  # each round as long as the paced run alone


def test_the_timeline_slices_the_paced_run_by_second_and_records_the_bulks_window(monkeypatch):
    """The slicing only (wrk stands in, a paced slice answering slower while the bulk runs):
    one paced wrk run per second, each second's figures kept in order, and the bulk's own start
    and end as they happened."""
    from loadtest import timeline

    bulk_running = threading.Event()
    calls = []

    def fake_wrk(url, bodies, clients, duration, rows, content_type="", delay_ms=0):
        calls.append((url, duration, rows))
        if rows == timeline.load.BATCH_ROWS:
            bulk_running.set()
            time.sleep(duration)
            bulk_running.clear()
            return {"rows_per_s": 1.0}
        time.sleep(duration)
        slow = bulk_running.is_set()
        return {"p50_ms": 2.0, "p99_ms": 30.0 if slow else 5.0, "requests_per_s": 100.0,
                "errors": 0}  # fmt: skip

    monkeypatch.setattr(timeline.load, "wrk", fake_wrk)
    # Six slices of 0.2 s; the bulk from 0.3 s to 0.9 s, so the first and last see none.
    monkeypatch.setattr(timeline, "SECONDS", 1.2)
    monkeypatch.setattr(timeline, "SLICE_S", 0.2)
    monkeypatch.setattr(timeline, "BULK_FROM_S", 0.3)
    monkeypatch.setattr(timeline, "BULK_TO_S", 0.9)
    run = timeline.paced_timeline("http://p", Path("one"), "http://b", Path("b"), "", "records")
    assert run["form"] == "records"
    bulk_calls = [c for c in calls if c[0] == "http://b"]
    assert bulk_calls == [("http://b", pytest.approx(0.6), timeline.load.BATCH_ROWS)]
    assert len(run["points"]) == 6
    on, off = run["bulk_s"]
    assert 0.3 <= on < off
    times = [p["t_s"] for p in run["points"]]
    assert times == sorted(times)
    assert {p["p99_ms"] for p in run["points"]} == {5.0, 30.0}  # a slice saw the bulk, one not
