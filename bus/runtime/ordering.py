"""Ordered delivery: envelopes are hashed by a key onto partition queues, each consumed by one
consumer at a time across all instances (RabbitMQ single-active-consumer)."""

from __future__ import annotations

import zlib
from typing import Any

from esb.bus.broker.base import destination_address
from esb.bus.config.model import OrderedConfig
from esb.bus.envelope import Envelope


class Partitioner:
    def __init__(self, destination: str, cfg: OrderedConfig) -> None:
        self.destination = destination
        self.partitions = cfg.partitions
        self.path = cfg.key.split(".")

    def key(self, envelope: Envelope) -> str:
        value: Any = envelope.data if self.path[0] == "data" else getattr(
            envelope, self.path[0], None)
        for part in self.path[1:]:
            value = value.get(part) if isinstance(value, dict) else None
        return "" if value is None else str(value)

    def address(self, envelope: Envelope) -> str:
        # crc32, not hash(): the same key must land on the same partition in every process.
        p = zlib.crc32(self.key(envelope).encode()) % self.partitions
        return destination_address(self.destination, p)
