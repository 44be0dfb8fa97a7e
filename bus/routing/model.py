"""The route-file format (``routes/*.yaml``) as pydantic models."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from esb.bus.config.units import Duration, Size

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


def _listed(v: Any) -> Any:
    """One string stands for the list of just that string (``from: shop``)."""
    return [v] if isinstance(v, str) else v


#: A list of strings, or one string for the list of just that one.
StrList = Annotated[list[str], BeforeValidator(_listed)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Target(_Strict):
    destination: str = Field(min_length=1)
    #: Steps run for this destination only, after the route's own chain.
    transform: list[Any] = Field(default_factory=list)


class SplitSpec(_Strict):
    """``split:`` of a route: how one envelope becomes its parts (:mod:`esb.bus.routing.split`).
    Exactly one of ``jmespath``, ``xpath`` and ``fhir``."""

    #: Each element of the JSON array this selects (``@``: the payload is the array).
    jmespath: str | None = None
    #: Each element node this selects in an XML payload.
    xpath: str | None = None
    #: ``bundle``: each ``entry[].resource`` of a FHIR Bundle.
    fhir: Literal["bundle"] | None = None
    #: Prefixes for ``xpath`` (added to the route file's ``namespaces``).
    namespaces: dict[str, str] = Field(default_factory=dict)
    #: More parts than this dead-letters the envelope (whole) for the route.
    max_parts: int = Field(1000, ge=1, le=100_000)

    @model_validator(mode="after")
    def _one_way(self) -> SplitSpec:
        given = [k for k in ("jmespath", "xpath", "fhir") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("split: give exactly one of jmespath, xpath or fhir"
                             + (f" (got {', '.join(given)})" if given else ""))
        return self

class CacheSpec(_Strict):
    """``cache:`` of a request/reply route or an enricher: successful answers kept for
    ``ttl``, looked up by the request's ``key`` fields (:mod:`esb.bus.runtime.reply_cache`)."""

    #: How long an answer is served from the cache (how stale it may be).
    ttl: Duration = Field(gt=0, le=86400)
    #: Field paths of the request (``data.id``, ``subject``, an extension) that decide the
    #: answer: requests with equal values (and type) share one cached answer.
    key: StrList = Field(min_length=1, max_length=16)
    max_entries: int = Field(1000, ge=1, le=1_000_000)
    max_bytes: Size = Field(16 * 1024 * 1024, ge=1024, le=1024 ** 3)

    @field_validator("key")
    @classmethod
    def _paths(cls, v: list[str]) -> list[str]:
        for path in v:
            if not path or any(not part for part in path.removeprefix("$").split(".")):
                raise ValueError(f"{path!r} is not a field path (data.id, subject, ...)")
        return v


class ReplySpec(_Strict):
    """Request/reply: the caller waits for the one destination's answer (§12)."""

    #: How long the caller waits; past it the caller gets a timeout and no retry is made.
    timeout: Duration = Field(10.0, gt=0, le=3600)
    #: Steps turning the destination's answer (the reply envelope) into the caller's format.
    transform: list[Any] = Field(default_factory=list)
    #: Serve repeated requests from a cache of the (transformed) answers.
    cache: CacheSpec | None = None


class EnrichSpec(_Strict):
    """``enrich:`` of a route: ask ``destination`` (request/reply, through the bus) and merge
    its answer into the envelope before the route goes on (:mod:`esb.bus.routing.enrich`)."""

    destination: str = Field(min_length=1)
    #: Steps making what the destination is sent from the envelope (none: the envelope).
    request: list[Any] = Field(default_factory=list)
    #: Steps run on the destination's answer before the merge (xml-to-json, say).
    reply: list[Any] = Field(default_factory=list)
    #: Steps run on ``{"message": …, "reply": …}`` (JSON) or ``<enrichment><message>…
    #: </message><reply>…</reply></enrichment>`` (XML); what they return is the new payload.
    merge: list[Any] = Field(min_length=1)
    #: How long to wait for the answer.
    timeout: Duration = Field(5.0, gt=0, le=300)
    #: ``fail``: a transient failure (5xx, timeout, breaker open) asks the sender to retry, a
    #: permanent one (404, a refused request, a reply too large) dead-letters the envelope for
    #: the route. ``continue``: the route goes on with the envelope as it was.
    on_failure: Literal["fail", "continue"] = "fail"
    cache: CacheSpec | None = None


class Route(_Strict):
    name: str
    description: str | None = None
    #: Only envelopes that entered through these sources (endpoint names).
    from_: StrList | None = Field(default=None, alias="from")
    #: EventBridge event pattern over the envelope's CloudEvents JSON form ({} matches all).
    match: dict[str, Any] = Field(default_factory=dict)
    #: Split the envelope into parts first: each part then runs ``transform`` and goes to
    #: every destination of ``to`` like an envelope of its own.
    split: SplitSpec | None = None
    #: Steps run once before fan-out.
    transform: list[Any] = Field(default_factory=list)
    #: Ask a destination and merge its answer first (before ``transform``). Without ``to``,
    #: the enriched envelope is what the routes after this one in firing order match.
    enrich: EnrichSpec | None = None
    to: list[Target] = Field(default_factory=list)
    priority: int = 0
    #: First-match-wins: once an exclusive route fires, no route after it in firing order
    #: (lower priority, or equal priority and later in the files) does.
    exclusive: bool = False
    #: Request/reply: the caller waits for the destination's answer (one destination only).
    reply: ReplySpec | None = None

    @model_validator(mode="after")
    def _one_replier(self) -> Route:
        if not self.to and self.enrich is None:
            raise ValueError("a route needs 'to' (or 'enrich', for a route that only "
                             "enriches the envelope for the routes after it)")
        if not self.to and (self.split is not None or self.transform):
            raise ValueError("a route without 'to' only enriches: 'split' and 'transform' "
                             "belong to the routes after it")
        if self.reply is not None and len(self.to) != 1:
            raise ValueError(f"a request/reply route sends to exactly one destination "
                             f"(this one has {len(self.to)})")
        return self

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError("route names are 1-128 of letters, digits and _ . : - "
                             "(starting with a letter or digit)")
        return v

    @field_validator("to", mode="before")
    @classmethod
    def _to_list(cls, v: Any) -> Any:
        # ``to: erp`` and ``to: [erp, audit]`` are shorthands for ``destination:`` entries.
        v = _listed(v)
        if isinstance(v, list):
            return [{"destination": t} if isinstance(t, str) else t for t in v]
        return v


class RouteCase(_Strict):
    """A test case carried in a route file, run by ``esb routes test PATH``."""

    name: str
    message: Any = None
    message_file: str | None = None
    type: str = "test"
    source: str = "test"
    endpoint: str | None = None
    datacontenttype: str | None = None
    #: Recorded answers of the destinations enrichers ask, by destination (or route) name:
    #: inline (JSON value, XML text) or ``{file: PATH}``.
    answers: dict[str, Any] = Field(default_factory=dict)
    expect: dict[str, Any] = Field(default_factory=dict)


class RouteFile(_Strict):
    routes: list[Route] = Field(default_factory=list)
    #: XML namespace prefixes for ``$xpath`` patterns in this file.
    namespaces: dict[str, str] = Field(default_factory=dict)
    tests: list[RouteCase] = Field(default_factory=list)
