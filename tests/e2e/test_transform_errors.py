"""A transformer error is permanent: dead-lettered once, with the step's name, never retried."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
from test_delivery_faults import cli

ROOT = Path(__file__).resolve().parents[2]


def test_failing_step_dead_letters_with_its_name(sink: Any, daemon_factory: Any) -> None:
    config = {
        "bus": {"url": "embedded"},
        "sources": {"shop": {"adapter": "rest", "path": "/in/shop"}},
        "destinations": {"erp": {"adapter": "rest", "url": f"{sink.url}/erp"}},
    }
    stylesheet = str(ROOT / "config/xslt/canonical-to-erp.xsl")
    routes = {"r.yaml": {"routes": [{
        "name": "to-erp", "match": {"type": ["order"]},
        # JSON straight into XSLT: the step refuses it (json-to-xml is missing on purpose)
        "to": [{"destination": "erp", "transform": [{"xslt": stylesheet}]}]}]}}
    d = daemon_factory(config, routes).start()
    r = httpx.post(f"{d.url}/in/shop/order", json={"customer": "ACME"})
    assert r.status_code == 202  # accepted: it is safe in the DLQ
    deadline = time.monotonic() + 10
    items: list[Any] = []
    while time.monotonic() < deadline and not items:
        items = json.loads(cli(d, "dlq", "list", "--json").stdout)
        time.sleep(0.2)
    assert len(items) == 1
    item = items[0]
    assert item["id"] == r.json()["id"]
    assert item["route"] == "to-erp" and item["destination"] == "erp"
    assert "xslt" in item["error"] and "XML payload" in item["error"]
    assert item["attempts"] == 0  # never sent, never retried
    time.sleep(1)
    assert sink.requests == []
