"""The adapter test kit's inbound contract run against the built-in amqp adapter, consuming
from a queue of the legacy vhost (made with ``rabbitmqctl``, see conftest.py).

The peer is the legacy broker: an input is one message published to a fresh queue, and it
counts as acknowledged once the queue holds it neither ready nor unacknowledged — which only
the broker knows, so the check asks ``rabbitmqctl list_queues``. Told to retry, the peer does
nothing: the adapter hands the message back and the broker redelivers it.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit

import orjson
import pytest
from esbtest.legacy_broker import LEGACY_GROUP, Legacy

from esb.adapters.amqp.spec import SPEC
from esb.adapters.testing import InboundContract
from esb.bus.envelope import Envelope

# ``legacy``, the legacy vhost, is conftest.py's: shared with test_amqp_adapter.
pytestmark = [pytest.mark.rabbitmq, pytest.mark.xdist_group(LEGACY_GROUP)]

ORDER = {"order": 7, "total": 9.5}


def messages_in(vhost: str, queue: str) -> int:
    """Ready plus unacknowledged messages of ``queue``, as the broker counts them."""
    listed = subprocess.run(
        ["rabbitmqctl", "list_queues", "-p", vhost, "-q", "--no-table-headers",
         "name", "messages"], capture_output=True, text=True, timeout=60, check=True).stdout
    for line in listed.splitlines():
        name, _, count = line.rpartition("\t")
        if name == queue:
            return int(count)
    raise AssertionError(f"queue {queue!r} is not on vhost {vhost!r}")


class TestAmqpInboundContract(InboundContract):
    spec = SPEC
    settings: ClassVar[dict[str, Any]] = {"url": "amqp://guest:guest@127.0.0.1:5672/",
                                          "queue": "unused"}
    expected_type = "kit.order"
    expected_source = "erp-system"  # the message's app_id
    wait = 10.0
    # A message the bus could not take comes back after retry_delay (100 ms): watch long
    # enough to see a second envelope if the adapter double-accepted.
    settle = 0.3

    @pytest.fixture(autouse=True)
    def _legacy(self, legacy: Legacy) -> None:
        if legacy.mode != "vhost":
            pytest.fail("needs rabbitmqctl on the broker's host (it alone can tell an "
                        "unacknowledged message from an acknowledged one); the suite's broker "
                        "is remote", pytrace=False)
        self.legacy = legacy

    def prepare(self) -> None:
        self.queue = self.legacy.queue("kit-in")
        self.message_id = f"kit-{uuid.uuid4().hex[:8]}"

    def inbound_settings(self) -> dict[str, object]:
        return {"url": self.legacy.url, "queue": self.queue, "retry_delay": "100ms",
                "reconnect_max": "500ms"}

    async def offer(self) -> None:
        await asyncio.to_thread(self.legacy.publish, self.queue, orjson.dumps(ORDER),
                                message_id=self.message_id, type="kit.order",
                                app_id="erp-system", content_type="application/json")

    async def acknowledged(self) -> bool:
        vhost = unquote(urlsplit(self.legacy.url).path.lstrip("/"))
        return await asyncio.to_thread(messages_in, vhost, self.queue) == 0

    async def retry(self) -> None:
        pass  # the adapter nacked with requeue: the broker redelivers on its own

    def check_envelope(self, envelope: Envelope) -> None:
        assert (envelope.id, envelope.idempotencykey) == (self.message_id, self.message_id)
        assert envelope.datacontenttype == "application/json"
        assert envelope.data == ORDER
