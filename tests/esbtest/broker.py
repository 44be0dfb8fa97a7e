"""The real RabbitMQ the suite runs against, and per-test isolation by name prefix."""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from kombu import Connection

from esb.bus.broker.topology import Topology

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/"


def bus_url() -> str:
    return os.environ.get("ESB_TEST_BUS_URL", DEFAULT_URL)


def broker_problem(url: str) -> str | None:
    """None when the broker answers an AMQP handshake; else why not."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5672), 3):
            pass
        with Connection(url, connect_timeout=5) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as exc:
        return f"RabbitMQ is not reachable at {parts.hostname}:{parts.port or 5672}: {exc}"
    return None


def new_prefix() -> str:
    return f"esbtest-{uuid.uuid4().hex[:10]}"


@dataclass
class RabbitScope:
    """A fresh name prefix on the shared broker; ``bus()`` records the destinations a test
    declares so ``cleanup()`` removes exactly what the test made."""

    url: str
    prefix: str = field(default_factory=new_prefix)
    destinations: set[str] = field(default_factory=set)
    partitions: dict[str, int] = field(default_factory=dict)

    def bus(self, *destinations: str, **extra: object) -> dict[str, object]:
        self.destinations.update(destinations)
        return {"url": self.url, "prefix": self.prefix, **extra}

    def topology(self) -> Topology:
        return Topology(self.prefix)

    def cleanup(self) -> None:
        topo = Topology(self.prefix)
        topo.delete(self.url, sorted(self.destinations))
        # ordered destinations have partition queues (up to 8 in the suite)
        topo.delete(self.url, sorted(self.destinations), {d: 8 for d in self.destinations})
