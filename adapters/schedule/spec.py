"""The schedule adapter, registered like any plugin (entry point ``esb.adapters: schedule``)."""

from __future__ import annotations

from esb.adapters.schedule.inbound import ScheduleInbound
from esb.adapters.schedule.settings import ScheduleSettings
from esb.adapters.spec import AdapterSpec

SPEC = AdapterSpec(
    name="schedule",
    summary="Cron expressions and intervals (with time zones) that put an envelope on the bus",
    inbound_settings=ScheduleSettings,
    inbound=ScheduleInbound,
    inbound_mode="one-instance",
    docs="Fires once across the fleet (the lease holder); the last slot fired is kept on the "
         "broker. See docs/flows.md.",
    examples={"inbound": "adapter: schedule\ncron: '0 2 * * MON-FRI'\n"
                         "timezone: Europe/Berlin\ntype: report.requested\n"
                         "payload: {report: daily, date: '{date}'}"},
)
