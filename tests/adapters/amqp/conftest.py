"""The legacy system's broker the amqp adapter's tests share: one vhost (made and deleted with
``rabbitmqctl``, about a second each) for every module marked with
:data:`esbtest.legacy_broker.LEGACY_GROUP`, which therefore run on one worker, one after the
other (tests/README.md, "Sharing an expensive resource"). Each test makes queues and exchanges
of its own names in it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from esbtest.legacy_broker import Legacy, legacy_broker


@pytest.fixture(scope="session")
def legacy() -> Iterator[Legacy]:
    with legacy_broker() as scope:
        yield scope
