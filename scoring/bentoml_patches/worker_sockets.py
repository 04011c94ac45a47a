"""One listening socket per HTTP worker (SO_REUSEPORT), so connections spread across workers.

BentoML's workers share one listening socket, and whichever worker wakes first accepts every
connection waiting in the queue. A client that opens its connection pool in a burst (a proxy,
a load balancer, wrk) can therefore land all of it on one worker while the others idle:
with 2 workers we measured 3,700 req/s in one run and 1,800 (one worker busy) in the next.
With SO_REUSEPORT each worker listens on a socket of its own and the kernel hashes every new
connection to one of them.

How, without forking BentoML: the `bentoml serve` process binds the API port with
SO_REUSEPORT but never listens on it (it only holds the address); each worker, while it imports
the service (before BentoML hands the inherited descriptor to uvicorn), binds its own
SO_REUSEPORT socket to that address, listens, and installs it on that descriptor with dup2.
"""

from __future__ import annotations

import logging
import os
import socket
import sys

log = logging.getLogger("bentoml.credit_scoring")

API_SOCKET_NAME = "_bento_api_server"  # _bentoml_impl.server.serving.API_SERVER_NAME
DEFAULT_BACKLOG = 2048


def install(workers: int, worker_index: int | None, argv: list[str] = sys.argv) -> bool:
    """Call at service import in every process. True if this worker now has its own socket."""
    if workers < 2 or not hasattr(socket, "SO_REUSEPORT"):
        return False
    _bind_api_port_without_listening()  # takes effect in the `bentoml serve` process only
    if worker_index is None:
        return False
    fd, backlog = _option(argv, "--fd"), _option(argv, "--backlog") or DEFAULT_BACKLOG
    if fd is None:
        return False  # not started by `bentoml serve` (e.g. imported by a test)
    return listen_on_own_socket(fd, backlog)


def listen_on_own_socket(fd: int, backlog: int = DEFAULT_BACKLOG) -> bool:
    """Replace the inherited socket `fd` with a listening SO_REUSEPORT socket on its address.
    Returns False (and leaves `fd` alone) if the inherited socket already listens: the serving
    process did not hold the port back, so the workers share it the usual way."""
    inherited = socket.socket(fileno=os.dup(fd))  # a dup: closing it leaves `fd` open
    try:
        if inherited.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            return False
        address = inherited.getsockname()
        own = socket.socket(inherited.family, socket.SOCK_STREAM)
    finally:
        inherited.close()
    with own:
        own.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        own.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        own.bind(address)
        own.listen(backlog)
        os.dup2(own.fileno(), fd)
    log.debug("worker pid %d listens on its own socket %s", os.getpid(), address)
    return True


def report(argv: list[str] = sys.argv) -> dict[str, object]:
    """Whether this worker's API descriptor is a listening SO_REUSEPORT socket of its own. The
    socket's inode tells workers apart: with a shared socket they would all report the same."""
    fd = _option(argv, "--fd")
    if fd is None:
        return {"own_socket": False, "reason": "not a `bentoml serve` HTTP worker"}
    sock = socket.socket(fileno=os.dup(fd))
    try:
        own = bool(
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
            and hasattr(socket, "SO_REUSEPORT")
            and sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
        )
    finally:
        sock.close()
    return {"own_socket": own, "socket_inode": os.fstat(fd).st_ino}


def _bind_api_port_without_listening() -> None:
    from circus.sockets import CircusSocket

    if getattr(CircusSocket.bind_and_listen, "holds_port_only", False):
        return
    original = CircusSocket.bind_and_listen

    def bind_and_listen(sock: CircusSocket) -> None:
        if sock.name != API_SOCKET_NAME or sock.is_unix:
            return original(sock)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((sock.host, sock.port))
        sock.setblocking(False)
        sock.host, sock.port = sock.getsockname()[:2]

    bind_and_listen.holds_port_only = True  # type: ignore[attr-defined]
    CircusSocket.bind_and_listen = bind_and_listen  # type: ignore[method-assign]


def _option(argv: list[str], name: str) -> int | None:
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return int(argv[i + 1])
        if arg.startswith(name + "="):
            return int(arg.split("=", 1)[1])
    return None
