"""The OCI image, built from this checkout and run with a real container engine (podman,
daemonless, from Debian's packages; docker where an engine answers): read-only root
filesystem, non-root, lineage labels, and the same answers as the in-process model."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.servers import ROOT, free_port
from tests.service_helpers import reference_probabilities

pytestmark = pytest.mark.container

IMAGE = "localhost/credit-scoring-service:test"
# Unique container names: another podman user on the machine may share the engine's locks.
RUN_ID = f"{os.getpid()}-{int(time.time()) % 100000}"
MAIN, OVERRIDE, SIGTERM = (
    f"credit-scoring-{role}-{RUN_ID}" for role in ("main", "override", "sigterm")
)


def engine_env(engine_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "ENGINE_DIR": str(engine_dir),
        "CONTAINERS_CONF": str(engine_dir / "containers.conf"),
        "CONTAINERS_STORAGE_CONF": str(engine_dir / "storage.conf"),
    }


@pytest.fixture(scope="module")
def image(production_model, bentoml_home, tmp_path_factory):
    """Build the image with env/build_image.sh into test-private storage; remove it all after."""
    if os.geteuid() != 0 and shutil.which("podman") is None:
        pytest.skip("no container engine: podman is missing and installing it needs root")
    engine_dir = tmp_path_factory.mktemp("engine")
    env = {**engine_env(engine_dir), "BENTOML_HOME": str(bentoml_home), "IMAGE": IMAGE,
           "EXPORT": str(engine_dir / "image.oci.tar")}  # fmt: skip
    started = time.monotonic()
    build = subprocess.run(["bash", "env/build_image.sh"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=1200)  # fmt: skip
    print(f"\nimage build: {time.monotonic() - started:.0f} s, exit {build.returncode}")
    try:
        assert build.returncode == 0, (build.stdout + build.stderr)[-4000:]
        print([line for line in build.stdout.splitlines() if line.startswith("image size")])
        yield {"env": env, "archive": engine_dir / "image.oci.tar"}
    finally:
        subprocess.run(["podman", "system", "reset", "-f"], env=env, capture_output=True,
                       timeout=300)  # fmt: skip
        shutil.rmtree(engine_dir, ignore_errors=True)


def podman(image, *args: str, check: bool = True, timeout: float = 120):
    result = subprocess.run(["podman", *args], env=image["env"], capture_output=True, text=True,
                            timeout=timeout)  # fmt: skip
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: exit {result.returncode}: {result.stderr}")
    return result


def run_container(image, name: str, port: int, *extra: str) -> float:
    """Start read-only, with a /tmp tmpfs, on 127.0.0.1:port; return seconds to /readyz."""
    started = time.monotonic()
    read_only = ("--read-only", "--tmpfs", "/tmp")
    podman(image, "run", "-d", "--name", name, *read_only, "--network", "host", *extra,
           IMAGE, "--host", "127.0.0.1", "--port", str(port))  # fmt: skip
    deadline = started + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2):
                return time.monotonic() - started
        except OSError:
            time.sleep(0.2)
    logs = podman(image, "logs", name, check=False).stdout[-3000:]
    raise TimeoutError(f"container not ready in 120 s:\n{logs}")


@pytest.fixture(scope="module")
def container(image):
    port = free_port()
    cold_start = run_container(image, MAIN, port)
    print(f"\ncold start to /readyz: {cold_start:.1f} s")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        podman(image, "rm", "-f", "-t", "5", MAIN, check=False)


def test_container_runs_as_non_root_without_compilers(image, container):
    assert podman(image, "exec", MAIN, "id", "-u").stdout.strip() == "1034"
    probe = podman(image, "exec", MAIN, "sh", "-c",
                   "command -v gcc || command -v cc", check=False)  # fmt: skip
    assert probe.returncode != 0, probe.stdout


def test_image_labels_carry_revision_and_model_lineage(image, production_model):
    import bentoml

    labels = json.loads(podman(image, "image", "inspect", IMAGE, "--format",
                               "{{json .Labels}}").stdout)  # fmt: skip
    model = bentoml.models.get(production_model)
    revision = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True).stdout.strip()  # fmt: skip
    assert labels["org.opencontainers.image.revision"].startswith(revision)
    assert labels["org.opencontainers.image.created"]
    assert "org.opencontainers.image.source" in labels
    assert labels["ai.credit-scoring.model.run_id"] == model.info.labels["run_id"]
    assert labels["ai.credit-scoring.model.threshold"] == model.info.labels["threshold"]


def test_version_inside_the_container_shows_labels_and_build_revision(container, image):
    import bentoml

    version = requests.get(f"{container}/version", timeout=10).json()
    labels = json.loads(podman(image, "image", "inspect", IMAGE, "--format",
                               "{{json .Labels}}").stdout)  # fmt: skip
    model = bentoml.models.get(version["model_tag"])
    assert version["run_id"] == model.info.labels["run_id"]
    assert version["threshold"] == float(model.info.labels["threshold"])
    assert version["service"]["revision"] == labels["org.opencontainers.image.revision"]
    assert version["bento"]


def test_container_predictions_equal_the_in_process_booster(container, production_model, demo_rows):
    response = requests.post(f"{container}/predict", json={"applications": demo_rows[:50]},
                             timeout=30)  # fmt: skip
    assert response.status_code == 200, response.text
    served = [p["probability_of_default"] for p in response.json()]
    expected = reference_probabilities(production_model, demo_rows[:50])
    assert served == pytest.approx(list(expected), abs=1e-12)


def test_bad_request_gets_its_400_from_inside_the_container(container):
    response = requests.post(f"{container}/predict", json={"applications": []}, timeout=10)
    assert response.status_code == 400
    assert response.json()["detail"][0]["loc"] == ["applications"]


def test_threshold_override_from_the_environment_needs_no_rebuild(image):
    port = free_port()
    run_container(image, OVERRIDE, port, "-e", "SCORING_THRESHOLD=0.5")
    try:
        version = requests.get(f"http://127.0.0.1:{port}/version", timeout=10).json()
        assert version["threshold"] == 0.5
        assert version["threshold_origin"] == "override SCORING_THRESHOLD"
    finally:
        podman(image, "rm", "-f", "-t", "5", OVERRIDE, check=False)


def test_sigterm_under_load_fails_no_in_flight_request(image, demo_rows):
    port = free_port()
    run_container(image, SIGTERM, port)
    url = f"http://127.0.0.1:{port}/predict"
    signalled = threading.Event()
    failures: list[str] = []

    def client(rows: list[dict]) -> None:
        session = requests.Session()
        while not signalled.is_set():
            # In flight = sent before the signal: it must complete with 200. Requests after the
            # signal may be refused; the clients stop sending then.
            try:
                response = session.post(url, json={"applications": rows}, timeout=30)
            except requests.ConnectionError as error:
                failures.append(f"in-flight request lost: {error}")
                return
            if response.status_code != 200:
                failures.append(f"in-flight request got {response.status_code}")

    try:
        with ThreadPoolExecutor(8) as pool:
            for i in range(8):
                pool.submit(client, demo_rows[i * 30 : i * 30 + 30])
            time.sleep(2)
            signalled.set()
            started = time.monotonic()
            stop = podman(image, "stop", "-t", "30", SIGTERM, timeout=60)
            stopped_after = time.monotonic() - started
        assert stop.returncode == 0
        assert stopped_after < 30, f"took {stopped_after:.1f} s: killed, not drained"
        assert failures == []
        state = podman(image, "inspect", SIGTERM, "--format",
                       "{{.State.ExitCode}}").stdout.strip()  # fmt: skip
        assert state in ("0", "143"), f"exit code {state}"
    finally:
        podman(image, "rm", "-f", SIGTERM, check=False)


def test_oci_archive_loads_back_as_an_image(image):
    archive = image["archive"]
    assert archive.stat().st_size > 50 * 1024 * 1024
    loaded = podman(image, "load", "-i", str(archive), timeout=300)
    assert "credit-scoring-service" in loaded.stdout + loaded.stderr
