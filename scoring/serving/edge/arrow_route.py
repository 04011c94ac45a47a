"""POST /predict_arrow: the binary bulk form, served by a pure ASGI middleware ahead of BentoML's
router (a body BentoML would read as JSON).

A 500-row body in the records form is 3 MB of JSON and ~18 ms of validation; the compact form
~1.3 MB and ~5 ms; the compiled forest scores those 500 rows in ~9 ms on one thread. In
Arrow's IPC stream format the columns arrive typed and the body costs almost nothing to read.
The route checks its method, media type and size itself, answers refusals in the one shape
(refusals.py), and reads, checks, scores and answers each request in one trip to the bulk lane
(the form is for bulk clients; single applications belong on /predict), through the service's
own scoring, so the answers, metrics and drift counts are those of /predict.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from scoring.core.arrow_rows import ArrowBodyError, Layout
from scoring.core.contract import (
    FeatureSpec,
    UnseenCategory,
)
from scoring.serving.batching.bulk_lane import in_bulk_lane
from scoring.serving.edge.request_guard import (
    Message,
    Receive,
    Response,
    Send,
    json_response,
    refused,
    send_response,
)
from scoring.serving.forms.arrow_stream import ARROW_STREAM, arrow_matrix

PATH = "/predict_arrow"


# The service's scoring: a float64 matrix in model order → the JSON answer, as /predict's.
Answer = Callable[[np.ndarray], bytes]


class ArrowForm:
    """The route, bound to the service's scoring once the service has loaded its model. A pure
    ASGI app, served by `ArrowRoute` ahead of BentoML's router: a bulk request's body is read
    in ~100 chunks, and each Starlette layer it skips (request context, exception handling,
    router, mount, `Request`/`Response`) was paid per request on the event loop."""

    def __init__(
        self,
        spec: FeatureSpec,
        max_rows: int,
        max_body_bytes: int,
        unseen: UnseenCategory,
        on_unseen: Callable[[str], None],
    ) -> None:
        self.spec, self.max_rows, self.max_body_bytes = spec, max_rows, max_body_bytes
        self.unseen, self.on_unseen = unseen, on_unseen
        self.answer: Answer | None = None
        self.layouts: dict[bytes, Layout] = {}  # used by the bulk lane's thread only

    def attach(self, answer: Answer) -> None:
        self.answer = answer

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        response = await self._response(scope, receive)
        if response is not None:  # None: the client left, nobody to answer
            await send_response(send, response)

    async def _response(self, scope: Message, receive: Receive) -> Response | None:
        if scope["method"] != "POST":
            message = f"{PATH} takes POST, not {scope['method']}"
            return refused(405, message, "method", "method_not_allowed")
        if self.answer is None:
            return refused(503, "model not loaded yet", "body", "service_unavailable")
        headers = dict(scope["headers"])
        media_type = (
            headers.get(b"content-type", b"").split(b";")[0].strip().lower().decode("latin-1")
        )
        if media_type != ARROW_STREAM:
            message = f"send an Arrow IPC stream as {ARROW_STREAM}, not {media_type or 'nothing'}"
            return refused(415, message, "content-type", "unsupported_media_type")
        too_large = refused(
            413,
            f"body over {self.max_body_bytes} bytes: split the applications",
            "body",
            "request_entity_too_large",
        )
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_body_bytes:
            return too_large
        try:
            body = await self._body(receive)
        except _ClientLeftError:
            return None
        if body is None:
            return too_large
        try:
            # Read, checked, scored and answered in one trip to the bulk lane: the event loop
            # only receives the body and sends the answer.
            content = await in_bulk_lane(self._answered, body, self.answer)
        except ArrowBodyError as problem:
            return refused(400, str(problem), problem.field, "value_error")
        return json_response(200, content)

    def _answered(self, body: bytes, answer: Answer) -> bytes:
        matrix = arrow_matrix(
            body,
            self.spec,
            self.max_rows,
            self.unseen,
            self.on_unseen,
            self.layouts,
            max_bytes=self.max_body_bytes,
        )
        return answer(matrix)

    async def _body(self, receive: Receive) -> bytes | None:
        """The body; None as soon as it passes the limit (counted as it streams in: a chunked
        upload has no length up front)."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                raise _ClientLeftError
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


class _ClientLeftError(Exception):
    """The client disconnected before its body had arrived."""


class ArrowRoute:
    """Pure ASGI middleware: POST /predict_arrow is answered by the form itself, anything else
    goes on to the service's app. Installed with the service's other middleware, so BentoML's
    request metrics (outside it) count the route like every other."""

    def __init__(self, app: Any, form: ArrowForm) -> None:
        self.app, self.form = app, form

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].rstrip("/") == PATH:
            return await self.form(scope, receive, send)
        return await self.app(scope, receive, send)
