"""BentoML's response headers, without a dependency-injection lookup on every request.

BentoML 1.4 adds its `Server` and request-id headers in `ServiceAppFactory._add_response_headers`,
a method wrapped by simple_di's `@inject`: every call binds the method's signature
(`inspect.Signature.bind_partial`, `apply_defaults`) to fill in one default, the logging format,
from BentoML's container. That was 3% of a worker's CPU on single-row requests (py-spy). Here
the same headers are added the same way, with the format and the trace-id switch read from the
container once per process (both are configuration, fixed before the server starts).
"""

from __future__ import annotations

import functools
from typing import Any

from _bentoml_impl.server.app import ServiceAppFactory
from bentoml._internal.configuration.containers import BentoMLContainer
from bentoml._internal.context import trace_context
from starlette.responses import Response

# BentoML's own method, kept for the canary tests.
UPSTREAM_ADD_RESPONSE_HEADERS = ServiceAppFactory._add_response_headers

_ADDED = {"responses": 0}  # responses whose headers this process added


@functools.cache
def _settings() -> tuple[dict[str, str], bool]:
    return BentoMLContainer.logging_formatting.get(), bool(
        BentoMLContainer.http.response.trace_id.get()
    )


def _add_response_headers(self: ServiceAppFactory, resp: Response) -> None:
    logging_format, trace_id_header = _settings()
    resp.headers.update({"Server": f"BentoML Service/{self.service.name}"})
    if trace_context.request_id is not None:
        resp.headers["X-BentoML-Request-ID"] = format(
            trace_context.request_id, logging_format["span_id"]
        )
    if trace_id_header and trace_context.trace_id is not None:
        resp.headers["X-BentoML-Trace-ID"] = format(
            trace_context.trace_id, logging_format["trace_id"]
        )
    _ADDED["responses"] += 1


def install() -> None:
    ServiceAppFactory._add_response_headers = _add_response_headers  # type: ignore[method-assign]


def report() -> dict[str, Any]:
    return {
        "active": ServiceAppFactory._add_response_headers is _add_response_headers,
        "responses": _ADDED["responses"],
    }
