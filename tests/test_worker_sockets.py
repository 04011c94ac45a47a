"""The per-worker listening socket swap (scoring/bentoml_patches/worker_sockets.py) on real
loopback sockets."""

from __future__ import annotations

import os
import socket

import pytest

from scoring.bentoml_patches.worker_sockets import listen_on_own_socket

pytestmark = pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="no SO_REUSEPORT")


def held_port() -> socket.socket:
    """What the serving process holds: the address bound with SO_REUSEPORT, not listening."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def listening(fd: int) -> bool:
    probe = socket.socket(fileno=os.dup(fd))
    try:
        return bool(probe.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
    finally:
        probe.close()


def test_each_worker_gets_its_own_listening_socket_on_the_held_port():
    with held_port() as arbiter:
        port = arbiter.getsockname()[1]
        workers = [os.dup(arbiter.fileno()) for _ in range(2)]  # the descriptors they inherit
        try:
            assert [listen_on_own_socket(fd) for fd in workers] == [True, True]
            assert not listening(arbiter.fileno())  # nothing queues where nobody accepts
            assert all(listening(fd) for fd in workers)
            accepted = {fd: 0 for fd in workers}
            clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(64)]
            for fd in workers:
                own = socket.socket(fileno=os.dup(fd))
                own.setblocking(False)
                while True:
                    try:
                        conn, _ = own.accept()
                    except BlockingIOError:
                        break
                    conn.close()
                    accepted[fd] += 1
                own.close()
            for client in clients:
                client.close()
        finally:
            for fd in workers:
                os.close(fd)
    assert sum(accepted.values()) == 64
    # The kernel hashes connections over both sockets: all 64 on one has odds of 2**-63.
    assert all(count > 0 for count in accepted.values()), accepted


def test_a_socket_that_already_listens_is_left_shared():
    with socket.socket() as shared:
        shared.bind(("127.0.0.1", 0))
        shared.listen()
        fd = os.dup(shared.fileno())
        try:
            assert listen_on_own_socket(fd) is False
            client = socket.create_connection(shared.getsockname())
            conn, _ = shared.accept()  # still the same queue
            conn.close()
            client.close()
        finally:
            os.close(fd)
