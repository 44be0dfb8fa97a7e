"""Logging set-up: the one place in esb that configures process-global state.

JSON lines when stderr is not a terminal (production), readable lines on a terminal.
Every line written while an envelope is being accepted carries its id, correlation id and
source: :func:`bind_message` sets them in one context variable (a single ``set``/``reset``
per message, where structlog's ``bound_contextvars`` costs a context manager and a variable per
key) and :func:`merge_message_context` adds them to the line. Anything else bound with
structlog's contextvars is merged too.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
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
    """A structlog processor replacing every configured secret value with ``***``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def __call__(self, logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
        if not self.secrets:
            return event
        return {k: self._scrub(v) for k, v in event.items()}

    def _scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            for s in self.secrets:
                if s in value:
                    value = value.replace(s, "***")
        return value


def configure_logging(level: str = "info", fmt: str = "auto",
                      secrets: Iterable[str] = ()) -> None:
    json_output = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: Any = (structlog.processors.JSONRenderer() if json_output
                     else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            merge_message_context,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            SecretRedactor(secrets),
            structlog.processors.format_exc_info,
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
    logging.getLogger("pika").setLevel(logging.CRITICAL)
