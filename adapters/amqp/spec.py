"""The amqp adapter, registered like any plugin (entry point ``esb.adapters: amqp``): a
legacy system's queues and exchanges on another RabbitMQ broker or vhost."""

from __future__ import annotations

from esb.adapters.amqp.inbound import AmqpInbound
from esb.adapters.amqp.outbound import AmqpOutbound
from esb.adapters.amqp.settings import AmqpInboundSettings, AmqpOutboundSettings
from esb.adapters.spec import AdapterSpec

SPEC = AdapterSpec(
    name="amqp",
    summary="A legacy system's RabbitMQ queues in, its exchanges out (publisher confirms), "
            "its RPC services as request/reply destinations",
    inbound_settings=AmqpInboundSettings,
    inbound=AmqpInbound,
    outbound_settings=AmqpOutboundSettings,
    outbound=AmqpOutbound,
    docs="docs/adapters.md#amqp",
    examples={
        "inbound": "url: ${LEGACY_AMQP_URL}\nqueue: erp.orders\n"
                   "type: order.created\nheaders: [x-erp-site]\n",
        "outbound": "url: ${LEGACY_AMQP_URL}\nexchange: erp\n"
                    "routing_key: orders.{type}\n",
    },
)
