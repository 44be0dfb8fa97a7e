"""A legacy SOAP service (spyne, ``GetCustomer`` with faults for unknown ids) behind a REST GET
facade, through daemons on the real RabbitMQ; and the death of the instance that consumed a
request while its caller waits on another instance (§12)."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from esbtest.customer_service import CustomerPeer
from esbtest.waiting import wait_until

#: Reply leg by XSLT: the SOAP output message → a small XML document.
CUSTOMER_XSL = """<?xml version="1.0"?>
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:c="urn:example:crm" exclude-result-prefixes="c">
  <xsl:template match="/c:GetCustomerResponse/c:GetCustomerResult">
    <customer id="{c:id}" name="{c:name}" tier="{c:tier}"/>
  </xsl:template>
</xsl:stylesheet>
"""

#: Reply leg by Python: a function of the deployment's own.
STEPS_PY = """
def shout(envelope):
    data = dict(envelope.data["customer"])
    data["name"] = data["@name"].upper()
    return envelope.model_copy(update={"data": data})
"""


@pytest.fixture
def crm() -> Iterator[CustomerPeer]:
    with CustomerPeer(slow_seconds=4) as peer:
        yield peer


def facade_config(bus: dict[str, Any], crm: CustomerPeer) -> dict[str, Any]:
    return {
        "bus": bus,
        "sources": {
            "customers-api": {"adapter": "rest", "path": "/api/customers/{id}",
                              "methods": ["GET"], "params": {"id": "integer"}},
            "customers-v2": {"adapter": "rest", "path": "/api/v2/customers/{id}",
                             "methods": ["GET"], "params": {"id": "integer"}},
        },
        "destinations": {
            "crm": {"adapter": "soap", "wsdl": crm.url + "?wsdl", "allow_network_wsdl": True,
                    "operation": "GetCustomer",
                    "delivery": {"timeout": "20s", "backoff": {"initial": "0.2s"}}},
        },
    }


# Timeouts far above the backend's 4 s: on a machine the whole suite loads, a cold first call
# (WSDL, connections) plus the slow answer came close to 10 s, and a caller's 504 there says
# nothing about what the tests check (prompt interruption, one backend call per request).
ROUTES = {"facade.yaml": {"routes": [
    {"name": "customer-json", "from": ["customers-api"], "to": "crm",
     "reply": {"timeout": "30s", "transform": [
         {"xml-to-json": {"strip_namespaces": True,
                          "types": {"id": "integer", "creditLimit": "number"}}},
         {"jmespath": "GetCustomerResponse.GetCustomerResult"}]}},
    {"name": "customer-v2", "from": ["customers-v2"], "to": "crm",
     "reply": {"timeout": "30s", "transform": [
         {"xslt": "xslt/customer.xsl"}, "xml-to-json", "steps:shout"]}},
]}}

FILES = {"xslt/customer.xsl": CUSTOMER_XSL, "steps.py": STEPS_PY}


def test_rest_get_facade_on_a_soap_service(daemon_factory: Any, rabbit: Any,
                                           crm: CustomerPeer) -> None:
    d = daemon_factory(facade_config(rabbit.bus("crm"), crm), ROUTES, files=FILES).start()
    r = httpx.get(f"{d.url}/api/customers/7", timeout=20)
    assert r.status_code == 200, r.text
    assert r.json() == {"id": 7, "name": "Customer 7", "tier": "gold", "creditLimit": 7000}
    assert crm.calls[-1][0] == 7 and crm.calls[-1][1]  # the idempotency key went along

    r = httpx.get(f"{d.url}/api/v2/customers/8", timeout=20)
    assert r.status_code == 200, r.text
    assert r.json() == {"@id": "8", "@name": "Customer 8", "@tier": "silver",
                        "name": "CUSTOMER 8"}

    # a SOAP fault: 502 problem+json with the fault string, and no retry (Client fault)
    before = len(crm.calls)
    r = httpx.get(f"{d.url}/api/customers/123", timeout=20)
    assert r.status_code == 502, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert "no customer 123" in r.json()["detail"]
    assert r.json()["kind"] == "backend"
    assert len(crm.calls) == before + 1

    r = httpx.get(f"{d.url}/api/customers/seven", timeout=20)
    assert r.status_code == 400


def test_killed_consumer_instance_gives_its_callers_a_prompt_error(
        daemon_factory: Any, rabbit: Any, crm: CustomerPeer) -> None:
    """Six slow calls through instance A; RabbitMQ hands about half of them to instance B.
    B is killed (-9) while the backend works on them: A's callers of those get an
    'interrupted' 502 at once (not a hang, not a second backend call); the rest succeed."""
    config = facade_config(rabbit.bus("crm"), crm)
    # Both start at once (a start is mostly waiting on imports and the broker).
    a = daemon_factory(config, ROUTES, files=FILES, name="a").start(wait=False)
    b = daemon_factory(config, ROUTES, files=FILES, name="b").start(wait=False)
    a.wait_ready(60)
    b.wait_ready(60)
    ids = list(range(701, 707))
    with concurrent.futures.ThreadPoolExecutor(len(ids)) as pool:
        started = time.monotonic()
        futures = {i: pool.submit(_timed_get, f"{a.url}/api/customers/{i}") for i in ids}
        wait_until(lambda: len(crm.calls) >= len(ids), "every slow call reached the backend",
                   timeout=20)
        b.kill()
        killed_at = time.monotonic() - started
        results = {i: f.result(timeout=45) for i, f in futures.items()}
    statuses = {i: r[0].status_code for i, r in results.items()}
    interrupted = [i for i, (r, _) in results.items() if r.status_code == 502]
    assert interrupted, statuses  # some went to B
    assert set(statuses.values()) <= {200, 502}, statuses
    for i in interrupted:
        response, at = results[i]
        assert response.json()["kind"] == "interrupted"
        assert "may or may not" in response.json()["detail"]
        assert at - killed_at < 3.5  # promptly: well before the backend's 4 s or the 30 s
    # nobody called the backend twice for one request
    assert sorted(c for c, _ in crm.calls) == ids
    # and nothing is left waiting on A
    metrics = httpx.get(f"{a.url}/metrics", timeout=10).text
    assert "esb_waiting_callers 0.0" in metrics


def _timed_get(url: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    r = httpx.get(url, timeout=45)
    return r, time.monotonic() - started
