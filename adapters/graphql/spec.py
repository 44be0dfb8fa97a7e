"""The ``graphql`` adapter's spec (entry point ``esb.adapters.graphql.spec:SPEC``)."""

from __future__ import annotations

from esb.adapters.graphql.inbound import GraphqlInbound
from esb.adapters.graphql.outbound import GraphqlOutbound
from esb.adapters.graphql.settings import GraphqlInboundSettings, GraphqlOutboundSettings
from esb.adapters.spec import AdapterSpec

SPEC = AdapterSpec(
    name="graphql",
    summary="GraphQL: mutations of an owner's SDL in (one envelope per field); a query or "
            "mutation document out (errors fail it even under HTTP 200).",
    inbound_settings=GraphqlInboundSettings,
    inbound=GraphqlInbound,
    outbound_settings=GraphqlOutboundSettings,
    outbound=GraphqlOutbound,
    docs="docs/adapters.md#graphql",
    examples={
        "inbound": "path: /graphql/orders\nsdl: orders.graphql\n",
        "outbound": "url: https://crm.example.com/graphql\ndocument: upsert.graphql\n"
                    "variables: {input: data}\n",
    },
)
