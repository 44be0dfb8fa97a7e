"""The fixedwidth adapter honours esb's adapter contract (the kit's suites, reused)."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

from esb.adapters.testing import Delivered, InboundContract, OutboundContract, OutboundPeer
from esb.bus.envelope import Envelope

from esb_adapter_fixedwidth.spec import SPEC

DATA = Path(__file__).parent / "data"
RECORD = "CM00001042ACME TOOLING GMBH   DE0000125007519980301A"
PARSED = {"record_type": "CM", "customer_id": 1042, "name": "ACME TOOLING GMBH",
          "country": "DE", "balance": 12500.75, "opened": "1998-03-01", "status": "A"}


class WithLayout:
    def prepare(self) -> None:
        shutil.copy(DATA / "custmast.layout.yaml", self.tmp_path / "layout.yaml")


class TestFixedWidthInbound(WithLayout, InboundContract):
    spec = SPEC
    settings = {"directory": "inbox", "layout": "layout.yaml", "type": "customer.updated",
                "pattern": "*.DAT", "poll_interval": 0.05}
    expected_type = "customer.updated"

    @property
    def dropped(self) -> Path:
        return self.tmp_path / "inbox" / "CUSTMAST.D240611.DAT"

    async def offer(self) -> None:
        """The mainframe transfer writes under a temporary name, then renames."""
        tmp = self.dropped.with_name(".CUSTMAST.D240611.DAT.part")
        tmp.write_text(RECORD + "\r\n", encoding="ascii")
        tmp.rename(self.dropped)

    async def acknowledged(self) -> bool:
        return not self.dropped.exists() and \
            (self.dropped.parent / "done" / self.dropped.name).exists()

    async def retry(self) -> None:
        """The file stayed in the inbox: the next poll takes it; the peer does nothing."""

    def check_envelope(self, envelope: Envelope) -> None:
        assert envelope.data == PARSED
        assert envelope.subject == "CUSTMAST.D240611.DAT:1"
        assert envelope.idempotencykey and envelope.idempotencykey.endswith(":1")


class TestFixedWidthOutbound(WithLayout, OutboundContract):
    spec = SPEC
    settings = {"directory": "pickup", "layout": "layout.yaml"}

    def sample_envelope(self) -> Envelope:
        return Envelope(source="crm", type="customer.updated", data=dict(PARSED),
                        datacontenttype="application/json")

    def _delivered(self, folder: Path) -> list[Delivered]:
        return [Delivered(key=p.name.removesuffix(".dat"), body=p.read_text())
                for p in sorted(folder.glob("*.dat"))]

    @contextlib.asynccontextmanager
    async def accepting_peer(self) -> AsyncIterator[OutboundPeer]:
        folder = self.tmp_path / "pickup"
        folder.mkdir(exist_ok=True)
        yield OutboundPeer(delivered=lambda: self._delivered(folder))

    @contextlib.asynccontextmanager
    async def failing_peer(self, kind: str) -> AsyncIterator[OutboundPeer | None]:
        if kind == "transient":  # the share is not mounted: the folder is not there
            yield OutboundPeer(settings={"directory": "not-mounted"})
            return
        (self.tmp_path / "pickup").mkdir(exist_ok=True)
        too_long = {**PARSED, "name": "A NAME FAR LONGER THAN TWENTY COLUMNS"}
        yield OutboundPeer(envelope=self.sample_envelope().model_copy(
            update={"data": too_long}))
