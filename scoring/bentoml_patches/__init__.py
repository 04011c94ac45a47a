"""Fixes to BentoML's internals, behind one fence.

Each module here replaces one piece of BentoML 1.4 that cost measured speed or let a request
say two things at once (see its docstring).
`install()` is the only entry point: it refuses a BentoML release the patches were not checked
against, installs every patch, logs which are active, and keeps a report for GET /version.
Each patch has a canary test (tests/test_bentoml_patches.py) that fails the day upstream fixes
the bug it works around, and a test that it is active in a real `bentoml serve`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import bentoml
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from scoring.bentoml_patches import (
    batching_wait,
    bound_api_methods,
    bulk_bypass,
    form_body,
    json_body,
    json_response,
    malformed_http,
    refusal_logging,
    request_metrics,
    request_timeout,
    response_headers,
    worker_sockets,
)

log = logging.getLogger("bentoml.credit_scoring")

# The releases whose internals the patches were written and canary-tested against. To widen it,
# run tests/test_bentoml_patches.py on the new release: a failing canary means upstream changed
# (or fixed) what a patch replaces, so re-read that part of BentoML before serving on it.
SUPPORTED_BENTOML = SpecifierSet("==1.4.39")

# name -> what reports, in the running process, whether the patch took effect there.
_REPORTS: dict[str, Callable[[], dict[str, Any]]] = {
    "batching_wait": batching_wait.report,
    "bound_api_methods": bound_api_methods.report,
    "bulk_bypass": bulk_bypass.report,
    "form_body": form_body.report,
    "json_body": json_body.report,
    "json_response": json_response.report,
    "malformed_http": malformed_http.report,
    "refusal_logging": refusal_logging.report,
    "request_metrics": request_metrics.report,
    "request_timeout": request_timeout.report,
    "response_headers": response_headers.report,
    "worker_sockets": worker_sockets.report,
}


class UnsupportedBentoML(RuntimeError):  # noqa: N818 - named for what the operator sees
    """The installed BentoML is outside SUPPORTED_BENTOML."""


def check_version(installed: str = bentoml.__version__) -> None:
    if Version(installed) not in SUPPORTED_BENTOML:
        raise UnsupportedBentoML(
            f"BentoML {installed} is installed; scoring/bentoml_patches replaces internals of "
            f"BentoML {SUPPORTED_BENTOML} only: install that (env/requirements.lock), or re-check "
            "each patch against the new release (tests/test_bentoml_patches.py) and widen "
            "SUPPORTED_BENTOML"
        )


def install(
    workers: int,
    bulk_rows: int,
    offload: json_body.Offload | None = None,
    offload_bytes: int = 0,
    known_paths: Sequence[str] = (),
    malformed_http_body: bytes = b"",
) -> dict[str, Any]:
    """Install every patch in this process (call it at service import, before the service class
    is built) and return the report GET /version shows. Requests of `bulk_rows` rows or more
    skip the batching queue; `offload(function, *args)` parses JSON bodies of `offload_bytes` or
    more off the event loop; `known_paths` are the service's routes besides its APIs (request
    metrics label any other path as one); `malformed_http_body` is the JSON 400 for a request
    the HTTP parser cannot read."""
    check_version()
    batching_wait.install()
    bound_api_methods.install()
    bulk_bypass.install(bulk_rows)
    form_body.install()
    json_body.install(offload, offload_bytes)
    json_response.install()
    malformed_http.install(malformed_http_body)
    refusal_logging.install()
    request_metrics.install(known_paths)
    request_timeout.install()
    response_headers.install()
    worker_sockets.install(workers, bentoml.server_context.worker_index)
    active = report()
    log.info("BentoML %s patches installed: %s", bentoml.__version__, ", ".join(active))
    return active


def report() -> dict[str, Any]:
    """Each patch as this process sees it now: not what was asked for, what took effect."""
    return {name: describe() for name, describe in _REPORTS.items()}
