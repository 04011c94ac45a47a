"""The peer users pick for tree models: Seldon MLServer with its LightGBM runtime, in its own
virtual environment (`.build/mlserver-venv`, from `env/mlserver-peer.lock`), serving the same
`model.txt` over the V2 inference protocol (REST), for the benchmark and its test.

Configured like for like with the service where MLServer allows it (see `server_settings`):
as many inference workers as the service has workers, one LightGBM thread each, access log off,
Prometheus metrics on (the service has them too). What MLServer does not allow is in
`LIMITS`.

    python -m loadtest.mlserver_peer [--model-tag credit_scoring:latest] [--duration 10]

sets the peer up, checks its answers against `bentoml serve` of the same model, then measures
both with the benchmark's wrk command (1 row x 32 clients), one after the other.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from loadtest.processes import ROOT, free_port, running

VENV = ROOT / ".build" / "mlserver-venv"
LOCK = ROOT / "env" / "mlserver-peer.lock"
MODEL_NAME = "credit_scoring"
INPUT_NAME = "input-0"
# Written into the venv once the lock is installed: a changed lock reinstalls, an unchanged one
# is reused (the install is the slow part).
STAMP = ".mlserver-peer-lock-sha256"
LIMITS = (
    "one HTTP process for all requests (MLServer runs a single uvicorn server; parallel_workers "
    "multiplies only the inference processes, which receive each decoded request over a "
    "multiprocessing queue), not one listening socket per worker",
    "scores with the Booster: the LightGBM runtime has no compiled-forest option",
    "no strict request contract: a bare FP64 matrix in the model's column order, categories "
    "sent as their LightGBM codes",
    "gRPC cannot be turned off (it listens on a free loopback port, unused)",
)


class PeerNotInstallableError(RuntimeError):
    """The peer cannot be installed here (no package index, no venv support); names what."""


def venv_python(venv: Path = VENV) -> Path:
    return venv / "bin" / "python"


def _lock_digest() -> str:
    return hashlib.sha256(LOCK.read_bytes()).hexdigest()


def _index_url() -> str:
    return (
        os.environ.get("UV_INDEX_URL")
        or os.environ.get("PIP_INDEX_URL")
        or "https://pypi.org/simple"
    ).rstrip("/")


def _index_reachable() -> str | None:
    """None when the package index answers, else why not (one line)."""
    url = f"{_index_url()}/mlserver/"
    try:
        with urllib.request.urlopen(url, timeout=10):
            return None
    except OSError as error:
        return f"the package index {url} is unreachable ({error})"


def ensure_venv(venv: Path = VENV) -> Path:
    """Create (or reuse) the peer's venv from the lock; returns its python. Idempotent: an
    install of the same lock is reused. PeerNotInstallableError when the package index is
    unreachable; any other install failure is a RuntimeError with the installer's output (a
    real defect, not a missing resource)."""
    python = venv_python(venv)
    digest = _lock_digest()
    stamp = venv / STAMP
    if python.exists() and stamp.exists() and stamp.read_text() == digest:
        return python
    if venv.exists():
        shutil.rmtree(venv)
    venv.parent.mkdir(parents=True, exist_ok=True)
    has_uv = subprocess.run([sys.executable, "-m", "uv", "--version"], capture_output=True)
    # uv installs the ~70 locked packages in seconds from its cache; pip is the fallback.
    create = [sys.executable, "-m", "venv", *(["--without-pip"] if has_uv.returncode == 0 else []),
              str(venv)]  # fmt: skip
    made = subprocess.run(create, capture_output=True, text=True)
    if made.returncode != 0:
        why = made.stderr.strip()[-500:]
        raise PeerNotInstallableError(f"cannot create a venv at {venv}: {why}")
    if has_uv.returncode == 0:
        install = [sys.executable, "-m", "uv", "pip", "sync", "--python", str(python), str(LOCK)]
    else:
        install = [str(python), "-m", "pip", "install", "--no-deps", "-r", str(LOCK)]
    # UV_SYSTEM_CERTS: as env/setup.sh, PyPI may sit behind a TLS-intercepting proxy.
    done = subprocess.run(
        install, capture_output=True, text=True, env={**os.environ, "UV_SYSTEM_CERTS": "1"}
    )
    if done.returncode != 0:
        shutil.rmtree(venv, ignore_errors=True)
        unreachable = _index_reachable()
        if unreachable:
            raise PeerNotInstallableError(f"cannot install {LOCK.name}: {unreachable}")
        raise RuntimeError(f"installing {LOCK.name} failed:\n{done.stderr[-3000:]}")
    stamp.write_text(digest)
    return python


def installed_versions(venv: Path = VENV) -> dict[str, str]:
    """The versions the venv holds, as its own interpreter reports them."""
    script = (
        "import importlib.metadata as m, json; print(json.dumps({n: m.version(n) for n in "
        "('mlserver', 'mlserver-lightgbm', 'lightgbm', 'numpy', 'uvloop', 'uvicorn', 'fastapi')}))"
    )
    out = subprocess.run(
        [str(venv_python(venv)), "-c", script], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


def venv_size_mb(venv: Path = VENV) -> float:
    total = sum(p.stat().st_size for p in venv.rglob("*") if p.is_file() and not p.is_symlink())
    return total / 1e6


def model_file_of(model_tag: str) -> Path:
    """The LightGBM booster file inside a Bento model (of the current BENTOML_HOME)."""
    import bentoml

    from scoring.stored_model.layout import BOOSTER_FILE

    return Path(bentoml.models.get(model_tag).path) / BOOSTER_FILE


@dataclass(frozen=True)
class PeerConfig:
    """One MLServer instance: its folder, ports and worker count."""

    folder: Path
    model_file: Path
    workers: int
    venv: Path
    http_port: int
    grpc_port: int
    metrics_port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def infer_url(self) -> str:
        return f"{self.base_url}/v2/models/{MODEL_NAME}/infer"

    @property
    def ready_url(self) -> str:
        # The model's own readiness: the server's /v2/health/ready answers 200 before (and even
        # without) any model loaded.
        return f"{self.base_url}/v2/models/{MODEL_NAME}/ready"


def server_settings(config: PeerConfig) -> dict:
    """MLServer's settings.json, like for like with the service where MLServer allows it."""
    return {
        "host": "127.0.0.1",
        "http_port": config.http_port,
        "grpc_port": config.grpc_port,
        # As many inference processes as the service has workers.
        "parallel_workers": config.workers,
        # MLServer's default debug=true turns on uvicorn's access log and DEBUG logging; the
        # service's access log is off by default (SCORING_ACCESS_LOG).
        "debug": False,
        # Metrics on, as the service's /metrics: MLServer serves them on a port of their own.
        "metrics_port": config.metrics_port,
        "metrics_dir": str(config.folder / "metrics"),
    }


def model_settings(config: PeerConfig) -> dict:
    """model-settings.json: the LightGBM runtime on the stored booster file, where it lies. No
    adaptive batching: MLServer's default (it is opt-in there)."""
    return {
        "name": MODEL_NAME,
        "implementation": "mlserver_lightgbm.LightGBMModel",
        "parameters": {"uri": str(config.model_file), "version": "v1"},
    }


def write_model_folder(config: PeerConfig) -> None:
    (config.folder / MODEL_NAME).mkdir(parents=True, exist_ok=True)
    (config.folder / "metrics").mkdir(exist_ok=True)
    (config.folder / "settings.json").write_text(json.dumps(server_settings(config), indent=2))
    (config.folder / MODEL_NAME / "model-settings.json").write_text(
        json.dumps(model_settings(config), indent=2)
    )


def server_env() -> dict[str, str]:
    """The runtime calls `Booster.predict(x)` with no thread count and reads no setting for it,
    so LightGBM uses OpenMP's default: every core. OMP_NUM_THREADS=1 (inherited by the inference
    processes) gives one thread per worker, as the service's SCORING_LGBM_THREADS default does
    with one worker per CPU."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    # No PYTHONPATH: the peer's venv must not see the project's packages or modules.
    return {**env, "OMP_NUM_THREADS": "1", "PYTHONNOUSERSITE": "1"}


@dataclass(frozen=True)
class RunningPeer:
    config: PeerConfig
    process: subprocess.Popen

    @property
    def url(self) -> str:
        return self.config.infer_url

    @property
    def pid(self) -> int:
        return self.process.pid


def prepare(model_file: Path, workers: int, folder: Path, venv: Path = VENV) -> PeerConfig:
    """Install (or reuse) the venv, pick free ports, write the model folder."""
    ensure_venv(venv)
    config = PeerConfig(
        folder=folder,
        model_file=Path(model_file).resolve(),
        workers=workers,
        venv=venv,
        http_port=free_port(),
        grpc_port=free_port(),
        metrics_port=free_port(),
    )
    write_model_folder(config)
    return config


@contextmanager
def serve(config: PeerConfig, timeout_s: float = 120) -> Iterator[RunningPeer]:
    """`mlserver start` on the folder, ready once the model answers ready; stopped by its pid
    (its process group: the inference workers with it) on exit."""
    command = [str(config.venv / "bin" / "mlserver"), "start", str(config.folder)]
    log = config.folder / "mlserver.log"
    with running(command, config.ready_url, log, env=server_env(), timeout_s=timeout_s) as process:
        yield RunningPeer(config, process)


@contextmanager
def start_mlserver(
    model_file: Path, workers: int, folder: Path, venv: Path = VENV
) -> Iterator[RunningPeer]:
    """The peer serving `model_file` with `workers` inference processes, from `folder`."""
    with serve(prepare(model_file, workers, folder, venv)) as peer:
        yield peer


def v2_request(rows: np.ndarray) -> dict:
    """The V2 inference request for a float64 matrix (rows x features, the model's column order,
    categories as their LightGBM codes). JSON has no NaN: a missing value goes as null, which
    MLServer's numpy codec turns back into NaN (`np.array([None], float64)`)."""
    matrix = np.atleast_2d(np.asarray(rows, dtype=np.float64))
    data = [None if math.isnan(x) else x for x in matrix.ravel().tolist()]
    return {
        "inputs": [
            {"name": INPUT_NAME, "shape": list(matrix.shape), "datatype": "FP64", "data": data}
        ]
    }


def v2_single_row_body(row: Sequence[float] | np.ndarray) -> bytes:
    """One application as a V2 REST body (one line: a wrk body file holds one per line)."""
    return json.dumps(v2_request(np.asarray(row, dtype=np.float64).reshape(1, -1))).encode()


def v2_probabilities(answer: dict) -> list[float]:
    """The probabilities from a V2 answer (the LightGBM runtime's one output, `predict`)."""
    (output,) = answer["outputs"]
    return [float(x) for x in output["data"]]


def infer(url: str, rows: np.ndarray, timeout_s: float = 30) -> list[float]:
    request = urllib.request.Request(
        url,
        data=json.dumps(v2_request(rows)).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        return v2_probabilities(json.loads(response.read()))


def peer_description(workers: int, venv: Path = VENV) -> str:
    versions = installed_versions(venv) if venv_python(venv).exists() else {}
    lightgbm = versions.get("lightgbm", "?")
    return (
        f"MLServer {versions.get('mlserver', '1.7.1')} + mlserver-lightgbm "
        f"{versions.get('mlserver-lightgbm', '1.7.1')} (LightGBM {lightgbm}, Booster), "
        f"{workers} parallel workers x 1 LightGBM thread, one HTTP process, V2 REST, "
        f"no adaptive batching"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-tag", default="credit_scoring:latest")
    parser.add_argument("--duration", type=float, default=10, help="seconds per wrk run")
    parser.add_argument("--clients", type=int, default=32)
    args = parser.parse_args(argv)
    import bentoml
    import lightgbm as lgb

    from loadtest.model_rows import RowEncoder
    from loadtest.payloads import application_records
    from loadtest.wrk import write_bodies, wrk
    from scoring.serving.edge.settings import Settings

    if shutil.which("wrk") is None:
        sys.exit("mlserver_peer: wrk is missing; install it: apt-get install -y wrk")
    try:
        model = bentoml.models.get(args.model_tag)
    except bentoml.exceptions.NotFound:
        sys.exit(f"mlserver_peer: no {args.model_tag} in the Bento store; run import_model.py")
    workers = Settings.from_env().worker_count()
    started = time.monotonic()
    try:
        ensure_venv()
    except PeerNotInstallableError as error:
        sys.exit(f"mlserver_peer: {error}")
    print(f"venv {VENV}: {time.monotonic() - started:.1f} s, {venv_size_mb():.0f} MB, "
          f"{installed_versions()}", flush=True)  # fmt: skip
    model_file = model_file_of(str(model.tag))
    booster = lgb.Booster(model_file=str(model_file))
    records = application_records(500, booster.num_feature())
    rows = RowEncoder(booster).matrix(records)
    work = Path(tempfile.mkdtemp(prefix="mlserver-peer-"))
    v2_bodies = work / "v2-one.jsonl"
    v2_bodies.write_bytes(b"\n".join(v2_single_row_body(row) for row in rows) + b"\n")
    service_bodies = write_bodies(work / "one.jsonl", [{"applications": [r]} for r in records])
    figures: dict[str, dict] = {}

    started = time.monotonic()
    with start_mlserver(model_file, workers, work / "mlserver") as peer:
        print(f"MLServer ready in {time.monotonic() - started:.1f} s: {peer.url} "
              f"(pid {peer.pid})", flush=True)  # fmt: skip
        peer_answers = [infer(peer.url, row)[0] for row in rows[:50]]
        wrk(peer.url, v2_bodies, 8, 2, 1)  # warm-up, as the benchmark does
        figures[peer_description(workers)] = wrk(
            peer.url, v2_bodies, args.clients, args.duration, 1
        )

    port = free_port()
    serve_command = [sys.executable, "-m", "bentoml", "serve", "service:CreditScoring",
                     "--working-dir", str(ROOT), "--host", "127.0.0.1",
                     "--port", str(port)]  # fmt: skip
    url = f"http://127.0.0.1:{port}/predict"
    env = {**os.environ, "SCORING_MODEL_TAG": str(model.tag), "PYTHONPATH": str(ROOT)}
    with running(serve_command, f"http://127.0.0.1:{port}/readyz", work / "service.log", env=env,
                 timeout_s=180):  # fmt: skip
        body = json.dumps({"applications": records[:50]}).encode()
        request = urllib.request.Request(
            url, data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            service_answers = [a["probability_of_default"] for a in json.loads(response.read())]
        wrk(url, service_bodies, 8, 2, 1)
        figures[f"this service ({workers} workers)"] = wrk(
            url, service_bodies, args.clients, args.duration, 1
        )

    worst = max(abs(a - b) for a, b in zip(peer_answers, service_answers, strict=True))
    print(f"MLServer vs the service on 50 applications: max |difference| {worst:.2e} "
          f"({'OK' if worst <= 1e-6 else 'MISMATCH'}, bound 1e-6)")  # fmt: skip
    for name, stats in figures.items():
        print(f"{name}: 1 row x {args.clients} clients: {stats['requests_per_s']:,.0f} req/s, "
              f"p50 {stats['p50_ms']:.1f} ms, p99 {stats['p99_ms']:.1f} ms, "
              f"errors {stats['errors']}")  # fmt: skip
    print("MLServer cannot: " + "; ".join(LIMITS))
    return 0 if worst <= 1e-6 else 1


if __name__ == "__main__":
    raise SystemExit(main())
