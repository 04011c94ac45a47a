"""What every refusal (4xx) on the API routes looks like, whoever refused: BentoML's validation,
the request guard, Starlette. One JSON shape, so a client reads one thing:

    {"error": "applications.3.AMT_CREDIT: Input should be a valid number",   (one line)
     "field": "applications.3.AMT_CREDIT",   (the offending part: a path into the JSON body,
                                              or body, content-type, file, method)
     "detail": [{"type": "float_type", "loc": ["applications", 3, "AMT_CREDIT"],
                 "msg": "Input should be a valid number"}, ...]}

`detail` lists every problem found (BentoML's validation errors as BentoML gives them; one
entry otherwise); `error` and `field` describe the first. Never a stack trace.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

# The part of the request a refusal without a location is about, by status.
_FIELD_BY_STATUS = {
    401: "authorization",
    404: "path",
    405: "method",
    413: "body",
    415: "content-type",
}


def refusal(field: str, message: str, kind: str) -> dict[str, Any]:
    """A refusal of one problem: `kind` is its machine-readable type."""
    message = _one_line(message)
    return {
        "error": message,
        "field": field,
        "detail": [{"type": kind, "loc": field.split("."), "msg": message}],
    }


def field_path(loc: list[Any] | tuple[Any, ...]) -> str:
    """A pydantic location as a path, `applications.3.AMT_CREDIT`; the empty location (the body
    as a whole, e.g. malformed JSON) is `body`."""
    return ".".join(str(part) for part in loc) or "body"


def reshape(status: int, body: bytes) -> dict[str, Any]:
    """Another component's 4xx body in the one shape: BentoML's validation errors
    ({"error", "detail": [...]}), its other errors ({"error"}, or [{"error"}] as some 4xx come),
    or plain text."""
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = body.decode("utf-8", "replace")
    if isinstance(parsed, list) and len(parsed) == 1:
        parsed = parsed[0]
    if isinstance(parsed, dict):
        detail = parsed.get("detail")
        if isinstance(detail, list) and detail and all(isinstance(d, dict) for d in detail):
            first = detail[0]
            field = field_path(first.get("loc", ()))
            more = f" (and {len(detail) - 1} more, see detail)" if len(detail) > 1 else ""
            return {
                "error": _one_line(f"{field}: {first.get('msg', '')}{more}"),
                "field": field,
                "detail": detail,
            }
        parsed = parsed.get("error") or parsed.get("detail") or ""
    message = str(parsed).strip() or _phrase(status)
    kind = _phrase(status).lower().replace(" ", "_")
    return refusal(_FIELD_BY_STATUS.get(status, "body"), message, kind)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Bad Request"


def _one_line(message: str) -> str:
    return " ".join(message.split())
