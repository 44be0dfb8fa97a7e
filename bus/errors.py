"""The error tree every driver error is translated into, at the adapter or broker edge.

::

    EsbError
    ├── ConfigError              configuration or route files are invalid (listed with file:line)
    ├── DeliveryError            a destination did not accept an envelope
    │   ├── TransientError       retry later: timeouts, 5xx, 408/425/429, connection resets
    │   │   └── TransientTransformError  a transformer step asked for a retry (names the step)
    │   └── PermanentError       never retry: other 4xx, Client faults, schema violations
    │       └── TransformError   a transformer step failed (names the step)
    └── BusError                 the bus itself failed
        ├── BusUnavailable       not connected, or the connection dropped before the confirm
        │   ├── CommitUncertain  a transaction's commit was sent, and no answer came back
        │   ├── TransformDeferred  not taken: a step run at ingress asked for a retry
        │   └── IdempotencyInFlight  not taken: another instance is taking the same key now
        └── PublishRejected      the broker nacked, or returned the message as unroutable

Only these cross a seam. Drivers (httpx, zeep, pika, lxml) raise their own exceptions inside an
adapter; the adapter re-raises one of these ``from`` the original so the cause stays visible.
"""

from __future__ import annotations


class EsbError(Exception):
    """Base of every error esb raises on purpose."""


class ConfigError(EsbError):
    """Configuration or route documents are invalid; ``problems`` lists every one found."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class DeliveryError(EsbError):
    """A destination did not accept an envelope."""

    def __init__(self, message: str, *, status: int | None = None,
                 retry_after: float | None = None, fault: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        #: The protocol-level fault the destination answered with (a SOAP fault string).
        self.fault = fault


class TransientError(DeliveryError):
    """Worth retrying: the destination may accept the same envelope later."""


class PermanentError(DeliveryError):
    """Retrying cannot help; the envelope goes to the dead-letter queue."""


class TransformError(PermanentError):
    """A transformer step failed; ``step`` names it."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(f"transformer {step!r}: {message}")
        self.step = step


class TransientTransformError(TransientError):
    """A transformer step cannot do its work now but may later (it raised
    ``TransientError``); ``step`` names it."""

    def __init__(self, step: str, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(f"transformer {step!r}: {message}", retry_after=retry_after)
        self.step = step


class DropEnvelope(EsbError):
    """Raised by a transformer to filter an envelope out on purpose (not dead-lettered)."""


class BusError(EsbError):
    """The bus failed to carry an envelope."""


class BusUnavailable(BusError):
    """The bus is not connected, or lost the connection before confirming."""


class CommitUncertain(BusUnavailable):
    """A transaction's ``tx.commit`` was sent but its ``commit-ok`` never came (the connection
    or the channel went, the broker stayed silent). The broker may have taken all of it, none,
    or — when a node failed in the middle — only the messages of some queues: RabbitMQ does
    not promise atomicity across queues when the broker itself fails."""


class PublishRejected(BusError):
    """The broker refused a publish (nack) or returned it as unroutable (``mandatory``)."""


class IdempotencyInFlight(BusUnavailable):
    """Not taken: another instance holds the same idempotency key and has not finished. HTTP
    endpoints answer 409 with ``Retry-After``; other sides treat it as "retry later" (it is a
    ``BusUnavailable``). ``key`` is the (source-scoped) key."""

    def __init__(self, key: str) -> None:
        super().__init__("a request with the same idempotency key is still in flight; retry")
        self.key = key


class TransformDeferred(BusUnavailable):
    """The envelope was not taken because a transformer step run at ingress asked for a retry;
    nothing was published. It is a ``BusUnavailable`` on purpose: every inbound side already
    answers that with "retry later" (503, a Server fault, a requeue), which is what the sender
    must hear. ``step`` names the step."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(message)
        self.step = step
