"""Secrets from ${ENV} never show up: not in logs, problem bodies, traces, DLQ or status."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
from test_delivery_faults import cli

TOKEN = "s3cr3t-bearer-0123456789"
ADMIN = "adm1n-t0ken-0123456789"


def test_secrets_stay_secret(rabbit: Any, sink: Any, daemon_factory: Any) -> None:
    sink.status_for = lambda rec: (
        (400, {}) if rec.headers.get("authorization") == f"Bearer {TOKEN}" else (500, {}))
    config = {
        "bus": rabbit.bus("out"),
        "admin": {"token": "${ESB_TEST_ADMIN}"},
        "sources": {"shop": {"adapter": "rest", "path": "/in/shop",
                             "auth": {"type": "api_key", "header": "X-API-Key",
                                      "keys": ["${ESB_TEST_INBOUND_KEY}"]}}},
        "destinations": {"out": {"adapter": "rest", "url": sink.url + "/out",
                                 "auth": {"type": "bearer", "token": "${ESB_TEST_TOKEN}"}}},
    }
    routes = {"r.yaml": {"routes": [{"name": "all", "to": ["out"]}]}}
    d = daemon_factory(config, routes, env={"ESB_TEST_TOKEN": TOKEN, "ESB_TEST_ADMIN": ADMIN,
                                            "ESB_TEST_INBOUND_KEY": "inb0und-key-987654"},
                        admin_token=ADMIN)
    d.start()
    bad = httpx.post(f"{d.url}/in/shop/x", json={}, headers={"X-API-Key": "wrong-key-1"})
    assert bad.status_code == 401 and "wrong-key-1" not in bad.text
    ok = httpx.post(f"{d.url}/in/shop/x", json={"n": 1},
                    headers={"X-API-Key": "inb0und-key-987654", "Idempotency-Key": "s-1"})
    assert ok.status_code == 202
    eid = ok.json()["id"]
    # the destination refuses (400): the envelope is dead-lettered with the error
    env = {"ESB_ADMIN_URL": d.url, "ESB_ADMIN_TOKEN": ADMIN}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        listed = json.loads(cli(d, "dlq", "list", "--json", env=env).stdout)
        if listed:
            break
        time.sleep(0.3)
    outputs = [cli(d, "dlq", "show", eid, "--json", env=env).stdout,
               cli(d, "status", "--json", env=env).stdout,
               cli(d, "trace", eid, "--json", env=env).stdout,
               httpx.get(f"{d.url}/metrics").text]
    d.stop()
    outputs.append(d.log())
    for text in outputs:
        for secret in (TOKEN, ADMIN, "inb0und-key-987654"):
            assert secret not in text
    assert sink.requests, "the destination was called with the token"
