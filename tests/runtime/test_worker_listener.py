"""The address of ``esb run --workers N``: the supervisor holds it, each worker listens on it
with a socket of its own (SO_REUSEPORT), and the kernel spreads connections over the workers —
also a burst of them, which one shared socket hands nearly whole to one worker."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

from esb.bus.runtime.http import BALANCED_PORTS, ListenError, bind_listener, worker_listener

pytestmark = pytest.mark.skipif(not BALANCED_PORTS, reason="SO_REUSEPORT balances on Linux")


@pytest.fixture
def held() -> Iterator[socket.socket]:
    sock = bind_listener("127.0.0.1", 0, for_workers=True)
    yield sock
    sock.close()


def listening(sock: socket.socket) -> bool:
    return bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))


def test_the_supervisor_holds_the_address_without_listening(held: socket.socket) -> None:
    assert not listening(held)
    port = held.getsockname()[1]
    # nobody listens, so nothing can wait unanswered for a worker that is not there yet
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_a_second_daemon_on_the_address_is_refused(held: socket.socket) -> None:
    port = held.getsockname()[1]
    for for_workers in (True, False):
        with pytest.raises(ListenError, match=f"cannot listen on 127.0.0.1:{port}"):
            bind_listener("127.0.0.1", port, for_workers=for_workers)


def test_an_address_taken_by_another_program_is_refused() -> None:
    other = socket.socket()
    other.bind(("127.0.0.1", 0))
    other.listen(1)
    try:
        with pytest.raises(ListenError):
            bind_listener("127.0.0.1", other.getsockname()[1], for_workers=True)
    finally:
        other.close()


def test_an_address_left_in_time_wait_by_another_server_is_taken() -> None:
    """A lone daemon (or another server) closed a connection first, so the port holds a
    TIME_WAIT connection without SO_REUSEPORT for a minute: ``--workers`` still starts."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port), timeout=5)
    conn, _ = server.accept()
    conn.close()  # the server side closes first: it is the one left in TIME_WAIT
    client.recv(1)
    client.close()
    server.close()
    held = bind_listener("127.0.0.1", port, for_workers=True)
    try:
        worker = worker_listener(socket.socket(fileno=_dup(held)))
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            worker.accept()[0].close()
        worker.close()
    finally:
        held.close()


def test_a_burst_of_connections_spreads_over_the_workers(held: socket.socket) -> None:
    port = held.getsockname()[1]
    workers = [worker_listener(socket.socket(fileno=_dup(held))) for _ in range(2)]
    clients: list[socket.socket] = []
    try:
        assert all(listening(w) and w.getsockname() == held.getsockname() for w in workers)
        clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(64)]
        taken = [0, 0]
        for i, w in enumerate(workers):
            w.settimeout(0.5)
            while True:
                try:
                    conn, _ = w.accept()
                except TimeoutError:
                    break
                conn.close()
                taken[i] += 1
        assert sum(taken) == 64
        # each connection goes to one worker's socket by a hash of its addresses: 64 of
        # them put fewer than 8 on one side about once in ten million runs
        assert min(taken) >= 8, taken
    finally:
        for s in (*clients, *workers):
            s.close()


def test_a_listening_shared_socket_is_used_as_it_is() -> None:
    shared = bind_listener("127.0.0.1", 0)
    try:
        assert listening(shared) and worker_listener(shared) is shared
    finally:
        shared.close()


def _dup(sock: socket.socket) -> int:
    """A descriptor of ``sock`` as a worker inherits it (a process of its own has a copy)."""
    return os.dup(sock.fileno())

