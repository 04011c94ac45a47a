"""The benchmark's MLServer peer (loadtest/mlserver_peer.py): installed into its own venv from
PyPI, started on the demo model's booster file, answering what LightGBM answers, and stopped."""

from __future__ import annotations

import json
import math
import os
import shutil
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from loadtest import mlserver_peer


def live_members(group: int) -> dict[int, str]:
    """PID -> command line of each process in a process group that still runs (an exited child
    that init has yet to reap is a zombie: it holds no memory, port or CPU, so it does not
    count)."""
    members = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # pid (comm) state ppid pgrp ...: split after the command, which may hold spaces.
            state, _, pgrp = stat.read_text().rsplit(")", 1)[1].split()[:3]
            command = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError):
            continue
        if int(pgrp) == group and state != "Z":
            members[int(stat.parent.name)] = command
    return members


def test_v2_body_sends_missing_values_as_null_in_the_model_column_order():
    body = json.loads(mlserver_peer.v2_single_row_body([1.5, math.nan, 3.0]))

    assert body == {
        "inputs": [
            {"name": "input-0", "shape": [1, 3], "datatype": "FP64", "data": [1.5, None, 3.0]}
        ]
    }


@pytest.fixture
def peer_venv(tmp_path: Path) -> Iterator[Path]:
    """The peer's venv, installed from the lock into a test-private folder (not the source
    tree's .build/; from uv's cache it takes about a second), removed afterwards: it is ~350 MB."""
    venv = tmp_path / "mlserver-venv"
    try:
        mlserver_peer.ensure_venv(venv)
    except mlserver_peer.PeerNotInstallableError as missing:
        pytest.skip(f"the MLServer peer cannot be installed here: {missing}")
    yield venv
    shutil.rmtree(venv, ignore_errors=True)


@pytest.mark.server
def test_peer_venv_is_reused_when_the_lock_is_unchanged(peer_venv):
    marker = peer_venv / "reused"
    marker.touch()

    assert mlserver_peer.ensure_venv(peer_venv) == mlserver_peer.venv_python(peer_venv)
    assert marker.exists()  # not recreated
    assert mlserver_peer.installed_versions(peer_venv)["mlserver"] == "1.7.1"


@pytest.mark.server
def test_mlserver_peer_answers_lightgbm_probabilities_and_stops_with_its_workers(
    production_model, demo_rows, tmp_path, peer_venv
):
    import lightgbm as lgb

    from loadtest.model_rows import RowEncoder
    from tests.service_helpers import reference_probabilities

    model_file = mlserver_peer.model_file_of(production_model)
    rows = RowEncoder(lgb.Booster(model_file=str(model_file))).matrix(demo_rows)
    assert np.isnan(rows).any()  # the demo rows carry missing values: null must reach LightGBM

    with mlserver_peer.start_mlserver(model_file, 2, tmp_path / "peer", peer_venv) as peer:
        batch = mlserver_peer.infer(peer.url, rows)
        request = urllib.request.Request(
            peer.url,
            data=mlserver_peer.v2_single_row_body(rows[0]),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            single = mlserver_peer.v2_probabilities(json.loads(response.read()))
        group = os.getpgid(peer.pid)
        # parallel_workers=2 in effect: two inference processes (multiprocessing spawns them).
        workers = [c for c in live_members(group).values() if "spawn_main" in c]

    expected = reference_probabilities(production_model, demo_rows)
    np.testing.assert_allclose(batch, expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(single, expected[:1], rtol=0, atol=1e-6)
    assert len(workers) == 2
    # The server and its inference workers are gone (MLServer's own multiprocessing resource
    # tracker may take a moment to notice).
    deadline = time.monotonic() + 10
    while live_members(group) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert live_members(group) == {}
