"""BentoML's per-request metrics, without rebuilding each metric's label set on every request.

BentoML 1.4's `RunnerTrafficMetricsMiddleware` looks up the labelled child of four metrics on
every request (`.labels(endpoint=..., service_name=..., ...)`: the last-request timestamp, the
in-progress gauge, the request count and the duration histogram). prometheus_client checks and
joins the label values and takes a lock each time: 2.3 µs a call, ~9 µs of a single-row
request's ~200 µs on the event loop (py-spy: 6-7% of a worker's loop with the middleware's
other work). prometheus_client keeps one child per label set and returns that same child each
time, so remembering it is the same metric, counted the same way; here each of the four keeps
its most recent label sets (an endpoint is the request's path, so a scan of random paths only
rotates this small cache: it does not grow).
"""

from __future__ import annotations

import functools
from typing import Any

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
LABEL_SETS = 256  # per metric: endpoints x response codes

_STATE = {"middlewares": 0}  # set up in this process


def _setup(self: RunnerTrafficMetricsMiddleware, *args: Any, **kwargs: Any) -> None:
    UPSTREAM_SETUP(self, *args, **kwargs)
    remember_label_sets(self)
    _STATE["middlewares"] += 1


def remember_label_sets(middleware: Any) -> None:
    """Each per-request metric of `middleware` answers `.labels(...)` from a small cache."""
    for name in PER_REQUEST:
        metric = getattr(middleware, name)
        metric.labels = functools.lru_cache(maxsize=LABEL_SETS)(metric.labels)


def install() -> None:
    RunnerTrafficMetricsMiddleware._setup = _setup  # type: ignore[method-assign]


def report() -> dict[str, Any]:
    return {
        "active": RunnerTrafficMetricsMiddleware._setup is _setup,
        "middlewares_set_up": _STATE["middlewares"],
    }
