"""The fixedwidth adapter on a realistic CUSTMAST extract: every record in, bad files refused
whole with a reason, JSON back out to the same columns."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from esb.adapters.testing import RecordingInboundContext, http_client, outbound_context
from esb.bus.envelope import Envelope
from esb.bus.errors import PermanentError

from esb_adapter_fixedwidth.layout import Layout, load_layout
from esb_adapter_fixedwidth.spec import SPEC

DATA = Path(__file__).parent / "data"
GOOD = "CUSTMAST.D240611.DAT"
BAD = "CUSTMAST.D240612.DAT"


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    shutil.copy(DATA / "custmast.layout.yaml", tmp_path / "layout.yaml")
    (tmp_path / "inbox").mkdir()
    return tmp_path


def take_inbox(config_dir: Path, *files: str) -> RecordingInboundContext:
    """Drop ``files`` into the inbox and run one poll (no poller running beside it)."""
    ctx = RecordingInboundContext(name="mainframe", config_dir=config_dir)
    settings = SPEC.inbound_settings.model_validate(
        {"directory": "inbox", "layout": "layout.yaml", "type": "customer.updated"})
    side = SPEC.inbound(settings, ctx)
    for name in files:
        shutil.copy(DATA / name, config_dir / "inbox" / name)

    asyncio.run(side.poll_once())
    return ctx


def test_every_record_of_an_extract_becomes_an_envelope(config_dir: Path) -> None:
    ctx = take_inbox(config_dir, GOOD)
    assert [e.data["customer_id"] for e in ctx.accepted] == [1042, 1043, 1044, 1045]
    second, third = ctx.accepted[1].data, ctx.accepted[2].data
    assert second == {"record_type": "CM", "customer_id": 1043, "name": "BOULANGERIE PAUL SA",
                      "country": "FR", "balance": -125.5, "opened": "2003-07-15",
                      "status": "A"}
    assert third["opened"] is None and third["balance"] == 0
    assert {e.type for e in ctx.accepted} == {"customer.updated"}
    assert {e.source for e in ctx.accepted} == {"mainframe"}
    assert len({e.idempotencykey for e in ctx.accepted}) == 4
    assert (config_dir / "inbox" / "done" / GOOD).exists()
    assert not (config_dir / "inbox" / GOOD).exists()


def test_a_file_with_bad_records_is_refused_whole_with_a_reason(config_dir: Path) -> None:
    ctx = take_inbox(config_dir, BAD)
    assert ctx.accepted == []
    assert (config_dir / "inbox" / "error" / BAD).exists()
    reason = (config_dir / "inbox" / "error" / f"{BAD}.reason.txt").read_text()
    assert "3 bad record(s); nothing was accepted" in reason
    assert "line 2: customer_id (columns 3-10): '0000X046' is not a number" in reason
    assert "line 3: record is 57 characters; the layout has 52" in reason
    assert "line 4: opened (columns 44-51): '20201341' is not a YYYYMMDD date" in reason


def test_records_resume_after_the_bus_came_back(config_dir: Path) -> None:
    ctx = RecordingInboundContext(name="mainframe", config_dir=config_dir)
    settings = SPEC.inbound_settings.model_validate(
        {"directory": "inbox", "layout": "layout.yaml", "type": "customer.updated"})
    side = SPEC.inbound(settings, ctx)
    shutil.copy(DATA / GOOD, config_dir / "inbox" / GOOD)
    original = ctx.accept

    async def fail_third(envelope: Envelope):  # the bus drops after two confirms
        if len(ctx.accepted) == 2 and ctx.attempts == 2:
            ctx.attempts += 1
            ctx.down = True
        return await original(envelope)

    ctx.accept = fail_third  # type: ignore[method-assign]

    async def run() -> None:
        await side.poll_once()
        assert (config_dir / "inbox" / GOOD).exists()  # not consumed
        ctx.down = False
        await side.poll_once()

    asyncio.run(run())
    assert [e.data["customer_id"] for e in ctx.accepted] == [1042, 1043, 1044, 1045]
    assert (config_dir / "inbox" / "done" / GOOD).exists()


def test_json_goes_back_out_in_the_same_columns(config_dir: Path) -> None:
    layout: Layout = load_layout(config_dir / "layout.yaml")
    lines = (DATA / GOOD).read_text().splitlines()
    records = [layout.parse(line) for line in lines]
    assert [layout.format(r) for r in records] == lines
    (config_dir / "pickup").mkdir()
    settings = SPEC.outbound_settings.model_validate(
        {"directory": "pickup", "layout": "layout.yaml", "newline": "crlf"})

    async def send() -> None:
        async with http_client() as client:
            side = SPEC.outbound(settings, outbound_context(client, config_dir))
            await side.start()
            await side.send(Envelope(source="crm", type="customers", data=records,
                                     idempotencykey="batch-7"))
            with pytest.raises(PermanentError, match="field 'record_type' is missing"):
                await side.send(Envelope(source="crm", type="customers", data={"name": "X"}))
            with pytest.raises(PermanentError, match="more than 2 decimal places"):
                await side.send(Envelope(source="crm", type="customers",
                                         data={**records[0], "balance": 1.005}))
            await side.stop()

    asyncio.run(send())
    assert (config_dir / "pickup" / "batch-7.dat").read_bytes() == (DATA / GOOD).read_bytes()


def test_layout_problems_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "overlap.yaml"
    bad.write_text("fields:\n  - {name: a, start: 1, length: 4}\n"
                   "  - {name: b, start: 3, length: 2}\n")
    with pytest.raises(ValueError, match=r"overlap\.yaml: .*fields 'a' and 'b' overlap"):
        load_layout(bad)
