"""Ordered delivery: envelopes are hashed by a key onto partition queues, each consumed by one
consumer at a time across all instances (RabbitMQ single-active-consumer)."""

from __future__ import annotations

import zlib

from esb.bus.broker.base import destination_address
from esb.bus.config.model import OrderedConfig
from esb.bus.envelope import Envelope
from esb.bus.payload import field, scalar


class Partitioner:
    def __init__(self, destination: str, cfg: OrderedConfig) -> None:
        self.destination = destination
        self.partitions = cfg.partitions
        self.path = cfg.key

    def key(self, envelope: Envelope) -> str:
        """The ordering key's text; ``""`` (one partition) when the field is missing."""
        return scalar(field(envelope, self.path)) or ""

    def address(self, envelope: Envelope) -> str:
        # crc32, not hash(): the same key must land on the same partition in every process.
        p = zlib.crc32(self.key(envelope).encode()) % self.partitions
        return destination_address(self.destination, p)
