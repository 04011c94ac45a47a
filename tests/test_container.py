"""The OCI image as users run it: built by env/build_image.sh, run by podman with a read-only
root filesystem and a /tmp tmpfs, as the image's non-root user, on a loopback port.

Everything lives in test-private podman storage under the session's temporary folder and is
removed afterwards (containers, images, `podman system reset`), also when a test fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import bentoml
import pytest
import requests

from loadtest.processes import ROOT, free_port
from scoring.serving.edge.startup import CANNOT_SERVE_EXIT_CODE
from tests.service_helpers import reference_probabilities

pytestmark = pytest.mark.container

IMAGE = "localhost/credit-scoring-service:test"
READY_TIMEOUT_S = 120
GRACE_S = 30  # podman stop -t: SIGTERM, then SIGKILL after this many seconds
CLIENTS = 8
# The image measured 1,016 MB on 2026-12-07 once scikit-learn and skops joined the serving lock
# (a Pipeline's steps run in the service: about 38 MB installed); below 1 GB before. The bar
# stays under what BentoML's default apt step (build-essential) alone made, 1.05 GB, so that
# step still fails it, and test_image_carries_no_c_compiler checks for a compiler directly.
LEAN_BYTES = 1_050_000_000


@dataclass(frozen=True)
class Podman:
    """podman with a private configuration and storage under `home`."""

    home: Path

    @classmethod
    def create(cls, home: Path) -> Podman:
        """Configure through env/containers.sh (installing the tools as root when missing);
        skip the calling test, naming what is missing, when no engine can be had."""
        setup = subprocess.run(
            ["bash", "-c", "source env/containers.sh && pick_engine"],
            cwd=ROOT,
            env={**os.environ, "ENGINE": "podman", "ENGINE_DIR": str(home)},
            capture_output=True,
            text=True,
            timeout=900,
        )
        if setup.returncode != 0:
            pytest.skip(f"no container engine: {setup.stderr.strip()[-600:]}")
        return cls(home)

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "ENGINE": "podman",
            "ENGINE_DIR": str(self.home),
            "CONTAINERS_CONF": str(self.home / "containers.conf"),
            "CONTAINERS_STORAGE_CONF": str(self.home / "storage.conf"),
        }

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["podman", *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if check and result.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)}: {result.stderr.strip()[-2000:]}")
        return result

    def remove_everything(self) -> None:
        self("rm", "--all", "--force", "--time", "0", check=False)
        self("system", "reset", "--force", check=False, timeout=300)
        shutil.rmtree(self.home, ignore_errors=True)


@dataclass(frozen=True)
class Built:
    name: str
    labels: dict[str, str]
    archive: Path


@dataclass(frozen=True)
class Served:
    name: str
    url: str
    cold_start_s: float


@pytest.fixture(scope="module")
def podman(tmp_path_factory) -> Iterator[Podman]:
    engine = Podman.create(tmp_path_factory.mktemp("containers"))
    try:
        yield engine
    finally:
        engine.remove_everything()


@pytest.fixture(scope="module")
def image(podman, production_model, bentoml_home, tmp_path_factory) -> Iterator[Built]:
    """The one build command, against the session's Bento home holding the tiny model."""
    if os.geteuid() != 0:
        pytest.skip("the base image is built with debootstrap, which needs root")
    archive = tmp_path_factory.mktemp("export") / "credit-scoring-service.oci.tar"
    started = time.monotonic()
    build = subprocess.run(
        ["bash", "env/build_image.sh", "--export", str(archive)],
        cwd=ROOT,
        env={**podman.env, "BENTOML_HOME": str(bentoml_home), "IMAGE": IMAGE},
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert build.returncode == 0, f"env/build_image.sh failed:\n{build.stderr[-5000:]}"
    summary = [line for line in build.stdout.splitlines() if line.startswith(("base", "image"))]
    print(f"\nenv/build_image.sh: {time.monotonic() - started:.0f} s", *summary, sep="\n  ")
    labels = json.loads(podman("image", "inspect", IMAGE, "--format", "{{json .Labels}}").stdout)
    try:
        yield Built(IMAGE, labels, archive)
    finally:
        archive.unlink(missing_ok=True)  # 300 MB; pytest keeps its last temporary folders


def wait_until_ready(podman: Podman, name: str, url: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    polls = 0
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        polls += 1
        if polls % 10 == 0:  # about once a second: has it died?
            running = podman("inspect", name, "--format", "{{.State.Running}}", check=False)
            if running.stdout.strip() != "true":
                logs = podman("logs", name, check=False)
                raise AssertionError(f"{name} exited:\n{(logs.stdout + logs.stderr)[-3000:]}")
        time.sleep(0.1)
    raise AssertionError(f"{name}: /readyz not ready after {READY_TIMEOUT_S} s")


@contextmanager
def serving(podman: Podman, built: Built, name: str, *options: str) -> Iterator[Served]:
    """The image as users run it: read-only root, /tmp tmpfs, published on 127.0.0.1 only."""
    port = free_port()
    started = time.monotonic()
    podman(
        "run", "--detach", "--name", name, "--pull=never", "--read-only", "--tmpfs", "/tmp",
        "--publish", f"127.0.0.1:{port}:3000", *options, built.name,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_ready(podman, name, url)
        yield Served(name, url, time.monotonic() - started)
    finally:
        podman("rm", "--force", "--time", "5", name, check=False)


@pytest.fixture(scope="module")
def served(podman, image) -> Iterator[Served]:
    with serving(podman, image, "credit-scoring-test") as container:
        print(f"\ncold start to /readyz: {container.cold_start_s:.1f} s")
        yield container


def git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.strip()


def test_read_only_container_becomes_ready_on_loopback(served):
    assert requests.get(f"{served.url}/readyz", timeout=5).status_code == 200
    assert served.cold_start_s < 60


def test_root_filesystem_stays_read_only_while_serving(podman, served):
    probe = "touch /home/bentoml/bento/probe && echo writable; touch /tmp/probe"
    result = podman("exec", served.name, "sh", "-c", probe, check=False)
    assert "writable" not in result.stdout
    assert result.returncode == 0, result.stderr  # /tmp, the tmpfs, is writable


def test_server_process_runs_as_uid_1034(podman, served, image):
    status = podman("exec", served.name, "cat", "/proc/1/status").stdout
    uids = next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:"))
    assert set(uids) == {"1034"}
    user = podman("image", "inspect", image.name, "--format", "{{.Config.User}}").stdout
    assert user.strip() == "bentoml"


def test_image_carries_no_c_compiler(podman, image):
    probe = podman(
        "run", "--rm", "--pull=never", "--network", "none", "--entrypoint", "sh", image.name,
        "-c", "command -v gcc || command -v cc", check=False,
    )  # fmt: skip
    assert probe.returncode != 0, f"compiler found: {probe.stdout}"


def test_image_stays_lean(podman, image):
    size = int(podman("image", "inspect", image.name, "--format", "{{.Size}}").stdout)
    print(f"\nimage size: {size / 1e6:.0f} MB")
    assert size < LEAN_BYTES


def test_image_labels_carry_revision_and_model_lineage(image, production_model):
    model_labels = bentoml.models.get(production_model).info.labels
    assert image.labels["org.opencontainers.image.revision"].startswith(git("rev-parse", "HEAD"))
    assert datetime.fromisoformat(image.labels["org.opencontainers.image.created"])
    if git("remote"):
        assert image.labels["org.opencontainers.image.source"]
    assert image.labels["ai.credit-scoring.model.tag"] == production_model
    assert image.labels["ai.credit-scoring.model.run_id"] == model_labels["run_id"]
    assert image.labels["ai.credit-scoring.model.threshold"] == model_labels["threshold"]


def test_version_reports_the_model_labels_and_the_build_revision(served, image, production_model):
    version = requests.get(f"{served.url}/version", timeout=10).json()
    model_labels = bentoml.models.get(production_model).info.labels
    assert version["model_tag"] == production_model
    assert version["run_id"] == model_labels["run_id"]
    assert version["threshold"] == float(model_labels["threshold"])
    assert version["threshold_origin"] == "model label"
    assert version["service"]["revision"] == image.labels["org.opencontainers.image.revision"]
    assert version["bento"] == image.labels["ai.credit-scoring.bento"]


def test_container_predictions_equal_the_in_process_booster(served, production_model, demo_rows):
    response = requests.post(f"{served.url}/predict", json={"applications": demo_rows}, timeout=60)
    assert response.status_code == 200, response.text
    served_probabilities = [p["probability_of_default"] for p in response.json()]
    expected = reference_probabilities(production_model, demo_rows)
    assert served_probabilities == pytest.approx(list(expected), abs=1e-12)


def test_bad_request_gets_a_400_json_from_inside_the_container(served):
    response = requests.post(f"{served.url}/predict", json={"applications": []}, timeout=10)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"]


# Run inside the container, with the image's own Python: the answer of `path` as JSON, or the
# error; POST when a body is given. Nothing but loopback exists there.
_INSIDE = """
import json, sys, urllib.request
path, body = sys.argv[1], sys.argv[2]
request = urllib.request.Request("http://127.0.0.1:3000" + path, data=body.encode() or None,
                                 headers={"content-type": "application/json"})
with urllib.request.urlopen(request, timeout=10) as answer:
    raw, kind = answer.read(), answer.headers.get_content_type()
    body = json.loads(raw) if kind == "application/json" else raw.decode()
    print(json.dumps({"status": answer.status, "body": body}))
"""


def _from_inside(podman: Podman, name: str, path: str, body: str = "") -> tuple[dict | None, str]:
    """The answer (None when the call failed) and what the call wrote to stderr."""
    done = podman("exec", name, "python3", "-c", _INSIDE, path, body, check=False)
    return (json.loads(done.stdout) if done.returncode == 0 else None), done.stderr[-1500:]


def test_the_service_serves_with_no_network_at_all_called_from_inside(podman, image, demo_rows):
    """--network=none: only loopback. The service starts and scores with no egress (what the
    NetworkPolicy in env/k8s relies on: it allows none)."""
    name = "credit-scoring-no-network"
    podman(
        "run", "--detach", "--name", name, "--pull=never", "--read-only", "--tmpfs", "/tmp",
        "--network", "none", image.name,
    )  # fmt: skip
    try:
        interfaces = podman("exec", name, "cat", "/proc/net/dev").stdout
        names = {line.split(":")[0].strip() for line in interfaces.splitlines() if ":" in line}
        assert names == {"lo"}, interfaces
        deadline = time.monotonic() + READY_TIMEOUT_S
        while (ready := _from_inside(podman, name, "/readyz"))[0] is None:
            assert time.monotonic() < deadline, ready[1]
            time.sleep(0.5)
        body = json.dumps({"applications": demo_rows[:3]})
        answer, error = _from_inside(podman, name, "/predict", body)
        assert answer is not None, error
        assert answer["status"] == 200
        assert [p["decision"] in ("approve", "reject") for p in answer["body"]] == [True] * 3
    finally:
        podman("rm", "--force", "--time", "5", name, check=False)


def test_threshold_override_from_the_environment_needs_no_rebuild(podman, image, demo_rows):
    override = ("--env", "SCORING_THRESHOLD=0.5")
    with serving(podman, image, "credit-scoring-override", *override) as container:
        version = requests.get(f"{container.url}/version", timeout=10).json()
        predictions = requests.post(
            f"{container.url}/predict", json={"applications": demo_rows[:5]}, timeout=30
        ).json()
    assert version["threshold"] == 0.5
    assert version["threshold_origin"] == "override SCORING_THRESHOLD"
    assert {p["threshold"] for p in predictions} == {0.5}


def test_a_model_the_container_cannot_serve_stops_it_with_one_line(podman, image):
    """No restart loop inside the container: `bentoml serve` exits non-zero, saying why once."""
    name = "credit-scoring-cannot-serve"
    result = podman(
        "run", "--name", name, "--pull=never", "--read-only", "--tmpfs", "/tmp",
        "--env", "SCORING_MODEL_TAG=credit_scoring:never-imported", image.name,
        check=False,
    )  # fmt: skip
    podman("rm", "--force", name, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == CANNOT_SERVE_EXIT_CODE, output[-3000:]
    lines = [line for line in output.splitlines() if "cannot serve" in line]
    assert len(lines) == 1, output[-3000:]
    assert "credit_scoring:never-imported" in lines[0]
    assert "Traceback" not in output


@dataclass(frozen=True)
class Attempt:
    sent: float
    done: float
    outcome: int | str  # HTTP status, or the exception's name when no response came


def test_sigterm_under_load_loses_no_in_flight_request(podman, image, demo_rows):
    """podman stop sends SIGTERM: requests already sent complete; only new ones are refused."""
    attempts: list[Attempt] = []
    signalled = threading.Event()
    finished = threading.Event()

    def client(rows: list[dict], url: str) -> None:
        session = requests.Session()
        while not finished.is_set():
            sent = time.monotonic()
            try:
                outcome: int | str = session.post(
                    url, json={"applications": rows}, timeout=GRACE_S + 10
                ).status_code
            except requests.RequestException as error:
                outcome = type(error).__name__
            attempts.append(Attempt(sent, time.monotonic(), outcome))
            if signalled.is_set() and outcome != 200:
                return  # the server is going away: stop knocking

    with serving(podman, image, "credit-scoring-sigterm") as container:
        url = f"{container.url}/predict"
        threads = [
            threading.Thread(target=client, args=(demo_rows[i * 30 : (i + 1) * 30], url))
            for i in range(CLIENTS)
        ]
        for thread in threads:
            thread.start()
        time.sleep(2)
        signal_at = time.monotonic()
        signalled.set()
        podman("stop", "--time", str(GRACE_S), container.name, timeout=GRACE_S + 30)
        stopped_after = time.monotonic() - signal_at
        finished.set()
        for thread in threads:
            thread.join(GRACE_S + 15)
        exit_code = podman("inspect", container.name, "--format", "{{.State.ExitCode}}").stdout

    before = [a for a in attempts if a.sent < signal_at]
    in_flight = [a for a in before if a.done >= signal_at]
    lost = [a for a in before if not isinstance(a.outcome, int) or a.outcome >= 500]
    print(
        f"\nSIGTERM: {len(before)} requests sent before it, {len(in_flight)} in flight, "
        f"{len(lost)} lost; container stopped after {stopped_after:.1f} s"
    )
    assert in_flight, "no request was in flight at the signal: the load did not overlap it"
    assert lost == []
    assert stopped_after < GRACE_S, "not drained within the grace period: killed"
    assert exit_code.strip() == "0"


def test_oci_archive_loads_back_under_another_name(image, podman, tmp_path_factory):
    """The exported archive is all another machine needs: load it into fresh storage."""
    elsewhere = Podman.create(tmp_path_factory.mktemp("containers-elsewhere"))
    try:
        elsewhere("load", "--quiet", "--input", str(image.archive), timeout=300)
        listed = elsewhere("images", "--quiet", "--no-trunc").stdout.split()
        loaded = [image_id.removeprefix("sha256:") for image_id in listed]
        elsewhere("tag", loaded[0], "localhost/credit-scoring-service:loaded")
        labels = elsewhere(
            "image", "inspect", "localhost/credit-scoring-service:loaded",
            "--format", "{{json .Labels}}",
        ).stdout  # fmt: skip
    finally:
        elsewhere.remove_everything()
    print(f"\noci-archive: {image.archive.stat().st_size / 1e6:.0f} MB")
    assert json.loads(labels) == image.labels
    original = podman("image", "inspect", image.name, "--format", "{{.Id}}").stdout.strip()
    assert loaded == [original]
