"""Settings of the amqp adapter: a legacy system's RabbitMQ broker or vhost."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, SecretStr

from esb.adapters.spec import AdapterSettings
from esb.bus.config.units import Duration, Size


def _amqp_url(v: SecretStr) -> SecretStr:
    """One ``amqp[s]://`` URL, or a cluster's nodes separated by commas (each a whole URL)."""
    urls = [u.strip() for u in v.get_secret_value().split(",")]
    if not all(u.startswith(("amqp://", "amqps://")) for u in urls):
        raise ValueError("url must be amqp:// or amqps:// (user:password@host:port/vhost), "
                         "or several of them separated by commas (a cluster's nodes)")
    return v


#: A broker URL setting (:func:`_amqp_url`).
AmqpUrl = Annotated[SecretStr, AfterValidator(_amqp_url)]


class AmqpInboundSettings(AdapterSettings):
    """Consume a legacy queue; each message becomes one envelope, acked once the bus has it."""

    #: The legacy broker, ``amqp[s]://user:password@host:port/vhost`` (usually ``${ENV}``).
    url: AmqpUrl
    queue: str = Field(min_length=1)
    #: ``false`` (default): the queue must exist (checked with a passive declare) and nothing
    #: about the legacy topology is changed. ``true``: declare it with ``durable`` and
    #: ``arguments``.
    declare: bool = False
    durable: bool = True
    arguments: dict[str, Any] = Field(default_factory=dict)
    #: Unacknowledged messages in flight (``basic.qos``).
    prefetch: int = Field(10, ge=1, le=65535)
    #: Envelope type when the message has no ``type`` property (default: its routing key,
    #: else ``<source>.received``).
    type: str | None = None
    #: Envelope source when the message has no ``app_id`` (default: the source name).
    source: str | None = None
    #: Content type assumed when the message has none (default: binary).
    content_type: str | None = None
    #: AMQP headers copied to ``esbheaders`` (names lower-cased); ``["*"]`` copies all.
    headers: list[str] = Field(default_factory=list)
    #: Largest message body taken (default: ``http.max_body``); a larger one is rejected
    #: (to the queue's dead-letter exchange when it has one), never put on the bus.
    max_body: Size | None = Field(None, ge=1)
    #: Pause before a message the bus could not take is handed back (requeued).
    retry_delay: Duration = 1.0
    #: Longest wait between reconnection attempts (backoff from 0.5 s).
    reconnect_max: Duration = 10.0
    heartbeat: int = Field(30, ge=0)


class AmqpOutboundSettings(AdapterSettings):
    """Publish each envelope to a legacy exchange, with publisher confirms."""

    url: AmqpUrl
    #: Exchange to publish to (``""``: the default exchange, the routing key names a queue).
    exchange: str = ""
    #: Routing key template: ``{type}``, ``{id}``, ``{source}``, ``{subject}``,
    #: ``{data.field}`` are filled from the envelope (e.g. ``orders.{type}``).
    routing_key: str = ""
    #: ``mandatory`` publishes come back when no queue is bound (instead of vanishing).
    mandatory: bool = True
    #: What a returned (unroutable) message means: retry later (a legacy consumer may bind
    #: its queue again) or a dead letter.
    unroutable: Literal["transient", "permanent"] = "transient"
    #: ``none``: the payload bytes as the body; ``structured``: the whole CloudEvent (JSON).
    cloudevents: Literal["none", "structured"] = "none"
    #: Fixed AMQP headers added to every message.
    headers: dict[str, str] = Field(default_factory=dict)
    #: ``esbheaders`` entries copied as AMQP headers.
    keep_headers: list[str] = Field(default_factory=list)
    #: Persistent messages (``delivery_mode`` 2).
    persistent: bool = True
    #: Seconds to wait for the broker's confirm.
    timeout: Duration = 10.0
    heartbeat: int = Field(30, ge=0)
    #: Request/reply: the reply's AMQP header holding a status with HTTP meaning (none on
    #: the reply: 200; 404 reaches a REST caller as 404, 5xx as 502); null: never read.
    reply_status_header: str | None = Field("status", min_length=1)
    #: Request/reply: the reply's AMQP header whose presence marks a failed call (its value
    #: is the error text); null: never read.
    reply_error_header: str | None = Field("error", min_length=1)
