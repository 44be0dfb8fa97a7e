"""The bus connection's frame loop: frames cut from large reads by offset give exactly what
pika's own loop gives, however the bytes arrive."""

from __future__ import annotations

import random
from typing import Any

import pika
import pika.frame
import pika.spec
import pytest
from pika.connection import Connection

from esb.bus.broker.connection import RECV_BYTES, CoalescingConnection


def _stream() -> bytes:
    """Deliveries of several sizes (bodies split over frames as a broker splits them),
    heartbeats and acks, as one byte stream."""
    rng = random.Random(7)
    out = []
    for tag in range(1, 40):
        body = bytes(rng.getrandbits(8) for _ in range(rng.choice([0, 1, 700, 5000, 20000])))
        props = pika.BasicProperties(message_id=f"m{tag}", delivery_mode=2,
                                     content_type="application/cloudevents+json")
        out.append(pika.frame.Method(1, pika.spec.Basic.Deliver(
            consumer_tag="c", delivery_tag=tag, exchange="esb", routing_key="q")).marshal())
        out.append(pika.frame.Header(1, len(body), props).marshal())
        for start in range(0, len(body), 4096):
            out.append(pika.frame.Body(1, body[start:start + 4096]).marshal())
        if tag % 7 == 0:
            out.append(pika.frame.Heartbeat().marshal())
        if tag % 5 == 0:
            out.append(pika.frame.Method(1, pika.spec.Basic.Ack(delivery_tag=tag)).marshal())
    return b"".join(out)


class _Frames:
    """Just enough of a connection to run a frame loop: it records what it is given."""

    def __init__(self) -> None:
        self._frame_buffer = b""
        self.bytes_received = 0
        self.seen: list[Any] = []

    def _process_frame(self, value: Any) -> None:
        self.seen.append(value)

    def _read_frame(self) -> Any:  # (pika's loop reads through this)
        return pika.frame.decode_frame(self._frame_buffer)

    def _trim_frame_buffer(self, count: int) -> None:
        Connection._trim_frame_buffer(self, count)  # type: ignore[arg-type]


def _run(loop: Any, chunks: list[bytes]) -> _Frames:
    conn = _Frames()
    for chunk in chunks:
        loop(conn, chunk)
    return conn


def _split(data: bytes, sizes: list[int]) -> list[bytes]:
    out, i, k = [], 0, 0
    while i < len(data):
        n = sizes[k % len(sizes)]
        out.append(data[i:i + n])
        i, k = i + n, k + 1
    return out


def _summary(conn: _Frames) -> list[str]:
    return [repr(f) + repr(getattr(f, "fragment", b"")) for f in conn.seen]


@pytest.mark.parametrize("sizes", [[1], [7, 8, 9], [4096], [RECV_BYTES], [10**7], [3, 5000, 1]])
def test_frames_are_the_ones_pika_reads(sizes: list[int]) -> None:
    data = _stream()
    chunks = _split(data, sizes)
    ours = _run(CoalescingConnection._on_data_available, chunks)
    theirs = _run(Connection._on_data_available, chunks)
    assert len(ours.seen) == len(theirs.seen) > 100
    assert _summary(ours) == _summary(theirs)
    assert ours.bytes_received == theirs.bytes_received == len(data)
    assert ours._frame_buffer == b""


def _outcome(loop: Any, chunks: list[bytes]) -> tuple[list[str], str, bytes, int]:
    """What a loop made of ``chunks``: the frames, the error it stopped with (if any), what it
    kept and the bytes it counted."""
    conn = _Frames()
    error = ""
    try:
        for chunk in chunks:
            loop(conn, chunk)
    except Exception as exc:  # pika's own errors, compared by type and text
        error = f"{type(exc).__name__}: {exc}"
    return _summary(conn), error, conn._frame_buffer, conn.bytes_received


def test_random_streams_good_and_bad_are_read_as_pika_reads_them() -> None:
    """Good frames, zero-size ones, protocol headers, unknown frame types, bad frame ends,
    unknown methods and junk, split at random: the same frames, the same error, the same
    bytes kept and counted."""
    rng = random.Random(11)
    good = [pika.frame.Heartbeat().marshal(), pika.frame.Body(1, b"").marshal(),
            pika.frame.Body(2, b"x" * 300).marshal(), b"AMQP\x00\x00\x09\x01",
            pika.frame.Method(1, pika.spec.Basic.Ack(delivery_tag=9)).marshal()]
    bad = [b"\x09\x00\x01\x00\x00\x00\x00\xce",  # unknown frame type
           b"\x08\x00\x00\x00\x00\x00\x00\x00",  # bad frame end
           b"\x01\x00\x01\x00\x00\x00\x04\x00\x63\x00\x63\xce",  # unknown method
           bytes(rng.getrandbits(8) for _ in range(5))]
    for _ in range(2000):
        parts = [rng.choice(good) for _ in range(rng.randrange(1, 12))]
        if rng.random() < 0.4:
            parts.insert(rng.randrange(len(parts) + 1), rng.choice(bad))
        data = b"".join(parts)
        cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randrange(4))))
        chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        assert _outcome(CoalescingConnection._on_data_available, chunks) == \
            _outcome(Connection._on_data_available, chunks), chunks


def test_a_partial_frame_waits_for_the_rest() -> None:
    frame = pika.frame.Method(1, pika.spec.Basic.Ack(delivery_tag=3)).marshal()
    conn = _Frames()
    CoalescingConnection._on_data_available(conn, frame + frame[:5])  # type: ignore[arg-type]
    assert len(conn.seen) == 1 and conn._frame_buffer == frame[:5]
    CoalescingConnection._on_data_available(conn, frame[5:])  # type: ignore[arg-type]
    assert len(conn.seen) == 2 and conn._frame_buffer == b""
    assert conn.bytes_received == 2 * len(frame)


def test_a_protocol_header_is_read_as_pika_reads_it() -> None:
    conn = _Frames()
    CoalescingConnection._on_data_available(conn, b"AMQP\x00\x00\x09\x01")  # type: ignore[arg-type]
    assert isinstance(conn.seen[0], pika.frame.ProtocolHeader)


def test_a_bad_frame_end_is_refused_as_pika_refuses_it() -> None:
    frame = bytearray(pika.frame.Heartbeat().marshal())
    frame[-1] = 0
    with pytest.raises(pika.exceptions.InvalidFrameError):
        CoalescingConnection._on_data_available(_Frames(), bytes(frame))  # type: ignore[arg-type]


def test_a_reset_by_a_callback_ends_the_loop() -> None:
    """A frame whose handling closes the connection (pika then resets its buffer) is the
    last one read from that buffer, as in pika's loop."""
    frame = pika.frame.Heartbeat().marshal()

    class Closing(_Frames):
        def _process_frame(self, value: Any) -> None:
            super()._process_frame(value)
            self._frame_buffer = b""  # what pika's _init_connection_state does

    conn = Closing()
    CoalescingConnection._on_data_available(conn, frame * 3)  # type: ignore[arg-type]
    assert len(conn.seen) == 1 and conn._frame_buffer == b""
