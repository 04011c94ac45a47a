"""Malformed HTTP answered in the service's JSON error shape, not uvicorn's plain text.

A request the HTTP parser cannot read (a bad request line, an invalid header, broken chunked
framing) never reaches the ASGI app: uvicorn answers it itself with `send_400_response`, a
`text/plain` "Invalid HTTP request received." and closes the connection. Here the same 400 and
the same close carry a JSON body in the one shape of scoring/serving/edge/refusals.py. The
message is uvicorn's fixed text, never anything the client sent; uvicorn's one warning line
("Invalid HTTP request received.") stays as it was.

Both of uvicorn's parsers are covered: httptools (what `bentoml serve` picks when installed,
as here) and h11. uvicorn is BentoML's server, pinned with it in env/requirements.lock, so its
release is checked here too.
"""

from __future__ import annotations

from typing import Any

import h11
import uvicorn
from packaging.specifiers import SpecifierSet
from packaging.version import Version
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

SUPPORTED_UVICORN = SpecifierSet("==0.54.0")

# uvicorn's own methods, kept for the canary tests.
UPSTREAM_HTTPTOOLS_400 = HttpToolsProtocol.send_400_response
UPSTREAM_H11_400 = H11Protocol.send_400_response

_STATE: dict[str, Any] = {"body": b"", "answered": 0}


def _httptools_400(self: HttpToolsProtocol, msg: str) -> None:
    body = _STATE["body"]
    content = [STATUS_LINE[400]]
    for name, value in self.server_state.default_headers:
        content.extend([name, b": ", value, b"\r\n"])
    content.extend(
        [
            b"content-type: application/json\r\n",
            b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
            b"connection: close\r\n",
            b"\r\n",
            body,
        ]
    )
    self.transport.write(b"".join(content))
    self.transport.close()
    _STATE["answered"] += 1


def _h11_400(self: H11Protocol, msg: str) -> None:
    body = _STATE["body"]
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode("ascii")),
        (b"connection", b"close"),
    ]
    self.transport.write(self.conn.send(h11.Response(status_code=400, headers=headers)))
    self.transport.write(self.conn.send(h11.Data(data=body)))
    self.transport.write(self.conn.send(h11.EndOfMessage()))
    self.transport.close()
    _STATE["answered"] += 1


class UnsupportedUvicorn(RuntimeError):  # noqa: N818 - named for what the operator sees
    """The installed uvicorn is outside SUPPORTED_UVICORN."""


def install(body: bytes) -> None:
    """Answer malformed HTTP with `body` (a JSON refusal) in this process."""
    if Version(uvicorn.__version__) not in SUPPORTED_UVICORN:
        raise UnsupportedUvicorn(
            f"uvicorn {uvicorn.__version__} is installed; scoring/bentoml_patches/"
            f"malformed_http.py replaces internals of uvicorn {SUPPORTED_UVICORN} only"
        )
    _STATE["body"] = body
    HttpToolsProtocol.send_400_response = _httptools_400  # type: ignore[method-assign]
    H11Protocol.send_400_response = _h11_400  # type: ignore[method-assign]


def report() -> dict[str, Any]:
    return {
        "active": HttpToolsProtocol.send_400_response is _httptools_400
        and H11Protocol.send_400_response is _h11_400,
        "answered": _STATE["answered"],
    }
