"""The adapter test kit's contract suites run against the built-in graphql adapter.

Inbound: a ``createOrder`` mutation of orders.graphql posted over a real socket; a 2xx answer
is the acknowledgement (the side answers 503 ``BUS_UNAVAILABLE`` when the bus is down).
Outbound: the graphql-core CRM of test_graphql_outbound, served in the test's loop; a
customer named "busy" gets the retryable ``UPSTREAM_BUSY`` error, one named "taken"
``BAD_USER_INPUT``.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

import orjson
from test_graphql_outbound import DOCUMENT, crm_app

from esb.adapters.graphql.spec import SPEC
from esb.adapters.testing import (
    Delivered,
    FailureKind,
    HttpInboundContract,
    OutboundPeer,
    RequestContract,
    serve_asgi,
)
from esb.bus.envelope import Envelope

HERE = Path(__file__).parent


class TestGraphqlInboundContract(HttpInboundContract):
    spec = SPEC
    settings: ClassVar[dict[str, Any]] = {"path": "/graphql/orders", "sdl": "orders.graphql"}
    expected_type = "createOrder"
    http_path = "/graphql/orders"
    http_body = orjson.dumps({
        "query": "mutation Create($id: ID!) { createOrder(orderId: $id, amount: 12.5) }",
        "variables": {"id": "A-1"}})

    def prepare(self) -> None:
        shutil.copy(HERE / "orders.graphql", self.tmp_path / "orders.graphql")

    def check_envelope(self, envelope: Envelope) -> None:
        assert envelope.datacontenttype == "application/json"
        assert envelope.data == {"orderId": "A-1", "amount": 12.5, "priority": "LOW"}
        assert self.response is not None
        assert self.response.json() == {"data": {"createOrder": envelope.id}}


class TestGraphqlOutboundContract(RequestContract):
    spec = SPEC
    settings: ClassVar[dict[str, Any]] = {
        "url": "http://127.0.0.1:9/unused", "document": "upsert.graphql",
        "operation_name": "Upsert", "variables": {"input": "data.customer", "source": "$source"}}

    def prepare(self) -> None:
        (self.tmp_path / "upsert.graphql").write_text(DOCUMENT)

    def sample_envelope(self) -> Envelope:
        return self._customer("Ada")

    @staticmethod
    def _customer(name: str) -> Envelope:
        return Envelope(source="esb-test-kit", type="customer.changed",
                        datacontenttype="application/json",
                        data={"customer": {"id": "C-1", "name": name}})

    @contextlib.asynccontextmanager
    async def _crm(self, name: str) -> AsyncIterator[OutboundPeer]:
        received: list[dict[str, Any]] = []
        async with serve_asgi(crm_app(received)) as url:
            yield OutboundPeer(
                settings={"url": url + "/graphql"},
                delivered=lambda: [Delivered(r["headers"].get("idempotency-key"), r["body"])
                                   for r in received],
                envelope=self._customer(name))

    def accepting_peer(self) -> contextlib.AbstractAsyncContextManager[OutboundPeer]:
        return self._crm("Ada")

    def failing_peer(self, kind: FailureKind
                     ) -> contextlib.AbstractAsyncContextManager[OutboundPeer]:
        return self._crm("busy" if kind == "transient" else "taken")
