"""esb's adapter test kit: contract suites a plugin reuses, context doubles and fixtures.

A plugin proves it honours the adapter contract by subclassing the suites::

    from esb.adapters.testing import OutboundContract, InboundContract

    class TestMyOutbound(OutboundContract):
        spec = MY_SPEC
        ...

The pytest plugin (:mod:`esb.adapters.testing.plugin`, entry point ``pytest11: esb``) adds the
fixtures ``esb_bus``, ``esb_inbound_context``, ``esb_outbound_context`` and
``esb_daemon_factory``. See docs/adapters.md, "Writing an adapter".
"""

import pytest

# Rewrite the suites' asserts so a failing contract shows the values it compared.
pytest.register_assert_rewrite("esb.adapters.testing.spec_contract",
                               "esb.adapters.testing.outbound_contract",
                               "esb.adapters.testing.inbound_contract",
                               "esb.adapters.testing.http_contracts")

from esb.adapters.testing.context import (  # noqa: E402
    KIT_DESTINATION,
    RecordingInboundContext,
    http_client,
    outbound_context,
)
from esb.adapters.testing.daemon import EsbDaemon  # noqa: E402
from esb.adapters.testing.http_contracts import (  # noqa: E402
    HttpInboundContract,
    HttpOutboundContract,
)
from esb.adapters.testing.inbound_contract import InboundContract  # noqa: E402
from esb.adapters.testing.outbound_contract import (  # noqa: E402
    Delivered,
    FailureKind,
    OutboundContract,
    OutboundPeer,
    RequestContract,
)
from esb.adapters.testing.serve import serve_asgi, serve_inbound  # noqa: E402
from esb.adapters.testing.spec_contract import SpecContract, eventually  # noqa: E402

__all__ = [
                               "KIT_DESTINATION",
                               "Delivered",
                               "EsbDaemon",
                               "FailureKind",
                               "HttpInboundContract",
                               "HttpOutboundContract",
                               "InboundContract",
                               "OutboundContract",
                               "OutboundPeer",
                               "RecordingInboundContext",
                               "RequestContract",
                               "SpecContract",
                               "eventually",
                               "http_client",
                               "outbound_context",
                               "serve_asgi",
                               "serve_inbound",
]
