"""The backend is chosen once, from ``bus.url``: every service of one kind, nothing connected."""

from __future__ import annotations

from pathlib import Path

import yaml

from esb.bus.broker.embedded import EmbeddedBus
from esb.bus.broker.leases import BrokerLeases
from esb.bus.broker.rabbitmq import RabbitBus
from esb.bus.config.loader import load_config
from esb.bus.routing.store_embedded import FileRouteStore
from esb.bus.routing.store_rabbitmq import RabbitRouteStore
from esb.bus.runtime.backend import open_backend
from esb.bus.runtime.idempotency_log import IdempotencyLog
from esb.bus.runtime.local_leases import LocalLeases
from esb.bus.runtime.trace import MemoryTrace
from esb.bus.runtime.trace_rabbitmq import StreamTrace


def config(tmp_path: Path, url: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "esb.yaml"
    path.write_text(yaml.safe_dump({"bus": {"url": url, "state_dir": "state"},
                                    "sources": {}, "destinations": {}}))
    (tmp_path / "routes").mkdir()
    return load_config(path, env={}).config


def test_embedded_is_one_process_and_its_state_folder(tmp_path: Path) -> None:
    b = open_backend(config(tmp_path, "embedded"), "i1", snapshot=dict,
                     learn=lambda key, record: None)
    assert isinstance(b.bus, EmbeddedBus) and isinstance(b.trace, MemoryTrace)
    assert isinstance(b.routes, FileRouteStore)
    assert b.routes.path.is_relative_to(tmp_path / "state")
    assert isinstance(b.leases, LocalLeases)
    assert b.idempotency_log is None and b.presence.url is None


def test_rabbitmq_puts_every_service_on_the_broker(tmp_path: Path) -> None:
    url = "amqp://guest:guest@127.0.0.1:1/"
    b = open_backend(config(tmp_path, url), "i1", snapshot=dict,
                     learn=lambda key, record: None)
    assert isinstance(b.bus, RabbitBus) and isinstance(b.trace, StreamTrace)
    assert isinstance(b.routes, RabbitRouteStore) and isinstance(b.leases, BrokerLeases)
    assert isinstance(b.idempotency_log, IdempotencyLog)
    assert b.presence.url == url
