"""The README's first run, as a new user does it: the shipped config/ and routes/, the embedded
bus by default, the README's curl body, and the two outbox files it tells them to look at."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
from lxml import etree

from esb.adapters.testing.daemon import free_port

ROOT = Path(__file__).resolve().parents[2]


def readme_curl_body() -> bytes:
    """The JSON the README's curl sends (so the test follows the README if it changes)."""
    text = (ROOT / "README.md").read_text()
    match = re.search(r"curl -i -X POST (\S+)(.*?)-d '([^']+)'", text, re.S)
    assert match, "the README shows one curl that sends a message"
    assert match.group(1).endswith("/in/shop/order.created")
    return match.group(3).encode()


def test_shipped_config_takes_a_message_in_and_leaves_it_transformed(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "config", tmp_path / "config")
    shutil.copytree(ROOT / "routes", tmp_path / "routes")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESB_")}
    env.update({"ESB_LISTEN": f"127.0.0.1:{port}", "PYTHONUNBUFFERED": "1"})
    log_path = tmp_path / "daemon.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "esb.bus.cli.main", "run"],
                                cwd=tmp_path, env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60  # a start takes seconds on a busy machine
        while True:
            assert proc.poll() is None, log_path.read_text()
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)

        r = httpx.post(f"{url}/in/shop/order.created", content=readme_curl_body(),
                       headers={"Content-Type": "application/json",
                                "Idempotency-Key": "order-1001"})
        assert r.status_code == 202, r.text
        eid = r.json()["id"]

        erp = tmp_path / ".esb/outbox/erp/order-1001.xml"
        audit = tmp_path / ".esb/outbox/audit/order-1001.json"
        # the file adapter writes the payload, then the envelope beside it
        audit_event = tmp_path / ".esb/outbox/audit/order-1001.json.event.json"
        files = (erp, audit, audit_event)
        deadline = time.monotonic() + 20
        while not all(f.exists() for f in files) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert all(f.exists() for f in files), log_path.read_text()

        # erp: transformed (JSON → XML → the ERP's own format by the shipped stylesheet)
        order = etree.fromstring(erp.read_bytes())
        assert order.tag == "SalesOrder" and order.get("reference") == eid
        assert order.findtext("Customer") == "ACME" and order.findtext("Country") == "DE"
        assert [(line.get("sku"), line.get("qty")) for line in order.iter("Line")] == [
            ("A-1", "2")]
        # audit: the body as sent, and the envelope beside it
        assert orjson.loads(audit.read_bytes()) == orjson.loads(readme_curl_body())
        event = orjson.loads(audit_event.read_bytes())
        assert event["id"] == eid and event["type"] == "order.created"

        # the not-durable warning is loud
        assert "EMBEDDED BUS" in log_path.read_text() and "LOST" in log_path.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log_path.read_text()
