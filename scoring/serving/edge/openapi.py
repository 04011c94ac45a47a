"""GET /docs.json lists every public route. BentoML documents its @bentoml.api routes and its
probes; the routes the service serves beside them (POST /predict_arrow, answered by its own
ASGI middleware, and GET /version and /monitoring, a mounted Starlette app) it cannot see.

They are added here, on the wire, to the document BentoML generated: no framework code is
replaced, and the additions are written from the same constants the routes are served with
(path, media type, limits), and /predict_arrow's answer reuses /predict's documented one."""

from __future__ import annotations

import json
from typing import Any

from scoring.serving.edge.arrow_route import PATH as ARROW_PATH
from scoring.serving.edge.request_guard import Message, Receive, Send, json_response
from scoring.serving.edge.request_guard import send_response as send_whole
from scoring.serving.forms.arrow_stream import ARROW_STREAM

DOCS_PATH = "/docs.json"
REFUSAL = "Refusal"
_REFUSAL_SCHEMA = {
    "type": "object",
    "description": "every 4xx answer (scoring/serving/edge/refusals.py)",
    "required": ["error", "field", "detail"],
    "properties": {
        "error": {"type": "string", "description": "the first problem, one line"},
        "field": {"type": "string", "description": "the refused part: a column, body, ..."},
        "detail": {"type": "array", "items": {"type": "object"}},
    },
}


def _refused(description: str) -> dict[str, Any]:
    schema = {"$ref": f"#/components/schemas/{REFUSAL}"}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def arrow_operation(answer: dict[str, Any], max_rows: int, max_body_bytes: int) -> dict[str, Any]:
    return {
        "post": {
            "tags": ["Service APIs"],
            "operationId": "credit_scoring__predict_arrow",
            "summary": "Score applications sent as an Arrow IPC stream (bulk clients)",
            "description": (
                "The /predict contract column by column: every model feature exactly once, by "
                "name, in any order. Write the body with pyarrow.ipc.new_stream, Polars or "
                "DuckDB; zstd or lz4 buffers are accepted when they unpack within the body "
                f"limit. At most {max_rows} rows and {max_body_bytes} bytes."
            ),
            "requestBody": {
                "required": True,
                "content": {ARROW_STREAM: {"schema": {"type": "string", "format": "binary"}}},
            },
            "responses": {
                "200": answer,
                "400": _refused("a column or value the contract refuses, named in `field`"),
                "405": _refused("not a POST"),
                "413": _refused(f"body over {max_body_bytes} bytes"),
                "415": _refused(f"a body that is not {ARROW_STREAM}"),
                "503": _refused("the model is not loaded yet"),
            },
        }
    }


def _get(summary: str, description: str) -> dict[str, Any]:
    ok = {"description": description, "content": {"application/json": {"schema": {}}}}
    return {
        "get": {
            "tags": ["Service APIs"],
            "summary": summary,
            "responses": {"200": ok, "503": _refused("the model is not loaded yet")},
        }
    }


def completed(spec: dict[str, Any], max_rows: int, max_body_bytes: int) -> dict[str, Any]:
    """BentoML's document with the routes it cannot see."""
    paths = spec.setdefault("paths", {})
    answer = paths.get("/predict", {}).get("post", {}).get("responses", {}).get("200")
    paths[ARROW_PATH] = arrow_operation(
        answer or {"description": "one answer per row, as /predict"}, max_rows, max_body_bytes
    )
    paths["/version"] = _get("Which model, run, threshold and build is serving", "provenance")
    paths["/monitoring"] = _get("This worker's drift view", "PSI per feature and score")
    spec.setdefault("components", {}).setdefault("schemas", {})[REFUSAL] = _REFUSAL_SCHEMA
    return spec


class CompleteOpenAPI:
    """Pure ASGI middleware: GET /docs.json as BentoML answers it, completed; anything else
    passes through untouched."""

    def __init__(self, app: Any, max_rows: int, max_body_bytes: int) -> None:
        self.app, self.max_rows, self.max_body_bytes = app, max_rows, max_body_bytes

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != DOCS_PATH or scope["method"] != "GET":
            return await self.app(scope, receive, send)
        start: Message = {}
        chunks: list[bytes] = []

        async def buffered(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, buffered)
        body = b"".join(chunks)
        if start.get("status") != 200:
            # BentoML's own failure answer, as it came.
            await send(start)
            return await send({"type": "http.response.body", "body": body})
        spec = completed(json.loads(body), self.max_rows, self.max_body_bytes)
        await send_whole(send, json_response(200, json.dumps(spec).encode()))
