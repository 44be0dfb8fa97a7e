"""Fixtures the runtime's broker-backed tests share."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pika
import pytest


@pytest.fixture
def prefix(rabbit_url: str) -> Iterator[str]:
    """A fresh bus prefix whose presence exchange is removed afterwards (a module that makes
    more on the broker defines its own)."""
    name = f"esbtest-pr-{uuid.uuid4().hex[:10]}"
    yield name
    conn = pika.BlockingConnection(pika.URLParameters(rabbit_url))
    try:
        conn.channel().exchange_delete(f"{name}.presence")
    finally:
        conn.close()
