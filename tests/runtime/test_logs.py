"""Log lines written while an envelope is handled carry its id, correlation id and source;
libraries' records come out in the same format, redacted the same way."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections.abc import Callable, Iterator

import orjson
import pytest
import structlog

from esb.bus.runtime.http import make_server
from esb.bus.runtime.logs import (
    LIBRARY_LOGGERS,
    bind_message,
    configure_logging,
    unbind_message,
)

SECRET = "s3cr3t-value"


@contextlib.contextmanager
def restored_logging() -> Iterator[None]:
    """Undo what configure_logging does to process-global logging state."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    libraries = {name: logging.getLogger(name).level for name in LIBRARY_LOGGERS}
    try:
        yield
    finally:
        for name, lib_level in libraries.items():
            logging.getLogger(name).setLevel(lib_level)
        structlog.reset_defaults()
        for h in root.handlers:
            if h not in handlers:
                root.removeHandler(h)
        root.setLevel(level)
        logging.captureWarnings(False)


@pytest.fixture
def out() -> Iterator[io.StringIO]:
    """The daemon's logging set-up, writing to a buffer instead of stderr."""
    buf = io.StringIO()
    with restored_logging():
        configure_logging("info", "json", secrets=[SECRET])
        structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=buf),
                            cache_logger_on_first_use=False)
        yield buf


Configure = Callable[..., io.StringIO]


@pytest.fixture
def configure(monkeypatch: pytest.MonkeyPatch) -> Iterator[Configure]:
    """``configure(fmt, secrets)``: stderr replaced by a buffer (returned), then the daemon's
    logging set-up. Called in the test itself: the output capture replaces stderr after the
    fixtures ran."""

    def run(fmt: str = "json", secrets: tuple[str, ...] = ()) -> io.StringIO:
        buf = io.StringIO()
        monkeypatch.setattr("sys.stderr", buf)
        configure_logging("info", fmt, secrets)
        return buf

    with restored_logging():
        yield run


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
    with restored_logging():
        configure_logging("info", "json")
        structlog.get_logger("t").info("one line", n=1)
        logging.getLogger("lib").warning("library line")
    assert len(writes) == 2 and all(w.endswith("}\n") for w in writes)
    assert [orjson.loads(w)["event"] for w in writes] == ["one line", "library line"]


async def _app(scope: object, receive: object, send: object) -> None:
    raise AssertionError("never called")


def test_library_records_are_json_lines_with_level_and_logger(configure: Configure) -> None:
    stderr = configure()
    make_server(_app, "127.0.0.1", 0)  # uvicorn applies its logging settings here
    logging.getLogger("uvicorn.error").warning("Invalid HTTP request received.")
    logging.getLogger("kombu.connection").error("connection to %s lost", "broker")
    logging.getLogger("httpx").info("below the libraries' level: not written")
    structlog.get_logger("esb.t").info("own line")
    logged = [orjson.loads(line) for line in stderr.getvalue().splitlines()]
    assert [(line.get("logger"), line["level"], line["event"]) for line in logged] == [
        ("uvicorn.error", "warning", "Invalid HTTP request received."),
        ("kombu.connection", "error", "connection to broker lost"),
        (None, "info", "own line")]
    assert all("timestamp" in line for line in logged)


def test_plugins_logging_with_the_standard_library_log_like_built_ins(
        configure: Configure) -> None:
    stderr = configure()
    logging.getLogger("esb_adapter_mainframe.inbound").info("picked up %d records", 3)
    logging.getLogger("esb_adapter_mainframe").debug("below esb's level: not written")
    logging.getLogger("httpx").info("a library's info line: not written")
    assert [(line["logger"], line["level"], line["event"]) for line in lines(stderr)] == [
        ("esb_adapter_mainframe.inbound", "info", "picked up 3 records")]


def test_library_records_carry_the_message_fields(configure: Configure) -> None:
    stderr = configure()
    token = bind_message({"envelope_id": "e-7", "correlation_id": "c-7"})
    try:
        logging.getLogger("httpx").warning("peer slow")
    finally:
        unbind_message(token)
    line = orjson.loads(stderr.getvalue())
    assert (line["envelope_id"], line["correlation_id"]) == ("e-7", "c-7")


def test_library_records_are_redacted_in_message_and_traceback(configure: Configure) -> None:
    stderr = configure(secrets=(SECRET,))
    try:
        raise RuntimeError(f"login refused for {SECRET}")
    except RuntimeError:
        logging.getLogger("kombu.connection").exception("connect to amqp://u:%s@h failed",
                                                        SECRET)
    logging.getLogger("lib").warning("stack", stack_info=True, extra={"x": SECRET})
    text = stderr.getvalue()
    first, second = (orjson.loads(line) for line in text.splitlines())
    assert first["event"] == "connect to amqp://u:***@h failed"
    assert "RuntimeError: login refused for ***" in first["exception"]
    assert second["event"] == "stack" and "test_logs" in second["stack_info"]
    assert SECRET not in text


def test_python_warnings_are_log_lines(configure: Configure) -> None:
    import warnings

    with warnings.catch_warnings():  # entered first: configure_logging's hook is inside it
        warnings.simplefilter("always")
        stderr = configure()
        warnings.warn("old API", DeprecationWarning, stacklevel=1)
    line = orjson.loads(stderr.getvalue())
    assert line["logger"] == "py.warnings" and "old API" in line["event"]


def test_console_format_stays_readable(configure: Configure) -> None:
    stderr = configure("console")
    logging.getLogger("uvicorn.error").warning("Invalid HTTP request received.")
    (line,) = stderr.getvalue().splitlines()
    assert not line.startswith("{")
    assert "Invalid HTTP request received." in line and "uvicorn.error" in line
    assert "warning" in line.lower()


def test_reconfiguring_replaces_the_library_handler(configure: Configure) -> None:
    # SIGHUP re-reads the configuration and calls configure_logging again
    stderr = configure(secrets=("first-secret",))
    configure_logging("info", "json", ["second-secret"])  # same stderr
    logging.getLogger("lib").warning("first-secret second-secret")
    (line,) = stderr.getvalue().splitlines()
    assert orjson.loads(line)["event"] == "first-secret ***"


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
        alive = True

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


def test_a_library_record_that_cannot_be_formatted_stays_one_json_line(
        configure: Configure) -> None:
    """Arguments that do not match the message (a library bug) must not turn into the
    standard library's plain-text report, which prints the raw arguments, secrets included."""
    stderr = configure()
    # straight to esb's handler (pytest's own capture handler re-raises such errors)
    (handler,) = [h for h in logging.getLogger().handlers if h.get_name() == "esb"]
    handler.handle(logging.LogRecord("somelib", logging.WARNING, __file__, 1,
                                     "token %s and %s", ("only-one-argument",), None))
    (line,) = stderr.getvalue().splitlines()
    event = orjson.loads(line)
    assert event["logger"] == "somelib" and event["level"] == "error"
    assert "could not be formatted" in event["event"] and "only-one-argument" not in line
