"""BentoML's TimeoutMiddleware with scoring/bentoml_patches/request_timeout.py installed, on a
real event loop."""

from __future__ import annotations

import asyncio
import gc
import time

from bentoml._internal.server.http.traffic import TimeoutMiddleware
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from scoring.bentoml_patches import request_timeout

request_timeout.install()


async def fast(_):
    return PlainTextResponse("ok")


async def slow(_):
    await asyncio.sleep(2)
    return PlainTextResponse("late")


async def broken(_):
    raise RuntimeError("a bug in the app")


def app(timeout: float) -> Starlette:
    routes = [Route("/fast", fast), Route("/slow", slow), Route("/broken", broken)]
    return Starlette(routes=routes, middleware=[Middleware(TimeoutMiddleware, timeout=timeout)])


def pending_timers() -> int:
    gc.collect()
    return sum(isinstance(o, asyncio.TimerHandle) for o in gc.get_objects())


def test_answered_requests_leave_no_timer_behind():
    with TestClient(app(timeout=30)) as client:
        before = pending_timers()
        for _ in range(300):
            assert client.get("/fast").text == "ok"
        # BentoML's own middleware left one 30 s timer (and its future) per request here.
        assert pending_timers() - before < 10


def test_a_request_past_the_timeout_still_gets_504():
    with TestClient(app(timeout=0.2)) as client:
        response = client.get("/slow")
    assert response.status_code == 504
    assert "0.2 seconds" in response.json()["error"]


def test_an_app_that_fails_before_answering_ends_the_request_at_once_with_its_error():
    """Upstream waits on the timer alone: the request hung for the whole timeout, then ended
    without the app's exception (a bare 500 from the server, nothing in the log)."""
    with TestClient(app(timeout=5), raise_server_exceptions=False) as client:
        start = time.perf_counter()
        response = client.get("/broken")
        elapsed = time.perf_counter() - start
    assert response.status_code == 500
    assert elapsed < 2
