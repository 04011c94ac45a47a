"""What the service's log lines may hold: never an applicant's values, below DEBUG.

Installed once per process at service import (`install`), for every logger in it (BentoML's,
uvicorn's, ours), whatever handler writes the line:

- An exception logged with its traceback keeps the traceback's frames (file, line, function,
  the source line) and the exception's type, but not its message: pydantic's text quotes what
  was sent (`input_value='...'`), and so may any message built from a request. Python writes
  no local variables into a traceback; the message is the one place values get in. With the
  logger at DEBUG the full text is kept, for a developer on their own machine.
- An exception passed as a `%s` argument is written as its type only, for the same reason.
- `json` format: each line one JSON object, the fields a log shipper indexes.

Done with a log-record factory, not per-handler filters: BentoML configures its handlers
itself (and again in each worker), while the factory sees every record of the process.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Callable
from types import TracebackType
from typing import Any

WITHHELD = "(message withheld: it may quote the request; logging at DEBUG shows it)"
# Logger names whose handlers BentoML sets up in a server process.
_HANDLED_LOGGERS = ("", "bentoml", "uvicorn.error", "circus")

_STATE: dict[str, Any] = {"factory": None, "format": "text", "redacted": 0}


def redacted_traceback(error: BaseException, tb: TracebackType | None) -> str:
    """`error`'s traceback as Python prints it, its causes too, with each message withheld."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = error
    chain: list[tuple[BaseException, TracebackType | None]] = []
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append((current, tb if current is error else current.__traceback__))
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )
    for index, (exc, exc_tb) in enumerate(reversed(chain)):
        if index:
            parts.append("\nThe above exception led to the following one:\n\n")
        parts.append("Traceback (most recent call last):\n")
        parts.extend(traceback.format_list(traceback.extract_tb(exc_tb)))
        kind = type(exc)
        parts.append(f"{kind.__module__}.{kind.__qualname__}: {WITHHELD}\n")
    return "".join(parts).rstrip("\n")


def _private(record: logging.LogRecord) -> logging.LogRecord:
    has_error = bool(record.exc_info and record.exc_info[1] is not None)
    error_args = isinstance(record.args, tuple) and any(
        isinstance(a, BaseException) for a in record.args
    )
    if not (has_error or error_args):
        return record
    if logging.getLogger(record.name).isEnabledFor(logging.DEBUG):
        return record
    if has_error:
        _, error, tb = record.exc_info
        record.exc_text = redacted_traceback(error, tb)
        record.exc_info = None
        _STATE["redacted"] += 1
    if error_args:
        record.args = tuple(
            f"{type(a).__qualname__} {WITHHELD}" if isinstance(a, BaseException) else a
            for a in record.args
        )
    return record


def _factory(upstream: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    def make(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = upstream(*args, **kwargs)
        if record.exc_info or record.args:
            return _private(record)
        return record

    make.__name__ = "scoring_private_record"
    return make


class JsonLines(logging.Formatter):
    """One JSON object a line: time, level, logger, component (BentoML's worker label),
    message, any structured fields the line carries (`extra={"fields": {...}}`), and the
    (redacted) traceback."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        component = getattr(record, "component", None)
        if component:
            entry["component"] = component.strip("[]")
        entry.update(getattr(record, "fields", None) or {})
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["traceback"] = record.exc_text
        return json.dumps(entry, default=str)


def one_line_each() -> None:
    """BentoML gives `uvicorn.error` (and `circus`) the root logger's handler and lets them
    propagate to root too, so each of their lines was written twice ("Invalid HTTP request
    received." among them). Propagation stops where the handler is the same."""
    root = set(logging.getLogger().handlers)
    for name in _HANDLED_LOGGERS[1:]:
        logger = logging.getLogger(name)
        if logger.propagate and root & set(logger.handlers):
            logger.propagate = False


def apply_format(log_format: str) -> None:
    """Give the handlers BentoML configured in this process the `log_format`."""
    one_line_each()
    if log_format != "json":
        return
    formatter = JsonLines()
    for name in _HANDLED_LOGGERS:
        for handler in logging.getLogger(name).handlers:
            handler.setFormatter(formatter)


def install(log_format: str = "text") -> None:
    """Every record of this process made private (idempotent); handlers in `log_format`."""
    if _STATE["factory"] is None:
        factory = _factory(logging.getLogRecordFactory())
        logging.setLogRecordFactory(factory)
        _STATE["factory"] = factory
    _STATE["format"] = log_format
    apply_format(log_format)


def report() -> dict[str, Any]:
    return {
        "active": logging.getLogRecordFactory() is _STATE["factory"] is not None,
        "format": _STATE["format"],
        "tracebacks_redacted": _STATE["redacted"],
    }
