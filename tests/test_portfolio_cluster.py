"""The portfolio job as users run it, `python -m scoring.portfolio` in its own process, submitted
to a real standalone Spark cluster on loopback: a master and a worker started from pyspark's
own distribution (spark-class), stopped by their process ids afterwards. The executors get the
model and the code only through Spark (addArchive, addPyFile): no shared Bento store."""

from __future__ import annotations

import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from loadtest.processes import ROOT
from tests.portfolio_spark import needs_java, standalone_cluster, write_portfolio

pytestmark = [needs_java, pytest.mark.server, pytest.mark.timeout(600)]

ID = "application_id"


def test_the_job_on_a_standalone_cluster_answers_as_the_service(demo_rows, client, tmp_path):
    rows = [dict(row) for row in demo_rows[:121]]
    rows[120]["CODE_GENDER"] = "X"  # an unseen category: quarantined
    book = write_portfolio(tmp_path / "book.parquet", rows, list(range(len(rows))))
    out = tmp_path / "out"
    with standalone_cluster(tmp_path) as master:
        command = [sys.executable, "-m", "scoring.portfolio", "--master", master]
        command += ["--input", str(book), "--output", str(out), "--id-column", ID]
        job = subprocess.run(
            command,
            cwd=tmp_path,  # not the source tree: the executors must get the code from Spark
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=400,
        )
    assert job.returncode == 0, job.stderr[-3000:]
    version = client.get("/version").json()
    (line,) = job.stdout.strip().splitlines()
    assert line.startswith("portfolio: scored 120 rows, quarantined 1, in ")
    assert f"run_id {version['run_id']}, predictor {version['predictor']}" in line
    assert line.endswith(version["predictor"])  # no "; read by Spark's ...": the direct path
    assert "[Stage " in job.stderr  # Spark's console progress bar
    assert "Traceback" not in job.stderr
    output = pq.read_table(out).sort_by(ID).to_pylist()
    answers = client.post("/predict", json={"applications": rows[:120]}).json()
    assert [row[ID] for row in output] == list(range(120))
    for row, answer in zip(output, answers, strict=True):
        assert row["probability_of_default"] == pytest.approx(
            answer["probability_of_default"], abs=1e-9
        )
        assert row["decision"] == answer["decision"]
    quarantine = pq.read_table(out / "_quarantine").to_pylist()
    assert [(row[ID], row["field"]) for row in quarantine] == [(120, "CODE_GENDER")]
