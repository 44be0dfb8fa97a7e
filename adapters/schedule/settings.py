"""Settings of a schedule source."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from pydantic import Field, field_validator, model_validator

from esb.adapters.spec import AdapterSettings
from esb.bus.config.units import Duration


class ScheduleSettings(AdapterSettings):
    #: A cron expression: 5 fields (minute hour day month weekday) or 6 with seconds first;
    #: ``@hourly``, ``@daily`` … and ``L``/``W``/``#`` as cronsim reads them.
    cron: str | None = None
    #: Or a fixed interval (``30s``, ``5m``), measured from the previous fire.
    every: Duration | None = Field(None, gt=0)
    #: IANA time zone the cron expression is read in (DST transitions handled).
    timezone: str = "UTC"
    #: ``type`` of the envelopes; ``source`` is the source's name.
    type: str = Field("schedule.fired", min_length=1)
    #: The payload: any YAML value; in its strings ``{scheduled}`` (ISO time of the slot, in
    #: ``timezone``), ``{date}``, ``{time}`` and ``{source}`` are filled in.
    payload: Any = None
    #: A slot missed while no instance ran the schedule (all down, or the lease moving):
    #: ``one`` fires once for the latest missed slot on start, ``none`` waits for the next.
    catch_up: Literal["one", "none"] = "one"

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r} (an IANA name: Europe/Berlin, UTC)") \
                from None
        return v

    @model_validator(mode="after")
    def _one_trigger(self) -> ScheduleSettings:
        if (self.cron is None) == (self.every is None):
            raise ValueError("give exactly one of cron and every")
        if self.cron is not None:
            try:
                CronSim(self.cron, datetime.now(UTC))
            except CronSimError as exc:
                raise ValueError(f"cron {self.cron!r}: {exc}") from None
        return self
