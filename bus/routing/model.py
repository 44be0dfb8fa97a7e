"""The route-file format (``routes/*.yaml``) as pydantic models."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from esb.bus.config.units import Duration

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


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
class ReplySpec(_Strict):
    """Request/reply: the caller waits for the one destination's answer (§12)."""

    #: How long the caller waits; past it the caller gets a timeout and no retry is made.
    timeout: Duration = Field(10.0, gt=0, le=3600)
    #: Steps turning the destination's answer (the reply envelope) into the caller's format.
    transform: list[Any] = Field(default_factory=list)


class Route(_Strict):
    name: str
    description: str | None = None
    #: Only envelopes that entered through these sources (endpoint names).
    from_: list[str] | None = Field(default=None, alias="from")
    #: EventBridge event pattern over the envelope's CloudEvents JSON form ({} matches all).
    match: dict[str, Any] = Field(default_factory=dict)
    #: Split the envelope into parts first: each part then runs ``transform`` and goes to
    #: every destination of ``to`` like an envelope of its own.
    split: SplitSpec | None = None
    #: Steps run once before fan-out.
    transform: list[Any] = Field(default_factory=list)
    to: list[Target] = Field(min_length=1)
    priority: int = 0
    #: First-match-wins: once an exclusive route fires, no route after it in firing order
    #: (lower priority, or equal priority and later in the files) does.
    exclusive: bool = False
    #: Request/reply: the caller waits for the destination's answer (one destination only).
    reply: ReplySpec | None = None

    @model_validator(mode="after")
    def _one_replier(self) -> Route:
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

    @field_validator("from_", mode="before")
    @classmethod
    def _from_list(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("to", mode="before")
    @classmethod
    def _to_list(cls, v: Any) -> Any:
        # ``to: erp`` and ``to: [erp, audit]`` are shorthands for ``destination:`` entries.
        if isinstance(v, str):
            v = [v]
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
    expect: dict[str, Any] = Field(default_factory=dict)


class RouteFile(_Strict):
    routes: list[Route] = Field(default_factory=list)
    #: XML namespace prefixes for ``$xpath`` patterns in this file.
    namespaces: dict[str, str] = Field(default_factory=dict)
    tests: list[RouteCase] = Field(default_factory=list)
