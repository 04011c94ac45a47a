"""Refuse what the API routes cannot parse before BentoML reads it: an oversized body (413)
or a body that is not JSON (415) on the JSON endpoints. Answers are JSON, like every error."""

from __future__ import annotations

import json
from typing import Any

JSON_ROUTES = (b"/predict", b"/predict_compact", b"/explain")
FILE_ROUTES = (b"/predict_file",)


def _error(status: int, message: str, field: str) -> tuple[dict, dict]:
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
    """Pure ASGI middleware: a few header checks, no body buffering, so it costs microseconds."""

    def __init__(self, app: Any, max_body_bytes: int, file_body_factor: int = 20) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.file_body_factor = file_body_factor

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        path = scope["path"].rstrip("/").encode()
        is_json, is_file = path in JSON_ROUTES, path in FILE_ROUTES
        if not (is_json or is_file):
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        limit = self.max_body_bytes * (self.file_body_factor if is_file else 1)
        length = headers.get(b"content-length")
        media_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        problem = None
        if length is not None and length.isdigit() and int(length) > limit:
            problem = _error(413, f"request body of {int(length)} bytes exceeds {limit}", "body")
        elif is_json and media_type not in (b"application/json", b""):
            problem = _error(
                415, f"content type {media_type.decode()} is not application/json", "content-type"
            )
        elif is_file and not media_type.startswith(b"multipart/form-data"):
            problem = _error(
                415, "upload the file as multipart/form-data field 'file'", "content-type"
            )
        if problem is None and length is None:
            # Chunked upload: buffer it (up to the limit) so its size can be checked too.
            body, too_large = await _read_up_to(receive, limit)
            if too_large:
                problem = _error(413, f"request body exceeds {limit} bytes", "body")
            else:
                receive = _replay(body)
        if problem is None:
            return await self.app(scope, receive, send)
        start, body_message = problem
        await send(start)
        await send(body_message)
        return None


async def _read_up_to(receive: Any, limit: int) -> tuple[bytes, bool]:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), False
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if size > limit:
            return b"", True
        if not message.get("more_body", False):
            return b"".join(chunks), False


def _replay(body: bytes) -> Any:
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def install_error_handling(service: Any, settings: Any) -> None:
    service.add_asgi_middleware(RequestGuard, max_body_bytes=settings.max_body_bytes)
