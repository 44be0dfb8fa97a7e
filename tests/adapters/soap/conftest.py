"""Fixtures for the soap tests: the spyne ERP peer, plain and behind WS-Security."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from soap_erp_peer import RECEIVED, ErpPeer


@pytest.fixture
def erp() -> Iterator[ErpPeer]:
    RECEIVED.clear()
    with ErpPeer() as peer:
        yield peer


@pytest.fixture
def secured_erp() -> Iterator[ErpPeer]:
    RECEIVED.clear()
    with ErpPeer(require_wsse=True) as peer:
        yield peer
