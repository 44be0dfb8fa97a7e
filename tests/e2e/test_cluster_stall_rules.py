"""How the cluster tests tell a broker's stall from esb's
(:func:`test_cluster.nacking_quorum_queues`), on fixed broker listings: no cluster needed, so
not marked ``cluster``."""

from __future__ import annotations

import time
from typing import Any

import pytest
from test_cluster import Fleet, Load, nacking_quorum_queues

from esb.bus.broker.topology import Topology


class _ListedCluster:
    """What :func:`nacking_quorum_queues` asks of a cluster, from a fixed listing."""

    def __init__(self, listing: dict[str, dict[str, Any]], running: list[str]) -> None:
        self.listing, self.running = listing, running

    def replicated(self, prefix: str) -> dict[str, dict[str, Any]]:
        return self.listing

    def running_nodes(self) -> list[str]:
        return self.running


@pytest.mark.parametrize(("why", "leader", "online", "found"), [
    ("nack", "n1", ["n1", "n2"], True),  # the broker refusing: leader and majority up
    ("nack", "n3", ["n1", "n2"], False),  # its leader is on the lost node: no leader
    ("nack", "n1", ["n1"], False),  # a minority online
    ("mixed", "n1", ["n1", "n2"], False),  # some refusals were something else
    ("other", "n1", ["n1", "n2"], False),
])
def test_a_stall_is_the_brokers_only_when_its_quorum_queue_could_take_the_orders(
        why: str, leader: str, online: list[str], found: bool) -> None:
    prefix = "esbtest-x"
    queue = Topology(prefix).queue("dest.out")
    cluster = _ListedCluster({queue: {"type": "quorum", "leader": leader,
                                      "members": ["n1", "n2", "n3"], "online": online}},
                             ["n1", "n2"])
    nack = ("POST: HTTP 503: the message was not accepted (the broker refused the message for "
            "dest.out (nack)); retry later")
    other = "POST: HTTP 503: the bus is not connected; retry later"
    kinds = {"nack": [nack] * 4, "mixed": [nack, other, nack], "other": [other] * 3}
    load = Load([], "t")
    now = time.monotonic()
    load.refused = [(f"t-{i}", 0, text, now - 1) for i, text in enumerate(kinds[why])]
    fleet = Fleet(cluster, prefix, [])  # type: ignore[arg-type]
    assert nacking_quorum_queues(fleet, load, now - 60) == ([queue] if found else [])
