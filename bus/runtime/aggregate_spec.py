"""``adapter: aggregate`` — a destination that collects envelopes into groups and emits one
envelope per group (:mod:`esb.bus.runtime.aggregator`). Registered like any adapter (entry
point ``esb.adapters: aggregate``); the daemon consumes its queues itself."""

from __future__ import annotations

from typing import Literal

import jmespath
from jmespath.exceptions import JMESPathError
from pydantic import BaseModel, ConfigDict, Field, model_validator

from esb.adapters.spec import AdapterSettings, AdapterSpec, OutboundContext
from esb.bus.config.model import OrderedConfig
from esb.bus.config.units import Duration
from esb.bus.errors import ConfigError
from esb.bus.runtime.aggregator import Aggregator, json_list, python_merge, xml_wrapper
from esb.transformers.python import load_function

PATH = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*$"


class Completion(BaseModel):
    """When a group is complete: the first rule that holds (at least one is required)."""

    model_config = ConfigDict(extra="forbid")

    #: This many members.
    count: int | None = Field(None, ge=1)
    #: Every part of a split (``splitsize`` members with distinct ``splitindex``).
    split: bool = False
    #: A JMESPath over the list of the members' payloads; complete when truthy.
    predicate: str | None = None
    #: This long since the first member was routed here.
    timeout: Duration | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _some_rule(self) -> Completion:
        if self.count is None and not self.split and self.predicate is None \
                and self.timeout is None:
            raise ValueError("complete: give count, split, predicate or timeout")
        return self


class AggregateSettings(AdapterSettings):
    #: Field path whose value groups envelopes (``data.customerId``; for split parts, the
    #: default: the split's id).
    correlation: str = Field("splitid", pattern=PATH)
    #: When a group is complete (see the Completion table).
    complete: Completion
    #: ``json-list``, ``xml`` (members as children of ``root``) or ``python:module:function``
    #: (the members in, JSON data or an Envelope out).
    merge: str = Field("json-list", pattern=r"^(json-list|xml|python:.+)$")
    #: Root element of the ``xml`` merge.
    root: str = Field("items", pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$")
    #: ``type`` of the emitted envelope (its ``source`` is the aggregate's name).
    type: str = Field("aggregate", min_length=1)
    #: Partition queues (groups are hashed onto them; each is consumed by one instance).
    partitions: int = Field(1, ge=1, le=256)
    #: Members held open at once per partition (the consumer's prefetch).
    max_open: int = Field(10_000, ge=10, le=65_535)
    #: A member whose group was already emitted: ``new-group`` or ``dead-letter``.
    late: Literal["new-group", "dead-letter"] = "new-group"
    #: How long emitted groups are remembered for ``late: dead-letter``.
    late_window: Duration = Field(3600.0, gt=0)

    @property
    def ordered(self) -> OrderedConfig:
        """The aggregate's queues as ordered delivery partitions them: by the correlation key,
        each consumed by one instance at a time, so all members of a group meet in one place."""
        return OrderedConfig(key=self.correlation, partitions=self.partitions)


def _outbound(settings: AggregateSettings, ctx: OutboundContext) -> Aggregator:
    if settings.complete.predicate is not None:
        try:
            jmespath.compile(settings.complete.predicate)
        except JMESPathError as exc:
            raise ConfigError([f"destinations.{ctx.name}.complete.predicate: {exc}"]) from exc
    if settings.merge == "json-list":
        merge = json_list
    elif settings.merge == "xml":
        merge = xml_wrapper(settings.root)
    else:
        merge = python_merge(load_function(settings.merge.removeprefix("python:"),
                                           ctx.config_dir))
    return Aggregator(ctx.name, settings, merge)


SPEC = AdapterSpec(
    name="aggregate",
    summary="Collect envelopes by a correlation key until complete; emit one per group",
    outbound_settings=AggregateSettings,
    outbound=_outbound,
    docs="State is the un-acked members on RabbitMQ (single-active-consumer partitions); see "
         "docs/flows.md.",
    examples={"outbound": "adapter: aggregate\ncorrelation: data.customerId\n"
                          "complete: {count: 10, timeout: 1h}\nmerge: json-list\n"
                          "type: picklist.ready"},
)
