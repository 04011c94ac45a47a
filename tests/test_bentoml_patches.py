"""The fence around BentoML's patches (scoring/bentoml_patches/): the version check, and one
canary per patch that fails the day upstream fixes what the patch works around, so the patch can
go. (That each patch is active in a real `bentoml serve` is in tests/test_service_server.py.)"""

from __future__ import annotations

import asyncio
import gc
import inspect

import bentoml
import pytest
from _bentoml_impl.server import serving
from bentoml._internal.server.http.traffic import TimeoutMiddleware
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from scoring import bentoml_patches
from scoring.bentoml_patches import batching_wait, request_timeout, worker_sockets


def test_the_installed_bentoml_is_one_the_patches_were_checked_against():
    bentoml_patches.check_version(bentoml.__version__)


def test_another_bentoml_release_is_refused_with_what_to_recheck():
    with pytest.raises(bentoml_patches.UnsupportedBentoML) as refused:
        bentoml_patches.check_version("1.5.0")
    assert "tests/test_bentoml_patches.py" in str(refused.value)
    assert "1.5.0" in str(refused.value)


def test_every_patch_reports_its_state():
    assert set(bentoml_patches.report()) == {"batching_wait", "request_timeout", "worker_sockets"}


def test_canary_upstream_batching_wait_still_grows_without_bound():
    """BentoML's own optimizer, fed the long waits an overload leaves, keeps that wait as the
    target for every later request. When it no longer does, drop batching_wait.py."""
    upstream = batching_wait.UPSTREAM_OPTIMIZER(max_latency=0.2)
    for n in range(1, 51):
        upstream.o_stat.append((n % 8 + 1, 0.001 * (n % 8 + 1), 0.300))  # 300 ms waits
    upstream.trigger_refresh()
    assert upstream.wait > 0.1, "upstream bounds the batching wait now: remove batching_wait.py"


async def _ok(_):
    return PlainTextResponse("ok")


class UpstreamTimeoutMiddleware(TimeoutMiddleware):
    __call__ = request_timeout.UPSTREAM_CALL


def test_canary_upstream_timeout_middleware_still_leaves_a_timer_per_request():
    """BentoML's own TimeoutMiddleware, unpatched. When it stops leaking timers, drop
    request_timeout.py."""
    app = Starlette(
        routes=[Route("/", _ok)],
        middleware=[Middleware(UpstreamTimeoutMiddleware, timeout=30)],
    )
    with TestClient(app) as client:
        gc.collect()
        before = sum(isinstance(o, asyncio.TimerHandle) for o in gc.get_objects())
        for _ in range(200):
            assert client.get("/").text == "ok"
        gc.collect()
        after = sum(isinstance(o, asyncio.TimerHandle) for o in gc.get_objects())
    assert after - before >= 150, "upstream cancels its timer now: remove request_timeout.py"


def test_canary_upstream_still_gives_all_workers_one_shared_api_socket():
    """`bentoml serve` builds the API socket without SO_REUSEPORT and hands that one descriptor
    to every worker. When it gives each worker its own socket, drop worker_sockets.py."""
    assert serving.API_SERVER_NAME == worker_sockets.API_SOCKET_NAME
    source = inspect.getsource(serving.serve_http)
    start = source.index("name=API_SERVER_NAME")
    api_socket = source[source.rindex("CircusSocket(", 0, start) : source.index(")", start)]
    assert "reuseport" not in api_socket.lower(), "upstream uses SO_REUSEPORT now"
    # Every worker is started with `--fd` of that same socket.
    assert 'f"$(circus.sockets.{API_SERVER_NAME})"' in source, "workers no longer share its fd"
