"""A TLS front for a plain TCP service (RabbitMQ on 5672): it terminates TLS with the given
server context (mutual TLS when the context requires client certificates) and relays the
bytes, so a test can reach the shared broker over ``amqps://`` without touching its
configuration. ``handshake_errors`` records why handshakes failed."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading


class TlsFront:
    def __init__(self, context: ssl.SSLContext, target: tuple[str, int]) -> None:
        self.context = context
        self.target = target
        self.handshake_errors: list[str] = []
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                raw, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            tls = self.context.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError) as exc:
            self.handshake_errors.append(str(exc))
            raw.close()
            return
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            tls.close()
            return
        upstream.settimeout(None)
        self._open += [tls, upstream]
        threading.Thread(target=self._pipe, args=(upstream, tls), daemon=True).start()
        self._pipe(tls, upstream)

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for s in self._open:
            with contextlib.suppress(OSError):
                s.close()
