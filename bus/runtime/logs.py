"""Logging set-up: the one place in esb that configures process-global state.

JSON lines when stderr is not a terminal (production), readable lines on a terminal.
Every line written while an envelope is being accepted carries its id, correlation id and
source: :func:`bind_message` sets them in one context variable (a single ``set``/``reset``
per message, where structlog's ``bound_contextvars`` costs a context manager and a variable per
key) and :func:`merge_message_context` adds them to the line. Anything else bound with
structlog's contextvars is merged too.

Libraries' records (uvicorn, kombu, httpx, Python warnings) go through the same processors
and renderer, with their logger's name, so stderr holds one format: with JSON, every line is
one JSON object, and secret redaction applies to every line alike.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterable
from contextvars import ContextVar
from typing import Any

import structlog

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


#: Loggers of the libraries esb runs on: their debug and info lines are not written.
LIBRARY_LOGGERS = ("uvicorn", "httpx", "httpcore", "kombu", "amqp",
                   "zeep", "urllib3", "asyncio", "multipart", "python_multipart", "jsonschema",
                   "graphql", "jwt", "lxml", "saxonche", "watchfiles", "websockets", "h11",
                   "charset_normalizer", "prometheus_client", "spyne", "requests", "filelock")

#: The name of the root handler :func:`configure_logging` installs (replaced on a re-read).
_HANDLER_NAME = "esb"


class _OneFormatHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A record that cannot be formatted (a library's arguments not matching its message)
    becomes one line in the same format, naming the logger and the unformatted message —
    not the standard library's plain-text report with the raw (unredacted) arguments."""

    def handleError(self, record: logging.LogRecord) -> None:
        fallback = logging.LogRecord(record.name, logging.ERROR, record.pathname, record.lineno,
                                     "log record could not be formatted: %s",
                                     (str(record.msg),), None)
        with contextlib.suppress(Exception):  # never raise from logging
            self.stream.write(self.format(fallback) + self.terminator)
            self.flush()


def _stdlib_handler(chain: list[Any], renderer: Any) -> logging.Handler:
    """A stderr handler writing standard-library records (uvicorn, kombu, httpx ...) through
    ``chain`` and ``renderer``, so they look like esb's own lines (and are redacted by the
    same :class:`SecretRedactor`). One ``write`` per line, as for structlog's lines."""
    handler = _OneFormatHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *chain],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer]))
    return handler


def _route_stdlib(handler: logging.Handler, level: int) -> None:
    """Make ``handler`` the root logger's only esb handler (a SIGHUP re-read replaces it)."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    # uvicorn, once configured by anyone with its default settings, writes through handlers
    # of its own and stops propagating: undo that, so its lines take this format too.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lib = logging.getLogger(name)
        for own in list(lib.handlers):
            lib.removeHandler(own)
        lib.propagate = True
        lib.setLevel(logging.NOTSET)
    # Plugins log with the standard library like esb's own lines (at ``level``); the libraries
    # esb runs on are noise below warning, whatever esb's own level.
    root.setLevel(level)
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
    # Python warnings (deprecations, unawaited coroutines) become log lines too, so that
    # stderr stays one format.
    logging.captureWarnings(True)


def configure_logging(level: str = "info", fmt: str = "auto",
                      secrets: Iterable[str] = ()) -> None:
    numeric = logging.getLevelNamesMapping()[level.upper()]
    json_output = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: Any = (structlog.processors.JSONRenderer() if json_output
                     else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()))
    redactor = SecretRedactor(secrets)
    # Shared by esb's own lines and the standard library's; the redactor runs after the
    # exception is formatted, so a secret in a traceback is caught too.
    chain: list[Any] = [
        structlog.contextvars.merge_contextvars,
        merge_message_context,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redactor,
    ]
    structlog.configure(
        processors=[*chain, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        # One write per line (message and newline together): the worker processes of
        # ``esb run --workers N`` share stderr, and print()'s two writes let their lines
        # interleave mid-line.
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    _route_stdlib(_stdlib_handler(chain, renderer), numeric)
    logging.getLogger("pika").setLevel(logging.CRITICAL)
