"""The service's outermost ASGI middleware of its own: what every request passes first.

- **A trailing slash is ignored**: `POST /predict/` is `/predict`. Starlette would answer it
  with a 307 redirect, and a redirected POST is resent by some clients as a GET, by others not
  at all.
- **Callers are authenticated** when tokens are configured (tokens.py): `Authorization:
  Bearer <token>`, else a 401 in the one error shape with `WWW-Authenticate: Bearer`. Probes
  stay open, and /metrics unless SCORING_PROTECT_METRICS.
- **Every error answer has the one shape** (refusals.py), whoever produced it (a 404 of an
  unknown path, a 500), and an `X-Request-ID`.
- **A refused body is read before the answer** (up to a bound): a client that sends its
  whole body before reading (urllib, httpx) would otherwise meet a closed socket, not the 413.
- **Each error is one log line** (route, status, error type, field, request id, duration),
  built from the answer and never from the request: the route as the service names it (any
  other path is `(other)`), the field as a path of names the service knows (a name the caller
  invented is `(unlisted)`), and no message, which may quote a value.

Pure ASGI, one layer, no body buffered but an error answer's: on a successful request it
costs a path check and two small wrappers (measured in the README's security section).
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import bentoml

from scoring.core.contract import FeatureSpec
from scoring.serving.edge.refusals import refusal, reshape
from scoring.serving.edge.request_guard import Message, Receive, Send, body_limits, json_response
from scoring.serving.edge.settings import Settings
from scoring.serving.edge.startup import SERVICE_PATHS, cannot_start
from scoring.serving.edge.tokens import TokenFile, TokensError

log = logging.getLogger("bentoml.credit_scoring")

OTHER = "(other)"
UNLISTED = "(unlisted)"
# Always open: Kubernetes' probes carry no token.
PROBES = ("/livez", "/readyz", "/healthz")
METRICS = "/metrics"
# A caller's own request id is logged only when it looks like one (a UUID or hex id), so the
# header cannot carry free text into the log; otherwise the service makes one.
_REQUEST_ID = re.compile(rb"[0-9A-Fa-f-]{8,64}")
_ERROR_TYPE = re.compile(r"[a-z][a-z0-9_]{0,63}")
_INDEXED = re.compile(r"(\w+)\[(\d+)\]")
# Fields a refusal names that are no feature or API parameter (refusals.py, the forms).
FIXED_FIELDS = (
    "body",
    "path",
    "content-type",
    "method",
    "query",
    "authorization",
    "file",
    "columns",
    "data",
)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@dataclass(frozen=True)
class Door:
    """What the front door knows of the service: its routes (for log labels), the names a
    refused field may be logged with, each route's body limit, and the tokens."""

    routes: frozenset[str]
    field_names: frozenset[str]
    body_limits: Mapping[str, int]
    default_limit: int
    discard_factor: int
    tokens: TokenFile | None
    open_paths: frozenset[str]


def safe_field(field: str, names: frozenset[str]) -> str:
    """`field` (a path like `applications.3.AMT_CREDIT`) with every part the service does not
    know by name replaced by `(unlisted)`: an unknown key is the caller's text."""
    parts = []
    for part in field.split("."):
        indexed = _INDEXED.fullmatch(part)
        known = part.isdigit() or part in names or (indexed and indexed.group(1) in names)
        parts.append(part if known else UNLISTED)
    return ".".join(parts)


class _Exchange:
    """One request's state as the door sees it."""

    __slots__ = ("body_done", "started")

    def __init__(self) -> None:
        self.body_done = False
        self.started = False


class FrontDoor:
    def __init__(self, app: Any, door: Door) -> None:
        self.app, self.door = app, door
        self._unauthorized = _unauthorized_body()

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started_at = time.perf_counter()
        path = scope["path"]
        if len(path) > 1 and path.endswith("/"):
            path = path.rstrip("/") or "/"
            scope = {**scope, "path": path, "raw_path": path.encode()}
        exchange = _Exchange()

        async def tracked_receive() -> Message:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                exchange.body_done = True
            return message

        door = self.door
        if door.tokens is not None and path not in door.open_paths:
            challenge = _challenge(scope["headers"], door.tokens)
            if challenge is not None:
                await self._answer_error(
                    scope, tracked_receive, send, exchange, started_at, 401,
                    [(b"www-authenticate", challenge)], self._unauthorized,
                )  # fmt: skip
                return None

        held: Message | None = None
        chunks: list[bytes] = []

        async def door_send(message: Message) -> None:
            nonlocal held
            if held is None:
                if message["type"] == "http.response.start" and message["status"] >= 400:
                    held = message
                    return None
                exchange.started = True
                return await send(message)
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return None
            await self._answer_error(
                scope, tracked_receive, send, exchange, started_at, held["status"],
                _kept_headers(held), b"".join(chunks),
            )  # fmt: skip

        try:
            await self.app(scope, tracked_receive, door_send)
        except Exception:
            # Answered here in the one shape; re-raised so the server logs it (redacted).
            if not exchange.started:
                body = json.dumps(reshape(500, b"")).encode()
                await self._answer_error(
                    scope, tracked_receive, send, exchange, started_at, 500, [], body
                )
            raise
        return None

    async def _answer_error(
        self,
        scope: Message,
        receive: Receive,
        send: Send,
        exchange: _Exchange,
        started_at: float,
        status: int,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
    ) -> None:
        exchange.started = True
        shaped = _shaped(status, body)
        request_id = _request_id(scope["headers"])
        extra = [*headers, (b"x-request-id", request_id.encode())]
        if not await self._discard_body(scope, receive, exchange):
            extra.append((b"connection", b"close"))
        content = json.dumps(shaped).encode()
        start, message = json_response(status, content, extra)
        await send(start)
        await send(message)
        self._log(scope, status, shaped, request_id, time.perf_counter() - started_at)

    async def _discard_body(self, scope: Message, receive: Receive, exchange: _Exchange) -> bool:
        """Read and drop what is left of the request body, up to the bound; False when it is
        not all read (the connection then closes after the answer)."""
        if exchange.body_done:
            return True
        headers = scope["headers"]
        if any(name == b"expect" for name, _ in headers):
            return False  # 100-continue: the client sends nothing until it reads the answer
        door = self.door
        bound = door.body_limits.get(scope["path"], door.default_limit) * door.discard_factor
        for name, value in headers:
            if name == b"content-length" and value.isdigit() and int(value) > bound:
                return False
        read = 0
        while read <= bound:
            message = await receive()
            if message["type"] != "http.request":
                return False
            read += len(message.get("body", b""))
            if not message.get("more_body", False):
                return True
        return False

    def _log(
        self, scope: Message, status: int, shaped: dict, request_id: str, duration_s: float
    ) -> None:
        door = self.door
        path = scope["path"]
        route = path if path in door.routes else OTHER
        method = scope["method"] if scope["method"] in _METHODS else OTHER
        detail = shaped.get("detail") or [{}]
        kind = str(detail[0].get("type", ""))
        kind = kind if _ERROR_TYPE.fullmatch(kind) else OTHER
        field = safe_field(str(shaped.get("field", "")), door.field_names)
        fields = {
            "route": route,
            "method": method,
            "status": status,
            "error_type": kind,
            "field": field,
            "request_id": request_id,
            "duration_ms": round(duration_s * 1000, 2),
        }
        level = logging.ERROR if status >= 500 else logging.INFO
        text = " ".join(f"{name}={value}" for name, value in fields.items())
        log.log(level, "refused %s", text, extra={"fields": fields})


def _shaped(status: int, body: bytes) -> dict[str, Any]:
    """An error body in the one shape: kept when it already is (the guard's, the Arrow
    route's), reshaped otherwise (Starlette's text, BentoML's 500)."""
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and set(parsed) == {"error", "field", "detail"}:
        return parsed
    return reshape(status, body)


def _kept_headers(start: Message) -> list[tuple[bytes, bytes]]:
    return [
        (name, value)
        for name, value in start.get("headers", [])
        if name.lower() not in (b"content-type", b"content-length")
    ]


def _request_id(headers: Iterable[tuple[bytes, bytes]]) -> str:
    for name, value in headers:
        if name == b"x-request-id" and _REQUEST_ID.fullmatch(value):
            return value.decode("ascii")
    return os.urandom(8).hex()


def _challenge(headers: Iterable[tuple[bytes, bytes]], tokens: TokenFile) -> bytes | None:
    """None when the request carries a valid bearer token; else the WWW-Authenticate value."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            if scheme.lower() == b"bearer" and token.strip() and tokens.accepts(token.strip()):
                return None
            return b'Bearer realm="credit_scoring", error="invalid_token"'
    return b'Bearer realm="credit_scoring"'


def _unauthorized_body() -> bytes:
    message = "a valid bearer token is required: Authorization: Bearer <token>"
    return json.dumps(refusal("authorization", message, "unauthorized")).encode()


def install_front_door(service: Any, settings: Settings, spec: FeatureSpec) -> None:
    """Put the front door ahead of `service`'s other middleware (call it before installing
    them): routes and limits read from the service's APIs, field names from them and from the
    model's features, tokens from the settings. An unusable tokens file stops the service."""
    limits = body_limits(service, settings)
    field_names = {*FIXED_FIELDS, *spec.names}
    for method in service.apis.values():
        field_names.update(method.input_spec.model_fields)
    tokens = None
    if settings.api_tokens_file is not None:
        try:
            tokens = TokenFile(settings.api_tokens_file)
        except TokensError as error:
            cannot_start("with SCORING_API_TOKENS_FILE", str(error))
    elif bentoml.server_context.worker_index is None:  # said once, by the serving process
        log.warning("no SCORING_API_TOKENS_FILE: every route is open to whoever reaches the port")
    open_paths = set(PROBES)
    if not settings.protect_metrics:
        open_paths.add(METRICS)
    door = Door(
        routes=frozenset([*limits, *SERVICE_PATHS]),
        field_names=frozenset(field_names),
        body_limits=limits,
        default_limit=settings.max_body_bytes,
        discard_factor=settings.discard_body_factor,
        tokens=tokens,
        open_paths=frozenset(open_paths),
    )
    service.add_asgi_middleware(FrontDoor, door=door)
