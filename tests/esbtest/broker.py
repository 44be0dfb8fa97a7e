"""The real RabbitMQ the suite runs against, and per-test isolation by name prefix."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
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


#: Set by the run's controller (tests/conftest.py) for its workers: the first characters of
#: every prefix the run makes, so that what a run left behind can be found and removed.
RUN_TAG_VARIABLE = "ESB_TEST_RUN_TAG"


def new_prefix() -> str:
    tag = os.environ.get(RUN_TAG_VARIABLE, "")[:4]
    return f"esbtest-{tag}{uuid.uuid4().hex[:10]}"  # 40 random bits whatever the tag


def sweep(url: str, tag: str) -> int:
    """Remove every queue and exchange of the default vhost whose name starts with the run's
    prefixes (``esbtest-<tag>``): what no test's own clean-up knew of (a source's state queue,
    a test killed by its timeout). Listing needs ``rabbitmqctl`` on this machine (AMQP cannot
    list), so a broker elsewhere is left as the tests' clean-ups leave it. Returns how many
    were removed."""
    ctl = shutil.which("rabbitmqctl")
    host = urlsplit(url).hostname or "127.0.0.1"
    if not tag or ctl is None or host not in ("127.0.0.1", "localhost", "::1"):
        return 0
    start = f"esbtest-{tag}"

    def names(kind: str) -> list[str]:
        out = subprocess.run([ctl, kind, "-q", "name"], capture_output=True, text=True,
                             timeout=60, check=False).stdout
        return [n for n in out.split() if n.startswith(start)]

    queues, exchanges = names("list_queues"), names("list_exchanges")
    with Connection(url, connect_timeout=5) as conn:
        channel = conn.default_channel
        for name in queues:
            channel.queue_delete(name)
        for name in exchanges:
            channel.exchange_delete(name)
    return len(queues) + len(exchanges)


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
