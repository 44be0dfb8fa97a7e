"""The pytest plugin of esb's adapter test kit (entry point ``pytest11: esb``).

Fixtures:

* ``esb_bus`` — a started :class:`~esb.bus.broker.embedded.EmbeddedBus` with the kit's
  destination queue (``dest.kit``); closed afterwards.
* ``esb_inbound_context`` — a :class:`~esb.adapters.testing.RecordingInboundContext` whose
  ``accept`` publishes to ``esb_bus``; set ``.down = True`` to make it raise BusUnavailable,
  ``.hold()``/``.release()`` to keep it from returning.
* ``esb_outbound_context`` — an :class:`~esb.adapters.spec.OutboundContext` with a real
  httpx client (closed afterwards, never by the adapter).
* ``esb_daemon_factory`` — ``make(config, routes=None, name="d") -> EsbDaemon``: a real
  ``esb run`` subprocess in a folder under ``tmp_path``; ``.start()`` waits for ``/readyz``;
  every daemon is stopped with SIGTERM at teardown.

The async fixtures need pytest-asyncio (``pip install 'esb[testing]'``); the contract suites do
not (each test runs its own event loop).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from esb.adapters.spec import OutboundContext
from esb.adapters.testing.context import (
    KIT_DESTINATION,
    RecordingInboundContext,
    http_client,
    outbound_context,
)
from esb.adapters.testing.daemon import EsbDaemon, daemon_factory
from esb.bus.broker.embedded import EmbeddedBus

try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - the fixtures explain what is missing
    pytest_asyncio = None


def _needs_pytest_asyncio(name: str) -> Any:
    @pytest.fixture(name=name)
    def missing() -> None:
        pytest.fail(f"the {name} fixture needs pytest-asyncio: pip install 'esb[testing]'",
                    pytrace=False)

    return missing


if pytest_asyncio is not None:

    @pytest_asyncio.fixture
    async def esb_bus() -> AsyncIterator[EmbeddedBus]:
        """A started embedded bus with the kit's destination queue."""
        bus = EmbeddedBus()
        await bus.start([KIT_DESTINATION])
        yield bus
        await bus.close()

    @pytest_asyncio.fixture
    async def esb_outbound_context(tmp_path: Path) -> AsyncIterator[OutboundContext]:
        """An outbound context over a real httpx client; ``config_dir`` is ``tmp_path``."""
        async with http_client() as client:
            yield outbound_context(client, tmp_path)

else:  # pragma: no cover
    esb_bus = _needs_pytest_asyncio("esb_bus")
    esb_outbound_context = _needs_pytest_asyncio("esb_outbound_context")


@pytest.fixture
def esb_inbound_context(esb_bus: EmbeddedBus, tmp_path: Path) -> RecordingInboundContext:
    """A recording inbound context publishing to ``esb_bus``; ``config_dir`` is
    ``tmp_path``."""
    return RecordingInboundContext(config_dir=tmp_path, bus=esb_bus)


@pytest.fixture
def esb_daemon_factory(tmp_path: Path) -> Iterator[Callable[..., EsbDaemon]]:
    """``make(config, routes=None, name="d", **kw)`` → an unstarted :class:`EsbDaemon` in
    ``tmp_path / name``; all are stopped (SIGTERM) at teardown."""
    with daemon_factory(tmp_path, EsbDaemon) as make:
        yield make
