"""Helpers for the portfolio job's tests: is there a Java Spark can run on, a Spark session per
test module, a real standalone cluster (master + worker from pyspark's own distribution) on
loopback, and a portfolio file written from records."""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from loadtest.processes import free_port, running

SPARK_JAVA_VERSIONS = ("17", "21")


def java_problem() -> str | None:
    """Why Spark cannot start here, or None: Spark 4 runs on Java 17 or 21."""
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not java or not Path(java).exists():
        return "no Java runtime (Spark needs Java 17 or 21: run env/setup.sh as root)"
    shown = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    found = re.search(r'version "(\d+)', shown)
    if not found or found.group(1) not in SPARK_JAVA_VERSIONS:
        return f"{java} is not Java 17 or 21 (Spark 4 needs one): {shown.splitlines()[:1]}"
    return None


needs_java = pytest.mark.skipif(java_problem() is not None, reason=java_problem() or "")


def shared_session():
    """One local[2] session for every portfolio test module (Spark's start-up is the slow part):
    `getOrCreate` returns the running one; stopped when the test process exits."""
    from scoring.portfolio.job import session

    spark = session("local[2]", app_name="portfolio-tests")
    atexit.register(spark.stop)
    return spark


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


def _alive_workers(ui: str) -> int:
    with urllib.request.urlopen(f"{ui}/json/", timeout=5) as answer:
        return int(json.load(answer).get("aliveworkers", 0))


@contextmanager
def standalone_cluster(logs: Path, cores: int = 2, memory: str = "2g") -> Iterator[str]:
    """A master and one worker, each its own process group, stopped by its pid; yields the
    master's URL once the worker has registered."""
    port, master_ui, worker_ui = free_port(), free_port(), free_port()
    spark_class = str(spark_home() / "bin" / "spark-class")
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_HOME": str(spark_home())}
    url = f"spark://127.0.0.1:{port}"
    master = [spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
              "--port", str(port), "--webui-port", str(master_ui)]  # fmt: skip
    worker = [spark_class, "org.apache.spark.deploy.worker.Worker", url, "--host",
              "127.0.0.1", "--cores", str(cores), "--memory", memory,
              "--webui-port", str(worker_ui)]  # fmt: skip
    ui = f"http://127.0.0.1:{master_ui}"
    with ExitStack() as stack:
        stack.enter_context(running(master, ui, logs / "master.log", env=env, timeout_s=120))
        stack.enter_context(
            running(
                worker, f"http://127.0.0.1:{worker_ui}", logs / "worker.log", env=env, timeout_s=120
            )
        )
        deadline = time.monotonic() + 60
        while _alive_workers(ui) < 1:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no worker registered; see {logs}")
            time.sleep(0.5)
        yield url


def write_portfolio(path: Path, records: list[dict], ids: list[int], **types: pa.DataType) -> Path:
    """Records as a Parquet portfolio, an `application_id` first; `types` overrides the type of
    named columns (the rest as pyarrow infers them from the records)."""
    table = pa.Table.from_pylist(records)
    for name, kind in types.items():
        index = table.column_names.index(name)
        table = table.set_column(index, name, table.column(name).cast(kind))
    table = table.add_column(0, "application_id", pa.array(ids, pa.int64()))
    pq.write_table(table, path)
    return path


def read_output(path: Path) -> pd.DataFrame:
    """A written output folder, rows in id order."""
    return pd.read_parquet(path).sort_values("application_id", ignore_index=True)
