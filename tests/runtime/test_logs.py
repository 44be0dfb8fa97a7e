"""Log lines written while an envelope is handled carry its id, correlation id and source."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator

import orjson
import pytest
import structlog

from esb.bus.runtime.logs import bind_message, configure_logging, unbind_message


@pytest.fixture
def out() -> Iterator[io.StringIO]:
    """The daemon's logging set-up, writing to a buffer instead of stderr."""
    buf = io.StringIO()
    configure_logging("info", "json", secrets=["s3cr3t-value"])
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=buf),
                        cache_logger_on_first_use=False)
    yield buf
    structlog.reset_defaults()


def lines(buf: io.StringIO) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in buf.getvalue().splitlines()]


def test_lines_inside_a_message_carry_its_fields(out: io.StringIO) -> None:
    log = structlog.get_logger("t")
    token = bind_message({"envelope_id": "e-1", "correlation_id": "c-1", "source": "shop"})
    try:
        log.info("inside", source="explicit wins")
    finally:
        unbind_message(token)
    log.info("outside")
    inside, outside = lines(out)
    assert inside["envelope_id"] == "e-1" and inside["correlation_id"] == "c-1"
    assert inside["source"] == "explicit wins"
    assert "envelope_id" not in outside


async def test_concurrent_messages_do_not_see_each_other(out: io.StringIO) -> None:
    log = structlog.get_logger("t")

    async def handle(eid: str) -> None:
        token = bind_message({"envelope_id": eid})
        try:
            await asyncio.sleep(0.01)
            log.info("done", mine=eid)
        finally:
            unbind_message(token)

    await asyncio.gather(*(handle(f"e-{i}") for i in range(5)))
    done = lines(out)
    assert len(done) == 5 and all(line["envelope_id"] == line["mine"] for line in done)


def test_secrets_are_redacted_in_bound_fields(out: io.StringIO) -> None:
    token = bind_message({"envelope_id": "e-1", "source": "user:s3cr3t-value"})
    try:
        structlog.get_logger("t").info("x")
    finally:
        unbind_message(token)
    text = out.getvalue()
    assert "e-1" in text and "s3cr3t-value" not in text


def test_each_line_is_one_write(monkeypatch: pytest.MonkeyPatch) -> None:
    # processes sharing stderr (esb run --workers N) must not interleave inside a line
    writes: list[str] = []

    class Recording(io.StringIO):
        def write(self, s: str) -> int:
            writes.append(s)
            return len(s)

    monkeypatch.setattr("sys.stderr", Recording())
    configure_logging("info", "json")
    try:
        structlog.get_logger("t").info("one line", n=1)
    finally:
        structlog.reset_defaults()
    assert len(writes) == 1 and writes[0].endswith("}\n")
    assert orjson.loads(writes[0])["event"] == "one line"


async def test_delivery_lines_carry_envelope_correlation_route_and_destination(
        out: io.StringIO) -> None:
    """A delivery that fails for good logs from the worker (and the adapter, were it to log):
    every line names the envelope, its correlation id, route and destination."""
    from esb.bus.config.model import DeliveryConfig
    from esb.bus.envelope import Envelope
    from esb.bus.errors import PermanentError
    from esb.bus.runtime.delivery import DeliveryWorker
    from esb.bus.runtime.metrics import Metrics

    class Refusing:
        async def start(self) -> None:
            return None

        async def send(self, envelope: Envelope) -> None:
            structlog.get_logger("adapter").warning("peer said no")
            raise PermanentError("422 Unprocessable")

        async def stop(self) -> None:
            return None

    class Wire:
        async def publish(self, address: str, envelope: Envelope) -> None:
            return None

    class Taken:
        redelivered = False

        def __init__(self, envelope: Envelope) -> None:
            self.envelope, self.acked = envelope, False

        def ack(self) -> None:
            self.acked = True

        def requeue(self) -> None:
            raise AssertionError("dead-lettered, not requeued")

    worker = DeliveryWorker("erp", Refusing(), Wire(), DeliveryConfig(),  # type: ignore[arg-type]
                            Metrics(), "i1", 1)
    env = Envelope(source="shop", type="order", data={}, correlationid="corr-9",
                   esbroute="eu-orders")
    taken = Taken(env)
    await worker.handle(taken)  # type: ignore[arg-type]
    assert taken.acked
    logged = lines(out)
    assert {line["event"] for line in logged} >= {"peer said no",
                                                   "delivery failed; dead-lettered"}
    for line in logged:
        assert (line["envelope_id"], line["correlation_id"], line["route"],
                line["destination"]) == (env.id, "corr-9", "eu-orders", "erp"), line
