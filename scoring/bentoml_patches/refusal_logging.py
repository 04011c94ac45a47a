"""A refused request (4xx) writes no traceback; a failure (5xx) writes one, without values.

BentoML 1.4's `ServiceAppFactory.api_endpoint_wrapper` calls `log_exception(request)` (from
`bentoml._internal.server.http_app`, imported by name into `_bentoml_impl.server.app`) before
it answers any exception, a caller's mistake included: every 400 wrote a ~25-line ERROR
traceback, and pydantic's text in it quotes the submitted value (`input_value='...'`,
`input_value={'v': 1}`, a 1 MB string cut at 80 characters). Here a caller's fault (a pydantic
`ValidationError`, a `BentoMLException` with a 4xx code) is not logged by BentoML at all: the
edge (scoring/serving/edge/front_door.py) writes the one refusal line, from the answer. Anything
else, a 5xx, is still logged as an error with its traceback, whose messages the service's log
records withhold (scoring/serving/edge/log_privacy.py).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import _bentoml_impl.server.app as service_app
from bentoml.exceptions import BentoMLException
from pydantic import ValidationError
from starlette.requests import Request

# BentoML's own function, kept for the canary test.
UPSTREAM_LOG_EXCEPTION = service_app.log_exception

log = logging.getLogger("bentoml.credit_scoring")

_COUNTS = {"refusals_not_logged": 0, "failures_logged": 0}


def is_callers_fault(error: BaseException | None) -> bool:
    """A 4xx: what BentoML answers as the caller's mistake, not the service's."""
    if isinstance(error, ValidationError):
        return True
    return isinstance(error, BentoMLException) and 400 <= error.error_code.value < 500


def _log_exception(request: Request, exc_info: Any = True) -> None:
    error = sys.exc_info()[1] if exc_info is True else exc_info[1] if exc_info else None
    if is_callers_fault(error):
        _COUNTS["refusals_not_logged"] += 1
        return
    _COUNTS["failures_logged"] += 1
    # Only BentoML's own routes call this, so the path is one of them, not a caller's choice.
    log.error("exception on %s [%s]", request.url.path, request.method, exc_info=exc_info)


def install() -> None:
    service_app.log_exception = _log_exception


def report() -> dict[str, Any]:
    return {"active": service_app.log_exception is _log_exception, **_COUNTS}
