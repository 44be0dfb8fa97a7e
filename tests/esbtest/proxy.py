"""A TCP proxy whose connections a test can cut, which can refuse new connections for a
while and then take them again on the same port, which can go silent (a partition: bytes
dropped both ways, no FIN, no RST; a connection opened meanwhile waits for it to end), and
which can keep out the AMQP connections of one client name only — to fake a lost broker (or
one link losing it) without touching the shared one."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from urllib.parse import urlsplit

#: The most bytes :meth:`TcpProxy.unheard` keeps.
UNHEARD_MAX = 1 << 20


class TcpProxy:
    """Relays connections on ``127.0.0.1:port`` to ``target_host:target_port``.

    :meth:`cut` resets the open connections (a dropped network); :meth:`stop_accepting`
    closes the listening socket, so new connections are refused (a broker that is down), and
    :meth:`start_accepting` listens on the same port again."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        #: Set by :meth:`for_broker`: the broker's URL through this proxy.
        self.amqp_url = ""
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self._silent = threading.Event()
        #: Set while not silent: what a connection accepted during a silence waits for.
        self._speaking = threading.Event()
        self._speaking.set()
        #: A client's socket -> the first bytes it sent (its AMQP handshake names the link).
        self._hello: dict[socket.socket, bytes] = {}
        self._shut_out: bytes | None = None
        #: What the clients sent into the silence (dropped), for a test to see that something
        #: reached the broker's side (at most :data:`UNHEARD_MAX` bytes are kept).
        self._unheard = bytearray()
        self.start_accepting()

    @classmethod
    def for_broker(cls, url: str) -> TcpProxy:
        """A proxy in front of the broker at ``url``; :attr:`amqp_url` is ``url`` through it."""
        u = urlsplit(url)
        proxy = cls(u.hostname or "127.0.0.1", u.port or 5672)
        proxy.amqp_url = (f"{u.scheme}://{u.username}:{u.password}@127.0.0.1:{proxy.port}"
                          f"{u.path or '/'}")
        return proxy

    def blackhole(self) -> None:
        """Drop every byte both ways from now on on the open connections, without closing
        anything: a peer sees silence, as behind a network partition. A connection opened
        during the silence hears nothing either: it is held, its bytes unread, until
        :meth:`restore`."""
        self._speaking.clear()
        self._silent.set()

    def restore(self) -> None:
        """Relay again. Connections open across the blackhole lost bytes: their peers will
        find the stream broken, as after a long partition. Those opened during it (and not
        given up by their client) are relayed from their first byte now, as a connection
        attempt across a partition completes once it heals (its SYNs are sent again) — so a
        reconnecting client gets in at once instead of waiting out its connect timeout."""
        self._silent.clear()
        self._speaking.set()

    def shut_out(self, name: str) -> int:
        """Reset the connections whose AMQP handshake carries ``name`` (esb names every link,
        e.g. ``esb idempotency <instance>``), and every such connection from now on, as soon
        as its handshake shows it; the others are relayed as before. Returns how many open
        connections were reset."""
        pattern = name.encode()
        self._shut_out = pattern
        with self._lock:
            hit = [c for c, hello in self._hello.items() if pattern in hello]
        return sum(self._reset_pair(c) for c in hit)

    def unheard(self) -> bytes:
        """The bytes the clients sent while the proxy was silent (dropped: the broker never
        saw them), e.g. to wait until a publish was attempted during the silence."""
        with self._lock:
            return bytes(self._unheard)

    def let_in(self) -> None:
        """Relay every connection again (undo :meth:`shut_out` for new connections)."""
        self._shut_out = None

    @property
    def accepting(self) -> bool:
        return self._listener is not None

    def start_accepting(self) -> None:
        """Listen (again) on :attr:`port`; the first call picks a free port."""
        if self._listener is not None:
            return
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._acceptor = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        self._acceptor.start()

    def stop_accepting(self) -> None:
        """Stop listening: new connections are refused until :meth:`start_accepting`. Open
        connections stay (see :meth:`cut`)."""
        listener, self._listener = self._listener, None
        if listener is None:
            return
        # shutdown() wakes the thread blocked in accept(); close() alone would leave the
        # socket listening until that accept() returned.
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        if self._acceptor is not None:
            # It finishes a connection it was setting up, so a cut() after this sees it.
            self._acceptor.join(timeout=10)
            self._acceptor = None

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            while not self._speaking.wait(0.05):  # held until the silence ends
                if self._listener is not listener:  # stop_accepting(): not relayed at all
                    client.close()
                    return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns += [client, upstream]
                self._hello[client] = b""
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                if src in self._hello and self._shuts_out(src, data):
                    self._reset_pair(src)
                    return
                if not self._silent.is_set():
                    dst.sendall(data)
                elif src in self._hello:  # a client's bytes, dropped
                    with self._lock:
                        self._unheard += data[:UNHEARD_MAX - len(self._unheard)]
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
            with self._lock:
                self._hello.pop(src, None)

    def _shuts_out(self, client: socket.socket, data: bytes) -> bool:
        """Record the start of what ``client`` sent; whether :meth:`shut_out` covers it."""
        with self._lock:
            hello = self._hello.get(client, b"")
            if len(hello) < 4096:
                hello = self._hello[client] = hello + data[:4096]
        pattern = self._shut_out
        return pattern is not None and pattern in hello

    def _reset_pair(self, client: socket.socket) -> int:
        """Reset ``client`` and the upstream connection relayed with it; 1 if it was open."""
        with self._lock:
            if client not in self._conns:
                return 0
            at = self._conns.index(client)
            pair = self._conns[at:at + 2]
            del self._conns[at:at + 2]
        for s in pair:
            _reset(s)
        return 1

    def cut(self) -> int:
        """Reset every open connection; returns how many were cut."""
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            _reset(s)
        return len(conns)

    def close(self) -> None:
        self.stop_accepting()
        self.cut()


def _reset(s: socket.socket) -> None:
    """Close ``s`` with a RST, as a dropped network would."""
    try:
        # SO_LINGER 0: close() sends a RST.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # Wakes the relay thread blocked in recv() on it: the socket is only really closed
        # (and the RST sent) once no thread uses it any more.
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RD)
        s.close()
    except OSError:
        pass
