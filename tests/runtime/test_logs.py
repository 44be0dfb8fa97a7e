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
