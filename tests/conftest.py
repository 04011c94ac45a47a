"""Shared fixtures: a real MLflow server, a messy team store on it, a temporary Bento home.

BENTOML_HOME must be set before bentoml is first imported, so it is set here at collection.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

_SESSION_HOME = Path(tempfile.mkdtemp(prefix="bentoml-home-test-"))
os.environ["BENTOML_HOME"] = str(_SESSION_HOME)
os.environ["BENTOML_DO_NOT_TRACK"] = "true"
os.environ["DO_NOT_TRACK"] = "true"
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"

from loadtest.processes import free_port, running  # noqa: E402 - after BENTOML_HOME


@pytest.fixture(scope="session", autouse=True)
def bentoml_home() -> Iterator[Path]:
    """The session's Bento home; removed at the end so no run leaves model stores behind."""
    yield _SESSION_HOME
    shutil.rmtree(_SESSION_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory):
    """A real `mlflow server` on loopback: sqlite backend, artifacts served by the server."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination",
        str(root / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    url = f"http://127.0.0.1:{port}"
    with running(command, f"{url}/health", root / "server.log", timeout_s=120):
        yield url, root / "artifacts"


@pytest.fixture(scope="session")
def messy_store(mlflow_server):
    from tests.messy_store import build_messy_store

    url, artifact_root = mlflow_server
    return build_messy_store(url, artifact_root)


@pytest.fixture(scope="session")
def production_model(tmp_path_factory, bentoml_home) -> str:
    """The demo store's production model imported as `credit_scoring`, the service's default.
    Returns its Bento tag."""
    import bentoml

    import import_model
    from demo_store.mlflow_runs import TINY, build_demo_store

    root = tmp_path_factory.mktemp("served-store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    build_demo_store(uri, TINY, artifact_root=root / "artifacts")
    # Compiled, as env/run.sh imports it: the served path is the compiled forest.
    assert import_model.main(["--tracking-uri", uri, "--compile"]) == 0
    return str(bentoml.models.get("credit_scoring:latest").tag)


@pytest.fixture(scope="session")
def demo_rows(production_model):
    """Realistic applications (with missing values) as JSON records, in model feature order."""
    from demo_store.data import make_applications

    frame, _ = make_applications(300, seed=42)
    return json.loads(frame.to_json(orient="records"))


@pytest.fixture(scope="session")
def client(production_model):
    """The service's ASGI app (`to_asgi()`) behind a test client, in this process. One per
    session: BentoML registers its Prometheus metrics when the app is built, once per process."""
    from starlette.testclient import TestClient

    import service

    with TestClient(service.CreditScoring.to_asgi()) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def challenger_model(tmp_path_factory, production_model) -> str:
    """A second model on the same features, trained on other applications (seed 1), imported
    beside the production model with --role challenger (as `credit_scoring_challenger`).
    Returns its Bento tag."""
    import bentoml

    import import_model
    from demo_store.mlflow_runs import TINY, build_demo_store

    root = tmp_path_factory.mktemp("challenger-store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    build_demo_store(uri, TINY, artifact_root=root / "artifacts", seed=1)
    assert import_model.main(["--tracking-uri", uri, "--role", "challenger"]) == 0
    return str(bentoml.models.get("credit_scoring_challenger:latest").tag)
