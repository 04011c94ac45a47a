"""Multipart request bodies (the file upload route) refused with a 400, not a 500.

BentoML 1.4's `MultipartSerde.parse_request` answers 500 ("an unexpected error has occurred")
to uploads that are the caller's fault: a multipart body Starlette cannot parse (no boundary,
too many parts: Starlette raises an HTTPException(400), which BentoML's endpoint wrapper does
not know), and a form field the API does not take whose content is not text (it is fed to
`json.loads`, whose UnicodeDecodeError escapes). It also takes the first of two parts with the
same name, so `file` sent twice was scored from whichever came first. Here the form is read
first (Starlette keeps it for BentoML's own parsing, so it is read once): an unreadable body is
a 400 naming `body`, an unknown field a 400 naming it, a repeated field a 400 naming it, all as
validation errors like the JSON routes'.

Two more holes are closed here. For a file field sent as text, not as a file, BentoML's
`ensure_file` fetches the text as a URL (with no size cap): the service must never fetch a URL
on a caller's behalf, so such a field is refused naming it before upstream sees it. And
upstream feeds every other field to `json.loads`, catching only JSONDecodeError: a deeply
nested value (RecursionError), an integer of over 4,300 digits or a file part that is not UTF-8
(ValueError) was a 500; each is now a 400 naming the field.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from _bentoml_impl.serde import MultipartSerde
from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request

# BentoML's own method, kept for the canary test that checks it still needs this patch.
UPSTREAM_PARSE_REQUEST = MultipartSerde.parse_request


async def _parse_request(self: MultipartSerde, request: Request, cls: type[Any]) -> Any:
    try:
        form = await request.form()
    except (HTTPException, MultiPartException) as error:
        detail = error.detail if isinstance(error, HTTPException) else error.message
        problem = _error("multipart_invalid", f"unreadable upload: {detail}", ())
        raise _refusal(cls, [problem]) from None
    names = Counter(name for name, _ in form.multi_items())
    problems = [
        _error("repeated_key", f"form field sent {times} times; send it once", (name,))
        for name, times in names.items()
        if times > 1
    ]
    problems += [
        {"type": "extra_forbidden", "loc": (name,), "input": ""}
        for name in names
        if name not in cls.model_fields
    ]
    if not problems:
        for name, value in form.multi_items():
            if problem := await _value_problem(cls, name, value):
                problems.append(problem)
    if problems:
        raise _refusal(cls, problems)
    return await UPSTREAM_PARSE_REQUEST(self, request, cls)


async def _value_problem(
    cls: type[Any], name: str, value: str | UploadFile
) -> InitErrorDetails | None:
    """Why upstream's parsing would fetch or fail on this known field's value, if it would."""
    if name in cls.multipart_fields:
        if isinstance(value, UploadFile):
            return None
        # Upstream would fetch it as a URL: refused before any connection is tried.
        return _error("file_expected", "upload a file (a file part, not a text field)", (name,))
    text: str | bytes = value
    if isinstance(value, UploadFile):  # upstream reads it whole too; sent as a file part
        text = await value.read()
        await value.seek(0)
    try:
        json.loads(text)
    except json.JSONDecodeError:
        pass  # upstream keeps the text as it is, for the field's own validation
    except (RecursionError, ValueError) as error:  # ValueError: too many digits, not UTF-8
        reason = type(error).__name__ if isinstance(error, RecursionError) else str(error)
        return _error("value_invalid", f"unreadable value: {reason[:200]}", (name,))
    return None


def _error(kind: str, message: str, loc: tuple[str, ...]) -> InitErrorDetails:
    # The message as context, so braces in it are not read as placeholders.
    return {
        "type": PydanticCustomError(kind, "{reason}", {"reason": message}),
        "loc": loc,
        "input": "",
    }


def _refusal(cls: type[Any], problems: list[InitErrorDetails]) -> ValidationError:
    return ValidationError.from_exception_data(cls.__name__, problems)


def install() -> None:
    MultipartSerde.parse_request = _parse_request  # type: ignore[method-assign]


def report() -> dict[str, object]:
    return {"active": MultipartSerde.parse_request is _parse_request}
