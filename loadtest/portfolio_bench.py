"""The portfolio job against its peers, one command, one run, on a generated portfolio and the
full-size demo model (189 features, 968 trees, built once as loadtest/bench.py builds it):

- this job (`python -m scoring.portfolio`'s code path) on `local[2]`, as it reads Parquet by
  default (the direct path: pyarrow in each task), and through Spark's DataFrame reader and
  mapInArrow (`portfolio_dataframe`, `--reader spark`);
- `mlflow.pyfunc.spark_udf` on the same model (its MLflow run's pyfunc) and the same Parquet;
- BentoML's `run_in_spark`, when it can run against this service (it says why not);
- the compiled forest in-process on 2 threads (loadtest/bench.py's ceiling).

    python -m loadtest.portfolio_bench                       # 1,000,000 rows, full-size model
    python -m loadtest.portfolio_bench --tiny --rows 2000 --scale-rows 0   # smoke: demo model

The job runs a second time on a larger portfolio (`--scale-rows`, 3,000,000 by default; 0 skips
it): the two times give its fixed cost (Python workers started, the model loaded on each, the
driver's planning and commit) and its marginal rate, the rows/s it adds per row once it runs,
which is what the ceiling measures (its model is loaded before it is timed).

Each Spark variant runs in its own process (its own JVM), timed from reading the input to the
committed output, Spark's start-up reported apart; memory is each process tree's peak RSS,
sampled every 0.2 s: the driver's Python, the JVM (in local mode the driver and the executor
are one JVM), and Spark's Python workers (the executors' Python) summed. Writes
loadtest/reports/portfolio_bench.json (or --report).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loadtest.processes import ROOT
from loadtest.wrk import BUILD

ID = "application_id"
THREADS = 2
MASTER = f"local[{THREADS}]"
TARGET_CEILING, TARGET_SPARK_UDF = 0.7, 3.0
# The same for both Spark variants: partitions of at most 16 MB, so a 2-core run gets enough
# tasks to keep both cores busy to the end (Spark's 128 MB default makes three or four).
SPARK_CONF = {"spark.sql.files.maxPartitionBytes": str(16 * 1024 * 1024)}


@dataclass(frozen=True)
class Peak:
    driver_python_mb: float = 0.0
    jvm_mb: float = 0.0
    python_workers_mb: float = 0.0  # the executors' Python processes, summed


TICKS_PER_S = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuSeconds:
    """CPU time (user + system) each group of a variant's processes spent, start to end: where
    two cores' time went. Read every 0.2 s, so a process's last 0.2 s before it ends is missed."""

    driver_python_s: float = 0.0
    jvm_s: float = 0.0
    python_workers_s: float = 0.0
    # The whole machine's busy time over the same span (/proc/stat): the groups' sum should be
    # most of it when nothing else runs; far less means a group was missed.
    machine_busy_s: float = 0.0


def machine_busy_s() -> float:
    """Busy CPU seconds of all cores since boot: user, nice, system, irq, softirq, steal."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = (
        int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    )
    return (user + nice + system + irq + softirq + steal) / TICKS_PER_S


def _tree(root: int) -> list[tuple[int, str, float, float]]:
    """(pid, command line, RSS MB, CPU seconds) of `root` and its descendants, from /proc."""
    parents, info = {}, {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = dict(
                line.split(":", 1) for line in (entry / "status").read_text().splitlines()
            )
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="ignore")
            # After the command's closing parenthesis: state is field 0, utime 11, stime 12.
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, ValueError, IndexError):
            continue
        pid = int(entry.name)
        parents[pid] = int(status.get("PPid", "0").strip())
        rss = int(status.get("VmRSS", "0 kB").split()[0]) / 1024
        info[pid] = (command, rss, (int(fields[11]) + int(fields[12])) / TICKS_PER_S)
    found, frontier = [], [root]
    while frontier:
        pid = frontier.pop()
        if pid in info:
            found.append((pid, *info[pid]))
        frontier += [child for child, parent in parents.items() if parent == pid]
    return found


def _group(pid: int, root: int, command: str) -> str:
    if pid == root:
        return "driver"
    if "java" in command.split(" ")[0]:
        return "jvm"
    return "workers" if "pyspark" in command or "python" in command else "other"


class PeakSampler:
    """Peak RSS and CPU seconds of a process tree, by group: the driver's Python (the root),
    the JVM, Spark's Python workers (the other Python processes)."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, Peak(), threading.Event()
        self._cpu: dict[int, tuple[str, float]] = {}  # pid -> (group, most CPU seconds read)
        self._busy_at_start, self._busy = machine_busy_s(), 0.0  # _busy: set by stop()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            memory = {"driver": 0.0, "jvm": 0.0, "workers": 0.0, "other": 0.0}
            for pid, command, mb, cpu in _tree(self.pid):
                group = _group(pid, self.pid, command)
                memory[group] += mb
                self._cpu[pid] = (group, max(cpu, self._cpu.get(pid, (group, 0.0))[1]))
            self.peak = Peak(
                max(self.peak.driver_python_mb, memory["driver"]),
                max(self.peak.jvm_mb, memory["jvm"]),
                max(self.peak.python_workers_mb, memory["workers"]),
            )
            time.sleep(0.2)

    def stop(self) -> Peak:
        self._stop.set()
        self._thread.join()
        self._busy = machine_busy_s() - self._busy_at_start
        return self.peak

    def cpu_seconds(self) -> CpuSeconds:
        spent = {"driver": 0.0, "jvm": 0.0, "workers": 0.0, "other": 0.0}
        for group, cpu in self._cpu.values():
            spent[group] += cpu
        groups = (round(spent[g], 1) for g in ("driver", "jvm", "workers"))
        return CpuSeconds(*groups, machine_busy_s=round(self._busy, 1))


@dataclass(frozen=True)
class FixedAndMarginal:
    """A job's time as fixed + rows / rows_per_s, from its times at two sizes."""

    fixed_s: float
    rows_per_s: float

    def rows_reaching(self, rate: float) -> float | None:
        """The portfolio size at which the end-to-end rate reaches `rate` (None: never)."""
        if self.rows_per_s <= rate:
            return None
        return rate * self.fixed_s / (1 - rate / self.rows_per_s)


def fixed_and_marginal(rows: int, seconds: float, more: int, more_s: float) -> FixedAndMarginal:
    if more <= rows or more_s <= seconds:
        raise ValueError("the larger run must have more rows and take longer")
    per_s = (more - rows) / (more_s - seconds)
    return FixedAndMarginal(fixed_s=seconds - rows / per_s, rows_per_s=per_s)


# ---- the variants, each run in a child process: `--variant NAME` prints one JSON line ----


def _session(app: str):
    from scoring.portfolio.job import session

    started = time.perf_counter()
    spark = session(MASTER, app_name=app)
    for key, value in SPARK_CONF.items():
        spark.conf.set(key, value)
    return spark, time.perf_counter() - started


def variant_portfolio(args: argparse.Namespace, reader: str | None = None) -> dict[str, Any]:
    """The job as it runs by default: on Parquet, the direct path (pyarrow in each task)."""
    from scoring.portfolio.job import Options, run

    spark, startup = _session("bench-portfolio")
    out = Path(args.work) / "portfolio-out"
    options = Options(args.input, str(out), args.model, (ID,), overwrite=True, reader=reader)
    summary = run(spark, options)
    rows = summary.scored + summary.quarantined
    return {
        "rows": rows,
        "seconds": summary.seconds,
        "startup_s": startup,
        "predictor": list(summary.predictors),
        "quarantined": summary.quarantined,
        "reader": summary.note or "pyarrow in each task (direct Parquet path)",
    }


def variant_portfolio_dataframe(args: argparse.Namespace) -> dict[str, Any]:
    """The same job through Spark's DataFrame reader and mapInArrow (`--reader spark`)."""
    return variant_portfolio(args, reader="spark")


class CategoriesRestored:
    """The least a team adds to use spark_udf on a categorical LightGBM model: the pyfunc gets
    each category as a string (Spark has no pandas category), and LightGBM refuses strings
    ("train and valid dataset categorical_feature do not match"), so this wrapper turns them
    back into the training categories and calls the same booster."""

    def __init__(self, names: list[str], categories: dict[str, list]) -> None:
        self.names, self.categories = names, categories

    def model(self):
        import mlflow

        wrapper = self

        class Model(mlflow.pyfunc.PythonModel):
            def load_context(self, context):
                import lightgbm as lgb

                self.booster = lgb.Booster(model_file=context.artifacts["booster"])

            def predict(self, context, model_input, params=None):
                import pandas as pd

                frame = model_input[wrapper.names].copy()
                for name, categories in wrapper.categories.items():
                    frame[name] = pd.Categorical(frame[name], categories=categories)
                return self.booster.predict(frame)

        return Model()


def variant_spark_udf(args: argparse.Namespace) -> dict[str, Any]:
    import mlflow
    from pyspark.sql import functions

    spark, startup = _session("bench-spark-udf")
    mlflow.set_tracking_uri(args.tracking_uri)
    features = json.loads(args.features)
    frame = spark.read.parquet(args.input)
    out = str(Path(args.work) / "spark-udf-out")

    def timed(uri: str) -> float:
        started = time.perf_counter()
        udf = mlflow.pyfunc.spark_udf(spark, uri, result_type="double", env_manager="local")
        scored = frame.select(ID, udf(functions.struct(*features)).alias("probability_of_default"))
        scored.write.mode("overwrite").parquet(out)
        return time.perf_counter() - started

    result: dict[str, Any] = {"startup_s": startup}
    try:
        result["seconds"] = timed(args.model_uri)
        result["model"] = args.model_uri
    except Exception as error:  # the peer's own failure on this model: reported, then worked around
        result["as_logged"] = f"fails: {str(error).strip().splitlines()[-1][:300]}"
        saved = str(Path(args.work) / "categories-restored")
        import bentoml

        stored = bentoml.models.get(args.model)
        categories = {
            f["name"]: f["categories"]
            for f in stored.info.metadata["features"]
            if f.get("categories") is not None
        }
        mlflow.pyfunc.save_model(
            saved,
            python_model=CategoriesRestored(features, categories).model(),
            artifacts={"booster": stored.path_of("model.txt")},
        )
        result["seconds"] = timed(saved)
        result["model"] = "the same booster, categories restored by a pyfunc wrapper"
    result["rows"] = spark.read.parquet(out).count()
    return result


def variant_ceiling(args: argparse.Namespace) -> dict[str, Any]:
    from loadtest.bench import in_process_rows_per_s
    from loadtest.payloads import application_records

    records = application_records(500, len(json.loads(args.features)))
    ceiling = in_process_rows_per_s(args.model_dir, records, THREADS)
    return {"rows_per_s": ceiling.rows_per_s, "one_call": ceiling.one_call}


def run_in_spark_status() -> str:
    """Why BentoML's run_in_spark cannot score this service here (checked, not assumed): it
    calls the 1.0 API's IO descriptors (`api.input.from_arrow`, `api.output.spark_schema()`),
    which a `@bentoml.service` class's API methods do not have."""
    import bentoml
    from _bentoml_sdk.method import APIMethod

    missing = [name for name in ("input", "output") if not hasattr(APIMethod, name)]
    if missing:
        return (
            f"not run: bentoml {bentoml.__version__}'s run_in_spark needs a built Bento whose APIs "
            f"have 1.0 IO descriptors (api.input.from_arrow, api.output.spark_schema); this "
            f"service's @bentoml.service APIs have input_spec/output_spec instead (no "
            f"{'/'.join(missing)}), so it fails before scoring; it would also start a Bento HTTP "
            "server inside each partition and call it over loopback"
        )
    return "available (not measured by this script)"


VARIANTS = {
    "portfolio": variant_portfolio,
    "portfolio_dataframe": variant_portfolio_dataframe,
    "spark_udf": variant_spark_udf,
    "ceiling": variant_ceiling,
}


# ---- the parent: model, data, one child per variant, the report ----


def prepare(env: dict[str, str], tiny: bool) -> dict[str, Any]:
    """The Bento model (compiled) and its MLflow model URI; the full-size one as bench.py
    builds it, or the tiny demo for a smoke run."""
    if tiny:
        store = BUILD / "portfolio-bench-tiny-store"
        if not (store / "mlflow.db").exists():
            code = (
                "import sys; from pathlib import Path; "
                "from demo_store.mlflow_runs import TINY, build_demo_store; "
                f"build_demo_store('sqlite:///{store}/mlflow.db', TINY, "
                f"artifact_root=Path('{store}/artifacts'))"
            )
            store.mkdir(parents=True, exist_ok=True)
            subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True)
        uri = f"sqlite:///{store / 'mlflow.db'}"
        command = [sys.executable, "import_model.py", "--tracking-uri", uri, "--compile"]
        subprocess.run(command, cwd=ROOT, env=env, check=True)
    else:
        from loadtest.bench import prepare_model

        prepare_model(env)
        uri = f"sqlite:///{BUILD / 'full-store' / 'mlflow.db'}"
    probe = (
        "import bentoml, json; m = [m for m in sorted(bentoml.models.list('credit_scoring'), "
        "key=lambda m: m.info.creation_time) if m.info.labels.get('compiled_forest', 'no') != "
        "'no'][-1]; print(json.dumps({'tag': str(m.tag), 'dir': m.path, 'uri': "
        "m.info.metadata.get('mlflow_model_uri'), 'features': [f['name'] for f in "
        "m.info.metadata['features']]}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "tracking_uri": uri}


def portfolio_file(rows: int, features: list[str], tiny: bool) -> Path:
    """A generated portfolio (the demo's applications), an id first; built once per size."""
    path = BUILD / f"portfolio-{'tiny' if tiny else 'full'}-{rows}.parquet"
    if path.exists():
        return path
    import pyarrow as pa
    import pyarrow.parquet as pq

    from demo_store.data import make_applications

    extra = None if len(features) <= 40 else len(features)
    writer = None
    chunk = 100_000
    for start in range(0, rows, chunk):
        frame, _ = make_applications(min(chunk, rows - start), extra, seed=start)
        frame = frame[features]
        frame.insert(0, ID, range(start, start + len(frame)))
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema)
        writer.write_table(table, row_group_size=50_000)
    assert writer is not None
    writer.close()
    return path


def warm(path: Path) -> None:
    """The input read once into the page cache before a variant runs, so every variant starts
    as the ceiling does, with its rows at hand (measured 2026-12-07: this VM evicts a file
    written an hour before, and a cold read of a 50,000-row group took 0.94 s, a warm 0.08 s)."""
    with path.open("rb") as source:
        while source.read(1 << 24):
            pass


def child(name: str, argv: list[str], env: dict[str, str]) -> dict[str, Any]:
    command = [sys.executable, "-m", "loadtest.portfolio_bench", "--variant", name, *argv]
    started = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    sampler = PeakSampler(process.pid)
    out, err = process.communicate()
    peak = sampler.stop()
    if process.returncode != 0:
        tail = err.strip().splitlines()[-5:]
        return {"error": f"exit {process.returncode}: " + " | ".join(tail)}
    result = json.loads(out.strip().splitlines()[-1])
    if "rows_per_s" not in result:
        result["rows_per_s"] = result["rows"] / result["seconds"]
    cpu = asdict(sampler.cpu_seconds())
    return {
        **result,
        "wall_s": time.perf_counter() - started,
        "peak_mb": asdict(peak),
        "cpu_s": cpu,
    }


def main(argv: list[str] | None = None) -> int:
    # Before anything of ours runs: what else the machine is doing (its figures' noise).
    load_at_start = os.getloadavg()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--tiny", action="store_true", help="the small demo model (smoke run)")
    parser.add_argument(
        "--scale-rows", type=int, default=3_000_000, help="the job again at this size (0: not)"
    )
    parser.add_argument("--only", action="append", choices=sorted(VARIANTS), default=[])
    parser.add_argument(
        "--report", type=Path, default=ROOT / "loadtest/reports/portfolio_bench.json"
    )
    # Child-process arguments.
    parser.add_argument("--variant", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    for name in ("input", "model", "model-uri", "model-dir", "tracking-uri", "features", "work"):
        parser.add_argument(f"--{name}", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.variant:
        print(json.dumps(VARIANTS[args.variant](args)), flush=True)
        return 0
    BUILD.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "BENTOML_HOME": str(BUILD / ("portfolio-bench-tiny" if args.tiny else "bench-bentoml")),
        "BENTOML_DO_NOT_TRACK": "true",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "PYTHONPATH": str(ROOT),
        "PYSPARK_PYTHON": sys.executable,
    }
    model = prepare(env, args.tiny)
    data = portfolio_file(args.rows, model["features"], args.tiny)
    larger = None
    if args.scale_rows > args.rows:
        larger = portfolio_file(args.scale_rows, model["features"], args.tiny)
    work = tempfile.mkdtemp(prefix="portfolio-bench-")
    shared = ["--input", str(data), "--model", model["tag"], "--model-uri", model["uri"]]
    shared += ["--model-dir", model["dir"], "--tracking-uri", model["tracking_uri"]]
    shared += ["--features", json.dumps(model["features"]), "--work", work]
    results: dict[str, Any] = {}
    try:
        for name in args.only or ["ceiling", "portfolio", "portfolio_dataframe", "spark_udf"]:
            print(f"portfolio_bench: {name} ...", file=sys.stderr, flush=True)
            warm(data)
            results[name] = child(name, shared, env)
            if name == "portfolio" and larger is not None:
                print(f"portfolio_bench: portfolio at {args.scale_rows} rows ...", file=sys.stderr)
                warm(larger)
                at_scale = [*shared[:1], str(larger), *shared[2:]]
                results["portfolio_at_scale"] = child(name, at_scale, env)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["run_in_spark"] = {"status": run_in_spark_status()}
    report = report_of(args, model, results, load_at_start)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["summary"], indent=2))
    return 0


def report_of(
    args: argparse.Namespace,
    model: dict,
    results: dict[str, Any],
    load_at_start: tuple[float, float, float],
) -> dict[str, Any]:
    rate = {k: v.get("rows_per_s") for k, v in results.items() if isinstance(v, dict)}
    job = rate.get("portfolio")
    summary: dict[str, Any] = {
        name: {
            "rows_per_s": round(r) if r else None,
            "peak_mb": results[name].get("peak_mb"),
            "cpu_s": results[name].get("cpu_s"),
            "error": results[name].get("error"),
        }
        for name, r in rate.items()
        if name != "run_in_spark"
    }
    if job and rate.get("ceiling"):
        summary["job_vs_ceiling"] = round(job / rate["ceiling"], 3)
        summary["target_vs_ceiling"] = TARGET_CEILING
    scale = results.get("portfolio_at_scale", {})
    if job and scale.get("rows_per_s"):
        base = results["portfolio"]
        split = fixed_and_marginal(base["rows"], base["seconds"], scale["rows"], scale["seconds"])
        summary["job_fixed_s"] = round(split.fixed_s, 1)
        summary["job_marginal_rows_per_s"] = round(split.rows_per_s)
        if rate.get("ceiling"):
            summary["job_at_scale_vs_ceiling"] = round(scale["rows_per_s"] / rate["ceiling"], 3)
            summary["job_marginal_vs_ceiling"] = round(split.rows_per_s / rate["ceiling"], 3)
            rows = split.rows_reaching(TARGET_CEILING * rate["ceiling"])
            summary["rows_for_target_end_to_end"] = round(rows, -5) if rows else None
    if job and rate.get("spark_udf"):
        summary["job_vs_spark_udf"] = round(job / rate["spark_udf"], 2)
        summary["target_vs_spark_udf"] = TARGET_SPARK_UDF
    if rate.get("portfolio_dataframe") and rate.get("ceiling"):
        summary["dataframe_path_vs_ceiling"] = round(
            rate["portfolio_dataframe"] / rate["ceiling"], 3
        )
    summary["run_in_spark"] = results["run_in_spark"]["status"]
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_at_start": load_at_start,
            "load_average_at_end": os.getloadavg(),  # includes the last variant's own load
        },
        "rows": args.rows,
        "model": model["tag"],
        "features": len(model["features"]),
        "spark_conf": SPARK_CONF,
        "results": results,
        "summary": summary,
    }


if __name__ == "__main__":
    raise SystemExit(main())
