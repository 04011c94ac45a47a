"""Refuse what the API routes cannot parse before BentoML reads it: an oversized body (413) or a
body of the wrong media type (415). And give every refusal on those routes, its own and the ones
BentoML or Starlette answer (validation 400s, 405s), the one JSON shape of refusals.py. The
routes it covers are read from the service's own APIs, so a new route cannot escape it.

Refusals are reshaped here, on the wire, rather than inside BentoML: this sees every 4xx the
routes answer, whichever part of BentoML or Starlette produced it, and replaces no framework
code. Only a 4xx is buffered; any other response passes through as it came."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from scoring.serving.edge.refusals import refusal, reshape

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Response = tuple[Message, Message]  # http.response.start, http.response.body


def refused(status: int, message: str, field: str, kind: str) -> Response:
    """A refusal of one problem, in the one shape (refusals.py), as an ASGI response."""
    return json_response(status, json.dumps(refusal(field, message, kind)).encode())


def json_response(
    status: int, body: bytes, headers: Sequence[tuple[bytes, bytes]] = ()
) -> Response:
    """A JSON `body` as the two ASGI messages that send it (see `send_response`)."""
    start = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            *headers,
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
    }
    return start, {"type": "http.response.body", "body": body}


class RequestGuard:
    """Pure ASGI middleware: a few header checks, no request body buffered (only a 4xx answer's
    body, to reshape it), so it costs microseconds.

    `json_routes` and `file_routes` map a path to the body limit in bytes."""

    def __init__(self, app: Any, json_routes: dict[str, int], file_routes: dict[str, int]) -> None:
        self.app = app
        self.json_routes = {path.encode(): limit for path, limit in json_routes.items()}
        self.file_routes = {path.encode(): limit for path, limit in file_routes.items()}

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"].rstrip("/").encode()
        is_json = path in self.json_routes
        if not (is_json or path in self.file_routes):
            return await self.app(scope, receive, send)
        app_send = _one_shape(send)
        if scope["method"] != "POST":
            return await self.app(scope, receive, app_send)
        limit = self.json_routes[path] if is_json else self.file_routes[path]
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        media_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        problem = None
        if length is not None and length.isdigit() and int(length) > limit:
            problem = _too_large(f"request body of {int(length)} bytes exceeds {limit}")
        elif is_json and media_type not in (b"application/json", b""):
            given = media_type.decode("latin-1")  # header bytes are Latin-1, not always UTF-8
            problem = _unsupported(f"content type {given} is not application/json")
        elif not is_json and not media_type.startswith(b"multipart/form-data"):
            problem = _unsupported("upload the file as multipart/form-data field 'file'")
        elif scope.get("query_string"):
            # The API routes read their parameters from the body only: `/explain?top_k=1` ran
            # with the default top_k, without a word. Refused like an unknown body field.
            message = "this route takes no query parameters: send them in the body"
            problem = refused(400, message, "query", "query_not_allowed")
        if problem is not None:
            return await send_response(send, problem)
        if length is None:
            # Chunked upload: its size is unknown up front, so count it as it streams through
            # (nothing is buffered here; a file upload is spooled to disk by the form parser).
            return await _within_limit(self.app, scope, receive, app_send, send, limit)
        return await self.app(scope, receive, app_send)


def _too_large(message: str) -> Response:
    return refused(413, message, "body", "body_too_large")


def _unsupported(message: str) -> Response:
    return refused(415, message, "content-type", "unsupported_media_type")


def _one_shape(send: Send) -> Send:
    """`send` for the app: a 4xx response is held back and rewritten into the one shape of
    refusals.py; anything else is forwarded untouched, message by message."""
    refused: Message | None = None
    passing = False
    chunks: list[bytes] = []

    async def shaped_send(message: Message) -> None:
        nonlocal refused, passing
        if passing:
            return await send(message)
        if refused is None:
            if message["type"] == "http.response.start" and 400 <= message["status"] < 500:
                refused = message
                return None
            passing = True
            return await send(message)
        if message["type"] != "http.response.body":
            return None
        chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return None
        status = refused["status"]
        kept = [
            (name, value)
            for name, value in refused.get("headers", [])
            if name.lower() not in (b"content-type", b"content-length")
        ]
        content = json.dumps(reshape(status, b"".join(chunks))).encode()
        await send_response(send, json_response(status, content, kept))

    return shaped_send


async def send_response(send: Send, response: Response) -> None:
    start, body = response
    await send(start)
    await send(body)


async def _within_limit(
    app: Any, scope: Message, receive: Receive, app_send: Send, send: Send, limit: int
) -> None:
    """Run the app on a chunked body; past `limit` bytes the app sees the client leave, and the
    client gets a 413 instead of whatever the app would have answered."""
    received = 0
    exceeded = False
    started = False

    async def counting_receive() -> Message:
        nonlocal received, exceeded
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                exceeded = True
                return {"type": "http.disconnect"}
        return message

    async def guarded_send(message: Message) -> None:
        nonlocal started
        if exceeded:
            return  # the 413 below answers instead
        started = started or message["type"] == "http.response.start"
        await app_send(message)

    try:
        await app(scope, counting_receive, guarded_send)
    except Exception:
        if not exceeded:
            raise
    if exceeded and not started:
        await send_response(send, _too_large(f"request body exceeds {limit} bytes"))


def is_file_route(method: Any) -> bool:
    return method.input_spec.mime_type() == "multipart/form-data"


def body_limits(service: Any, settings: Any) -> dict[str, int]:
    """Each API route of `service` → its body limit: JSON bodies settings.max_body_bytes, file
    uploads (multipart) settings.max_file_bytes."""
    return {
        method.route.rstrip("/"): (
            settings.max_file_bytes if is_file_route(method) else settings.max_body_bytes
        )
        for method in service.apis.values()
    }


def install_request_guard(service: Any, settings: Any) -> None:
    """Guard every POST API of `service` within its body limit (`body_limits`)."""
    limits = body_limits(service, settings)
    files = {method.route.rstrip("/") for method in service.apis.values() if is_file_route(method)}
    json_routes = {route: limit for route, limit in limits.items() if route not in files}
    file_routes = {route: limit for route, limit in limits.items() if route in files}
    service.add_asgi_middleware(RequestGuard, json_routes=json_routes, file_routes=file_routes)
