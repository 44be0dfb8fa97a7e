"""The daemon configuration (``config/esb.yaml``) as typed pydantic models.

Adapter-specific keys of sources and destinations are validated by each adapter's own settings
model (see ``esb.bus.config.loader``); this module holds what every deployment shares.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from esb.bus.config.units import Duration, Rate, Size
from esb.bus.config.yamlsource import DEFAULT_YAML_LIMITS, YamlLimits
from esb.bus.hosts import allow_entry_problem
from esb.bus.payload import DEFAULT_JSON_DEPTH, MAX_JSON_DEPTH
from esb.bus.runtime.httpguard import HttpLimits
from esb.bus.xmlsafe import LIBXML_MAX_DEPTH, LIBXML_MAX_NAME, LIBXML_MAX_TEXT, XmlLimits


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TlsFiles(_Strict):
    """Client TLS: whom to trust and who we are (relative paths: the configuration folder)."""

    #: CA bundle (PEM) the server's certificate must chain to; unset: the system's store.
    ca_file: Path | None = None
    #: Client certificate (PEM), for servers that require one (mutual TLS).
    cert_file: Path | None = None
    #: Its private key (PEM); unset: in ``cert_file``.
    key_file: Path | None = None
    #: Check the server's certificate and name (``false`` only for tests).
    verify: bool = True

    @model_validator(mode="after")
    def _key_needs_cert(self) -> TlsFiles:
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file needs cert_file (the client certificate)")
        return self

    def files(self, resolve: Any) -> dict[str, Path | None]:
        """``ca_file``, ``cert_file`` and ``key_file`` resolved with ``resolve`` (None: unset),
        as :func:`~esb.bus.broker.tls.with_tls` and ``client_context`` take them."""
        return {key: None if (path := getattr(self, key)) is None else resolve(path)
                for key in ("ca_file", "cert_file", "key_file")}

    def missing(self, resolve: Any) -> list[str]:
        """The files named here that do not exist (resolved with ``resolve``)."""
        return [f"{key}: {path} does not exist" for key, path in self.files(resolve).items()
                if path is not None and not path.is_file()]


class BusTls(TlsFiles):
    """TLS for ``amqps://`` bus URLs (every node), beyond the system's trust store."""

    #: Name the server's certificate must carry (SNI and the check), when it differs from the
    #: URL's host (an IP address, a load balancer).
    server_name: str | None = None


class OutboundHttp(TlsFiles):
    """The outbound HTTP client every adapter shares (``ctx.http()``)."""

    #: Proxy for outbound HTTP and HTTPS calls: ``http://[user:pass@]proxy:3128``.
    proxy: str | None = None

    @field_validator("proxy")
    @classmethod
    def _proxy(cls, v: str | None) -> str | None:
        if v is not None and not v.lower().startswith(("http://", "https://")):
            raise ValueError("proxy must be an http:// or https:// URL")
        return v


class BusConfig(_Strict):
    #: ``embedded``, one ``amqp[s]://`` URL, or a cluster's nodes: a YAML list of URLs or one
    #: string of URLs separated by commas (kept in that comma form here). esb connects to the
    #: first node that answers and moves on to the next when its node dies.
    url: str = "embedded"
    #: Prefix of every exchange and queue name, so several deployments (or test runs) can share
    #: one broker or vhost.
    prefix: str = Field("esb", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    #: Unacknowledged deliveries per destination consumer (RabbitMQ basic.qos). At least 100:
    #: below that a consumer idles between acks and rates collapse (``delivery.concurrency``
    #: is what limits calls to a destination). Ordered destinations use 1 whatever this says.
    prefetch: int = Field(200, ge=100, le=65535)
    #: Queue type of every queue esb declares. Unset: ``quorum`` when ``url`` names several
    #: nodes (replicated: losing a node loses nothing), else ``classic``.
    queue_type: Literal["classic", "quorum"] | None = None
    #: Longest wait for the broker's confirm of a publish; past it the sender is told to retry
    #: (503 + Retry-After) and a link that stays silent this long is dropped and rebuilt.
    confirm_timeout: Duration = Field(5.0, gt=0, le=120)
    #: TLS for ``amqps://`` URLs: CA bundle, client certificate and key, server name. (The
    #: same settings may be written in the URL as RabbitMQ's ``cacertfile``, ``certfile``,
    #: ``keyfile``, ``server_name_indication`` query parameters.)
    tls: BusTls | None = None
    #: Where the embedded bus and the daemon keep state between restarts.
    state_dir: Path = Path(".esb")
    heartbeat: int = Field(30, ge=0)
    #: How long a repeated ``Idempotency-Key`` is answered with the original result.
    idempotency_window: Duration = 86400.0
    #: Keys each instance remembers at most (~0.5 KiB each); past that the oldest are
    #: forgotten before the window ends. Size it to the keyed messages one window brings.
    idempotency_max_keys: int = Field(100_000, ge=1000)
    #: How long a claimed key stays taken while its claimant has not finished: a request with
    #: the same key meanwhile gets 409. A claimant that died holds it this long at most.
    idempotency_claim_ttl: Duration = Field(30.0, gt=0)
    #: Request/reply callers one instance lets wait at once; more are answered 503 (retry).
    max_waiting: int = Field(10_000, ge=1, le=1_000_000)
    #: Heartbeat (s) of the connection holding the leases of ``one-instance`` sources: a host
    #: that dies or is cut off loses its leases about two heartbeats later.
    lease_heartbeat: int = Field(5, ge=1, le=60)
    #: How often an instance that does not hold a lease tries to take it.
    lease_retry: Duration = Field(1.0, gt=0)

    @property
    def embedded(self) -> bool:
        return self.url.strip().lower() in ("embedded", "embedded://", "")

    @property
    def nodes(self) -> list[str]:
        """The broker nodes ``url`` names (empty for the embedded bus)."""
        return [] if self.embedded else [u.strip() for u in self.url.split(",")]

    @field_validator("url", mode="before")
    @classmethod
    def _scheme(cls, v: Any) -> str:
        if isinstance(v, list):
            if not v or not all(isinstance(u, str) for u in v):
                raise ValueError("bus.url as a list must list amqp:// URLs, one per node")
            v = ",".join(v)
        if not isinstance(v, str):
            raise ValueError("bus.url must be a URL, a comma-separated list of URLs, or a list")
        low = v.strip().lower()
        if low in ("embedded", "embedded://", ""):
            return "embedded"
        urls = [u.strip() for u in v.split(",")]
        bad = [i + 1 for i, u in enumerate(urls)
               if not u.lower().startswith(("amqp://", "amqps://"))]
        if bad:
            which = "" if len(urls) == 1 else f" (node {', '.join(map(str, bad))})"
            raise ValueError("bus.url must be 'embedded' or amqp:// / amqps:// URLs" + which)
        return ",".join(urls)

    @model_validator(mode="after")
    def _cluster_defaults(self) -> BusConfig:
        if self.queue_type is None:
            self.queue_type = "quorum" if len(self.nodes) > 1 else "classic"
        return self


class HttpConfig(_Strict):
    listen: str = "127.0.0.1:8080"
    max_body: Size = 1024 * 1024
    #: Hosts outbound URLs may reach (SSRF guard); empty allows any. An entry is a host
    #: (``api.example.com``), ``*.example.com``, ``host:port`` or a URL prefix with a scheme
    #: (``https://api.example.com``, ``http://127.0.0.1:19201``).
    allowed_hosts: list[str] = Field(default_factory=list)
    #: Open connections per process; past it a new one gets 503 and is closed.
    max_connections: int = Field(1000, ge=1)
    #: A request's line and headers must arrive within this of its first byte.
    header_timeout: Duration = Field(10.0, gt=0)
    #: A request's body must arrive within this of its headers.
    body_timeout: Duration = Field(30.0, gt=0)
    #: A kept-alive connection with no request is closed after this.
    idle_timeout: Duration = Field(75.0, gt=0)
    #: Header fields per request (431 above).
    max_headers: int = Field(100, ge=1)
    #: Request line plus headers, in bytes (431 above).
    max_header_bytes: Size = Field(16 * 1024, ge=1024)
    #: TLS (CA bundle, client certificate) and proxy of outbound HTTP calls.
    outbound: OutboundHttp = Field(default_factory=OutboundHttp)

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ValueError("http.listen must be HOST:PORT, e.g. 127.0.0.1:8080")
        return v

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts(cls, v: list[str]) -> list[str]:
        bad = [e for e in v if allow_entry_problem(e)]
        if bad:
            raise ValueError("; ".join(f"{e!r}: {allow_entry_problem(e)}" for e in bad))
        return v

    @property
    def limits(self) -> HttpLimits:
        return HttpLimits(**self.model_dump(include={f.name for f in fields(HttpLimits)}))

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class ConsoleConfig(_Strict):
    """The web console at ``/console`` (same binding and token as the admin API)."""

    enabled: bool = True
    #: A console session ends this long after login (log in again with the token).
    session_ttl: Duration = Field(8 * 3600.0, gt=0)


class AdminConfig(_Strict):
    #: Bearer token for /admin (key ``token``; a secret: written as a ``${VAR}`` reference).
    #: Empty: the daemon makes one and writes it to ``<state_dir>/admin.token`` (mode 0600),
    #: where the CLI finds it.
    secret_token: SecretStr = Field(SecretStr(""), alias="token")
    #: Serve /admin to non-loopback clients too (off: 127.0.0.1/::1 only).
    remote: bool = False
    #: Largest admin request body (a route set deploy is the big one).
    max_body: Size = Field(32 * 1024 * 1024, ge=1024)
    console: ConsoleConfig = Field(default_factory=ConsoleConfig)

    @property
    def token(self) -> str:
        """The configured token as text (empty: none configured)."""
        return self.secret_token.get_secret_value()


class Backoff(_Strict):
    initial: Duration = 1.0
    max: Duration = 600.0
    multiplier: float = Field(2.0, ge=1.0)


class BreakerConfig(_Strict):
    #: Open after this many consecutive transient failures ...
    failures: int = Field(5, ge=1)
    #: ... or when this share of the last ``window`` calls failed (1.0: streaks only).
    failure_rate: float = Field(1.0, gt=0, le=1)
    window: int = Field(20, ge=2)
    #: How long it stays open before one probe delivery is let through.
    cooldown: Duration = 30.0


class OrderedConfig(_Strict):
    """Deliver envelopes with the same key one at a time, in order (per partition, one
    consumer across all instances: RabbitMQ single-active-consumer)."""

    #: Envelope field whose value orders: ``subject``, ``type``, ``data.customerId`` ...
    key: str = Field("subject", pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*$")
    #: Independent ordered lanes; keys are hashed onto them.
    partitions: int = Field(4, ge=1, le=256)


class DeliveryConfig(_Strict):
    concurrency: int = Field(16, ge=1, le=10000)
    timeout: Duration = 10.0
    max_attempts: int = Field(8, ge=1)
    max_age: Duration = 86400.0
    backoff: Backoff = Field(default_factory=Backoff)
    rate_limit: Rate | None = None
    #: Calls the rate limit lets through at once after a quiet spell (the token bucket's
    #: size). Unset: one second's worth of ``rate_limit``. Over any ``t`` seconds at most
    #: ``rate_burst + rate_limit * t`` calls go out.
    rate_burst: int | None = Field(None, ge=1)
    #: ``instance``: ``rate_limit`` and ``breaker`` hold in each instance. ``fleet``: for all
    #: instances on the bus together (shared through the broker; docs/reliability.md).
    scope: Literal["instance", "fleet"] = "instance"
    #: Circuit breaker; ``false`` turns it off.
    breaker: BreakerConfig | Literal[False] = Field(default_factory=BreakerConfig)
    #: Ordered delivery by key; retries then happen in place so the order holds.
    ordered: OrderedConfig | None = None
    #: Request/reply: the largest answer passed back to a caller (larger: a 502).
    max_reply: Size = 4 * 1024 * 1024


class EndpointConfig(BaseModel):
    """A source or destination: an adapter name plus that adapter's own settings."""

    model_config = ConfigDict(extra="allow")

    adapter: str = Field(min_length=1)
    description: str | None = None


class SourceConfig(EndpointConfig):
    #: Where the source's loop runs: ``one-instance`` (exactly one instance of the fleet, chosen
    #: through the broker) or ``every-instance``; unset: what its adapter declares.
    runs: Literal["every-instance", "one-instance"] | None = None


class DestinationConfig(EndpointConfig):
    delivery: DeliveryConfig = Field(default_factory=DeliveryConfig)


class XmlLimitsConfig(_Strict):
    """``limits.xml``: what one XML document may make esb build, on every parse path."""

    max_elements: int = Field(100_000, ge=1)
    max_attributes: int = Field(100_000, ge=0)
    max_depth: int = Field(LIBXML_MAX_DEPTH, ge=1, le=LIBXML_MAX_DEPTH)
    max_text: int = Field(LIBXML_MAX_TEXT, ge=1, le=LIBXML_MAX_TEXT)
    max_name: int = Field(LIBXML_MAX_NAME, ge=1, le=LIBXML_MAX_NAME)

    @property
    def limits(self) -> XmlLimits:
        return XmlLimits(**self.model_dump())


class JsonLimitsConfig(_Strict):
    """``limits.json``: nesting of JSON bodies (their size is the body limit)."""

    max_depth: int = Field(DEFAULT_JSON_DEPTH, ge=1, le=MAX_JSON_DEPTH)


class YamlLimitsConfig(_Strict):
    """``limits.yaml``: route files, for ``esb routes validate`` and deploys alike."""

    max_nodes: int = Field(DEFAULT_YAML_LIMITS.max_nodes, ge=100)
    max_aliases: int = Field(DEFAULT_YAML_LIMITS.max_aliases, ge=0)
    max_bytes: Size = Field(DEFAULT_YAML_LIMITS.max_bytes, ge=1024)
    max_depth: int = Field(DEFAULT_YAML_LIMITS.max_depth, ge=4, le=500)

    @property
    def limits(self) -> YamlLimits:
        return YamlLimits(**self.model_dump())


class LimitsConfig(_Strict):
    xml: XmlLimitsConfig = Field(default_factory=XmlLimitsConfig)
    json_: JsonLimitsConfig = Field(default_factory=JsonLimitsConfig, alias="json")
    yaml: YamlLimitsConfig = Field(default_factory=YamlLimitsConfig)


class LoggingConfig(_Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class Config(_Strict):
    bus: BusConfig = Field(default_factory=BusConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    admin: AdminConfig = Field(default_factory=AdminConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    #: Bounds on what one input may make esb build (see docs/security.md).
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    sources: dict[str, SourceConfig] = Field(default_factory=dict)
    destinations: dict[str, DestinationConfig] = Field(default_factory=dict)
    #: Named transformer steps (or chains) routes can refer to by name.
    transformers: dict[str, Any] = Field(default_factory=dict)
    routes: Path = Path("routes")
    #: The whole graceful stop (SIGTERM): requests in flight, deliveries in flight, links
    #: closed. Keep it below the orchestrator's kill timeout (Kubernetes: 30 s by default).
    stop_timeout: Duration = Field(25.0, ge=1, le=3600)

    #: The configuration folder, which relative paths in this file resolve against (set by
    #: the loader: :func:`project_dir` of the file).
    base_dir: Path = Field(default=Path("."), exclude=True)
    path: Path | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _tls_into_bus_url(self) -> Config:
        """Write ``bus.tls`` into each node's URL (every part that connects reads its TLS
        from the URL it is given: :mod:`esb.bus.broker.tls`)."""
        problems = [f"http.outbound.{p}" for p in self.http.outbound.missing(self.resolve)]
        tls = self.bus.tls
        if tls is not None:
            problems += [f"bus.tls.{p}" for p in tls.missing(self.resolve)]
            if any(not u.lower().startswith("amqps://") for u in self.bus.nodes):
                problems.append("bus.tls: the bus URL must be amqps:// for TLS settings to "
                                "apply")
        if problems:
            raise ValueError("; ".join(problems))
        if tls is not None and not self.bus.embedded:
            from esb.bus.broker.tls import with_tls

            self.bus.url = ",".join(
                with_tls(u, **tls.files(self.resolve), server_name=tls.server_name,
                         verify=tls.verify) for u in self.bus.nodes)
        return self

    @model_validator(mode="after")
    def _names(self) -> Config:
        for kind, names in (("sources", self.sources), ("destinations", self.destinations)):
            for name in names:
                if not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
                    raise ValueError(f"{kind} name {name!r}: use letters, digits, - _ .")
        return self

    def resolve(self, p: Path | str) -> Path:
        p = Path(p)
        return p if p.is_absolute() else self.base_dir / p


def project_dir(config_file: Path) -> Path:
    """The configuration folder: what relative paths in ``config_file`` resolve against,
    whatever folder esb was started in. It is the folder holding the file — or the one above
    it when that folder is named ``config`` (the shipped layout, ``config/esb.yaml`` beside
    ``routes/``, where paths read ``routes/``, ``config/xslt/a.xsl``, ``.esb/outbox``)."""
    folder = config_file.absolute().parent
    return folder.parent if folder.name == "config" else folder
