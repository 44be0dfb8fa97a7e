"""The schedule adapter alone: slots of cron expressions in time zones (DST included) and of
intervals, where a new holder starts (catch-up), the payload template, bad settings."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from esb.adapters.schedule.inbound import ScheduleInbound
from esb.adapters.schedule.settings import ScheduleSettings
from esb.adapters.testing.context import RecordingInboundContext
from esb.bus.errors import ConfigError


def side(tmp_path: Path, **settings: Any) -> ScheduleInbound:
    ctx = RecordingInboundContext(name="tick", config_dir=tmp_path)
    return ScheduleInbound(ScheduleSettings.model_validate(settings), ctx)


def test_cron_slots_are_read_in_the_time_zone_across_dst(tmp_path: Path) -> None:
    s = side(tmp_path, cron="30 2 * * *", timezone="Europe/Berlin")
    # 2026-03-29: clocks go from 02:00 to 03:00 in Berlin; 02:30 does not exist that night
    first = s.next_after(datetime(2026, 3, 28, 3, 0, tzinfo=UTC))
    assert first.isoformat() == "2026-03-29T03:00:00+02:00"  # fired at the shifted hour
    later = s.next_after(datetime(2026, 3, 30, 0, 0, tzinfo=UTC))
    assert later.isoformat() == "2026-03-30T02:30:00+02:00"
    weekdays = side(tmp_path, cron="0 9 * * MON-FRI", timezone="America/New_York")
    slot = weekdays.next_after(datetime(2026, 12, 4, 15, 0, tzinfo=UTC))  # a Friday, 10:00 EST
    assert slot.isoformat() == "2026-12-07T09:00:00-05:00"


async def test_a_new_holder_catches_up_one_missed_slot(tmp_path: Path) -> None:
    s = side(tmp_path, every="10s")
    now = datetime.now(UTC)
    await s.ctx.state.save({"last": (now.replace(microsecond=0)).isoformat()})
    assert (await s._first_slot() - now).total_seconds() > 5  # nothing missed: the next one
    await s.ctx.state.save({"last": "2026-01-01T00:00:00+00:00"})
    missed = await s._first_slot()
    assert 0 <= (now - missed).total_seconds() <= 10  # the latest missed slot, at once
    s.settings = s.settings.model_copy(update={"catch_up": "none"})
    assert await s._first_slot() > now


async def test_fires_with_its_template_and_keeps_the_last_slot(tmp_path: Path) -> None:
    s = side(tmp_path, every="50ms", type="report.requested",
             payload={"report": "daily", "for": "{date}", "tags": ["{source}"]})
    await s.start()
    try:
        for _ in range(100):
            if len(s.ctx.accepted) >= 3:
                break
            await asyncio.sleep(0.02)
    finally:
        await s.stop()
    got = s.ctx.accepted
    assert len(got) >= 3
    assert got[0].type == "report.requested" and got[0].source == "tick"
    assert got[0].data["report"] == "daily" and got[0].data["tags"] == ["tick"]
    assert got[0].id == f"tick@{got[0].subject}" and got[0].idempotencykey == got[0].id
    assert len({e.id for e in got}) == len(got)
    # stopped between a fire and its save at worst: the state names one of the last two
    assert (await s.ctx.state.load())["last"] in {e.subject for e in got[-2:]}
    assert s.status()["next_fire"]


@pytest.mark.parametrize(("settings", "error"), [
    ({}, "exactly one of cron and every"),
    ({"cron": "* * * * *", "every": "1m"}, "exactly one of cron and every"),
    ({"cron": "61 * * * *"}, "cron '61 \\* \\* \\* \\*'"),
    ({"every": "1m", "timezone": "Mars/Olympus"}, "unknown time zone"),
])
def test_bad_settings_are_refused(settings: dict[str, Any], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        ScheduleSettings.model_validate(settings)


def test_an_unknown_placeholder_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown placeholder"):
        side(tmp_path, every="1m", payload={"x": "{nope}"})
