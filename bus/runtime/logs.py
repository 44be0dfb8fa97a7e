"""Logging set-up: the one place in esb that configures process-global state.

JSON lines when stderr is not a terminal (production), readable lines on a terminal.
Every line written while an envelope is being accepted carries its id, correlation id and
source: :func:`bind_message` sets them in one context variable (a single ``set``/``reset``
per message, where structlog's ``bound_contextvars`` costs a context manager and a variable per
key) and :func:`merge_message_context` adds them to the line. Anything else bound with
structlog's contextvars is merged too.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from typing import Any

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}


#: The envelope being handled in this task, as log fields (None outside a message).
_MESSAGE: ContextVar[dict[str, Any] | None] = ContextVar("esb_message", default=None)


def bind_message(fields: dict[str, Any]) -> Any:
    """Bind ``fields`` to every log line of the current task until :func:`unbind_message`
    is called with the returned token."""
    return _MESSAGE.set(fields)


def unbind_message(token: Any) -> None:
    _MESSAGE.reset(token)


def merge_message_context(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: the current message's fields, unless the line sets them itself."""
    fields = _MESSAGE.get()
    if fields:
        for key, value in fields.items():
            event.setdefault(key, value)
    return event


class SecretRedactor:
    """A structlog processor replacing every configured secret value with ``***``, in every
    string of the line (nested in lists and mappings too, and in the formatted exception, so it
    runs after ``format_exc_info``)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.update(secrets)

    def update(self, secrets: Iterable[str]) -> None:
        """Replace the values hidden (a configuration re-read may bring new ones)."""
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def __call__(self, logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
        if not self.secrets:
            return event
        return {k: self.scrub(v) for k, v in event.items()}

    def scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            for s in self.secrets:
                if s in value:
                    value = value.replace(s, "***")
            return value
        if isinstance(value, dict):
            return {k: self.scrub(v) for k, v in value.items()}
        if isinstance(value, (list, tuple, set, frozenset)):
            return type(value)(self.scrub(v) for v in value)
        if isinstance(value, BaseException):
            return self.scrub(repr(value))  # what the JSON renderer would show
        return value

    def record_factory(self, make: Callable[..., logging.LogRecord]
                       ) -> Callable[..., logging.LogRecord]:
        """Wrap a standard-library record factory so that libraries' log records (uvicorn,
        httpx ...) are scrubbed too: the message is rendered and the exception formatted when
        the record is made, then redacted, whatever handler later writes them."""

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = make(*args, **kwargs)
            if not self.secrets:
                return record
            # A malformed call (arguments not matching the message) is left for logging to
            # report when the record is written.
            with contextlib.suppress(Exception):
                record.msg, record.args = self.scrub(record.getMessage()), ()
            if record.exc_info and not record.exc_text:
                record.exc_text = self.scrub(_FORMATTER.formatException(record.exc_info))
            if record.stack_info:
                record.stack_info = self.scrub(record.stack_info)
            return record

        factory.base = make  # type: ignore[attr-defined]
        return factory


_FORMATTER = logging.Formatter()


def _redact_stdlib(redactor: SecretRedactor) -> None:
    """Install ``redactor`` for standard-library log records (replacing an earlier one)."""
    make = logging.getLogRecordFactory()
    make = getattr(make, "base", make)
    logging.setLogRecordFactory(redactor.record_factory(make))


def configure_logging(level: str = "info", fmt: str = "auto",
                      secrets: Iterable[str] = ()) -> None:
    json_output = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: Any = (structlog.processors.JSONRenderer() if json_output
                     else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()))
    redactor = SecretRedactor(secrets)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            merge_message_context,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redactor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        # One write per line (message and newline together): the worker processes of
        # ``esb run --workers N`` share stderr, and print()'s two writes let their lines
        # interleave mid-line.
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    # Libraries log through the standard library: keep their noise down and on stderr.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s: %(message)s")
    _redact_stdlib(redactor)
    logging.getLogger("pika").setLevel(logging.CRITICAL)
