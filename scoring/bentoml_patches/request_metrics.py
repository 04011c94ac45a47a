"""BentoML's per-request metrics: a bounded set of endpoint labels, each labelled child
remembered instead of looked up again on every request.

Bounded: BentoML 1.4's `RunnerTrafficMetricsMiddleware` labels its request count, duration
histogram and in-progress gauge with the request's raw path, whatever it is. A client that
requests random paths (a scanner, or anyone hostile) creates new series with every request:
2,000 such requests grew /metrics from 272 KB to 8.1 MB (40,000 lines) and BentoML's shared
multiprocess directory by 14 MB, without end, until scrapes time out. Here a path that is not
one of the service's routes is counted under one endpoint label, `OTHER_ENDPOINT`.

Remembered: the middleware looks up the labelled child of four metrics on every request
(`.labels(endpoint=..., service_name=..., ...)`: the last-request timestamp, the in-progress
gauge, the request count and the duration histogram). prometheus_client checks and joins the
label values and takes a lock each time: 2.3 µs a call, ~9 µs of a single-row request's
~200 µs on the event loop (py-spy: 6-7% of a worker's loop with the middleware's other work).
prometheus_client keeps one child per label set and returns that same child each time, so
remembering it is the same metric, counted the same way (0.6 µs a lookup, the bound's check
included; 2.0 µs upstream, measured in process).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

from bentoml._internal.context import server_context
from bentoml._internal.server.http.instruments import RunnerTrafficMetricsMiddleware

# BentoML's own method, kept for the canary test.
UPSTREAM_SETUP = RunnerTrafficMetricsMiddleware._setup

# The metrics the middleware labels on every request.
PER_REQUEST = (
    "metrics_last_request_timestamp",
    "metrics_request_in_progress",
    "metrics_request_total",
    "metrics_request_duration",
)
LABEL_SETS = 256  # remembered per metric: endpoints x response codes
OTHER_ENDPOINT = "(other)"  # every path that is not a route of the service

_STATE: dict[str, Any] = {"middlewares": 0, "paths": frozenset()}


def _setup(self: RunnerTrafficMetricsMiddleware, *args: Any, **kwargs: Any) -> None:
    UPSTREAM_SETUP(self, *args, **kwargs)
    # BentoML names its API routes in the worker before the first request sets this up.
    known = _STATE["paths"] | frozenset(server_context.service_routes)
    remember_label_sets(self, known)
    _STATE["middlewares"] += 1


def remember_label_sets(middleware: Any, known_paths: Iterable[str]) -> None:
    """Each per-request metric of `middleware` labels a path outside `known_paths` as
    OTHER_ENDPOINT, and answers `.labels(...)` from a small cache."""
    known = frozenset(known_paths)
    for name in PER_REQUEST:
        metric = getattr(middleware, name)
        metric.labels = _bounded(functools.lru_cache(maxsize=LABEL_SETS)(metric.labels), known)


def _bounded(labels: Callable[..., Any], known: frozenset[str]) -> Callable[..., Any]:
    def bounded_labels(*values: Any, **named: Any) -> Any:
        endpoint = named.get("endpoint")
        if endpoint is not None and endpoint not in known:
            named["endpoint"] = OTHER_ENDPOINT
        return labels(*values, **named)

    return bounded_labels


def install(known_paths: Iterable[str] = ()) -> None:
    """`known_paths`: the service's routes besides its APIs (BentoML's own list)."""
    _STATE["paths"] = frozenset(known_paths)
    RunnerTrafficMetricsMiddleware._setup = _setup  # type: ignore[method-assign]


def report() -> dict[str, Any]:
    return {
        "active": RunnerTrafficMetricsMiddleware._setup is _setup,
        "middlewares_set_up": _STATE["middlewares"],
        "other_endpoint_label": OTHER_ENDPOINT,
    }
