"""Refuse what the API routes cannot parse before BentoML reads it: an oversized body (413) or a
body of the wrong media type (415). Answers are JSON, like every error. The routes it covers are
read from the service's own APIs, so a new route cannot escape it."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def _error(status: int, message: str, field: str) -> tuple[Message, Message]:
    body = json.dumps({"error": message, "field": field}).encode()
    start = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
    }
    return start, {"type": "http.response.body", "body": body}


class RequestGuard:
    """Pure ASGI middleware: a few header checks, no body buffering, so it costs microseconds.

    `json_routes` and `file_routes` map a path to the body limit in bytes."""

    def __init__(self, app: Any, json_routes: dict[str, int], file_routes: dict[str, int]) -> None:
        self.app = app
        self.json_routes = {path.encode(): limit for path, limit in json_routes.items()}
        self.file_routes = {path.encode(): limit for path, limit in file_routes.items()}

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        path = scope["path"].rstrip("/").encode()
        is_json = path in self.json_routes
        if not (is_json or path in self.file_routes):
            return await self.app(scope, receive, send)
        limit = self.json_routes[path] if is_json else self.file_routes[path]
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        media_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        problem = None
        if length is not None and length.isdigit() and int(length) > limit:
            problem = _error(413, f"request body of {int(length)} bytes exceeds {limit}", "body")
        elif is_json and media_type not in (b"application/json", b""):
            problem = _error(
                415, f"content type {media_type.decode()} is not application/json", "content-type"
            )
        elif not is_json and not media_type.startswith(b"multipart/form-data"):
            problem = _error(
                415, "upload the file as multipart/form-data field 'file'", "content-type"
            )
        if problem is not None:
            return await _answer(send, problem)
        if length is None:
            # Chunked upload: its size is unknown up front, so count it as it streams through
            # (nothing is buffered here; a file upload is spooled to disk by the form parser).
            return await _within_limit(self.app, scope, receive, send, limit)
        return await self.app(scope, receive, send)


async def _answer(send: Send, problem: tuple[Message, Message]) -> None:
    start, body = problem
    await send(start)
    await send(body)


async def _within_limit(app: Any, scope: Message, receive: Receive, send: Send, limit: int) -> None:
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
        await send(message)

    try:
        await app(scope, counting_receive, guarded_send)
    except Exception:
        if not exceeded:
            raise
    if exceeded and not started:
        await _answer(send, _error(413, f"request body exceeds {limit} bytes", "body"))


def install_request_guard(service: Any, settings: Any) -> None:
    """Guard every POST API of `service`: JSON bodies up to settings.max_body_bytes, file
    uploads (multipart) up to settings.max_file_bytes."""
    json_routes, file_routes = {}, {}
    for method in service.apis.values():
        route = method.route.rstrip("/")
        if method.input_spec.mime_type() == "multipart/form-data":
            file_routes[route] = settings.max_file_bytes
        else:
            json_routes[route] = settings.max_body_bytes
    service.add_asgi_middleware(RequestGuard, json_routes=json_routes, file_routes=file_routes)
