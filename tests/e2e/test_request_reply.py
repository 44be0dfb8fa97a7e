"""Request/reply through a daemon: a REST GET facade in front of a REST backend, on the
embedded bus and on the real RabbitMQ (§12)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from esbtest.asgi import answer_late, serve_in_thread
from esbtest.daemon import DaemonProcess
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


class Backend:
    """A REST backend: ``/customers/{id}`` answers 200 JSON, or 404 (id 404), 500 (id 500),
    or after 30 s (id 999: never, for a caller, who hangs up long before); every call is
    recorded with its Idempotency-Key."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None]] = []
        self.lock = threading.Lock()

    def app(self) -> Starlette:
        async def customer(request: Request) -> Response:
            cid = request.path_params["id"]
            with self.lock:
                self.calls.append((cid, request.headers.get("idempotency-key")))
            if cid == "404":
                return JSONResponse({"error": "no such customer"}, 404)
            if cid == "500":
                return Response("database down", 500)
            if cid == "999":
                await answer_late(request, 30)
            return JSONResponse({"id": int(cid), "name": f"Customer {cid}", "tier": "gold"},
                                headers={"X-Backend": "crm", "ETag": f'"{cid}"'})

        return Starlette(routes=[Route("/customers/{id}", customer)])


@pytest.fixture
def backend() -> Iterator[tuple[Backend, str]]:
    b = Backend()
    with serve_in_thread(b.app()) as url:
        yield b, url


def facade(bus: dict[str, Any], backend_url: str) -> tuple[dict[str, Any], dict[str, Any]]:
    config = {
        "bus": bus,
        "sources": {
            "api": {"adapter": "rest", "path": "/api/customers/{id}", "methods": ["GET"],
                    "params": {"id": "integer"}},
            "shop": {"adapter": "rest", "path": "/in/shop"},
        },
        "destinations": {
            "crm": {"adapter": "rest", "method": "GET",
                    "url": backend_url + "/customers/{data.id}",
                    # Two attempts: an answer of 500 is the caller's 502 after the second,
                    # not after the retries the reply's whole timeout would leave room for.
                    "delivery": {"timeout": "5s", "backoff": {"initial": "0.2s", "max": "1s"},
                                 "max_attempts": 2, "breaker": False}},
            "audit": {"adapter": "rest", "url": backend_url + "/customers/1"},
        },
    }
    routes = {"r.yaml": {"routes": [
        {"name": "customer-lookup", "from": ["api"], "to": "crm", "reply": {"timeout": "3s"}},
        {"name": "orders", "from": ["shop"], "to": "audit"},
    ]}}
    return config, routes


@pytest.fixture(scope="module", params=["embedded", "rabbitmq"])
def served(request: pytest.FixtureRequest, module_daemon_factory: Any
           ) -> Iterator[tuple[Backend, DaemonProcess]]:
    """A backend and the facade daemon in front of it, on each bus, shared by the tests that
    call it: each asks for customers of its own (the rest of what they count)."""
    if request.param == "embedded":
        bus: dict[str, Any] = {"url": "embedded"}
    else:
        bus = request.getfixturevalue("module_rabbit").bus("crm", "audit")
    b = Backend()
    with serve_in_thread(b.app()) as url:
        config, routes = facade(bus, url)
        d = module_daemon_factory(config, routes, name=request.param).start()
        yield b, d
        d.stop()  # before the next bus's daemon starts


def test_rest_facade_answers_with_the_backends_reply(served: Any) -> None:
    b, d = served
    r = httpx.get(f"{d.url}/api/customers/42", timeout=10)
    assert r.status_code == 200, r.text
    assert r.json() == {"id": 42, "name": "Customer 42", "tier": "gold"}
    assert r.headers["x-backend"] == "crm"
    assert r.headers["etag"] == '"42"'
    assert r.headers["content-type"].startswith("application/json")
    # every request carries an idempotency key to the backend
    assert b.calls[-1][0] == "42" and b.calls[-1][1]

    r = httpx.get(f"{d.url}/api/customers/404", timeout=10)
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["kind"] == "not-found"

    r = httpx.get(f"{d.url}/api/customers/500", timeout=10)
    assert r.status_code == 502
    assert r.json()["kind"] == "backend" and "500" in r.json()["detail"]

    r = httpx.get(f"{d.url}/api/customers/abc", timeout=10)
    assert r.status_code == 400
    assert "integer" in r.json()["detail"]
    r = httpx.get(f"{d.url}/api/customers/1?x=%ff", timeout=10)
    assert r.status_code == 400

    # one-way routes are unchanged
    r = httpx.post(f"{d.url}/in/shop", json={"n": 1}, timeout=10)
    assert r.status_code == 202 and r.json()["status"] == "accepted"


def test_a_backend_that_never_answers_costs_the_caller_its_timeout(served: Any) -> None:
    b, d = served
    started = time.monotonic()
    r = httpx.get(f"{d.url}/api/customers/999", timeout=20)
    took = time.monotonic() - started
    assert r.status_code == 504, r.text
    assert r.json()["kind"] == "timeout"
    assert "3s" in r.json()["detail"]
    assert 2.9 <= took < 10  # the route's timeout, not the destination's 5 s or a hang
    calls = [c for c in b.calls if c[0] == "999"]
    assert len(calls) == 1  # no retry after the caller's deadline


#: The SOAP routes' reply timeout: what a call to the backend that never answers costs, and
#: one answering 500 too (retried until then). As short as the REST facade's, with the same
#: margin for the calls that are answered.
SOAP_TIMEOUT = "3s"
TO_CRM = [{"destination": "crm", "transform": [
    {"xml-to-json": {"strip_namespaces": True, "types": {"id": "integer"}}},
    {"jmespath": "GetCustomer"}]}]
SOAP_FACADE_ROUTES = {"soap.yaml": {"routes": [
    {"name": "soap-customer", "from": ["crm-soap"], "match": {"type": ["GetCustomer"]},
     "to": TO_CRM,
     "reply": {"timeout": SOAP_TIMEOUT, "transform": [
         {"jmespath": "{GetCustomerResult: @}"},
         {"json-to-xml": {"root": "GetCustomerResponse",
                          "namespaces": {"": "urn:example:crm"}}}]}},
    {"name": "soap-customer-bad-leg", "from": ["crm-soap-bad"], "to": TO_CRM,
     "reply": {"timeout": SOAP_TIMEOUT}},
    {"name": "soap-customer-invalid", "from": ["crm-soap-invalid"], "to": TO_CRM,
     "reply": {"timeout": SOAP_TIMEOUT, "transform": [
         {"jmespath": "{GetCustomerResult: {nickname: name}}"},
         {"json-to-xml": {"root": "GetCustomerResponse",
                          "namespaces": {"": "urn:example:crm"}}}]}},
]}}


def test_zeep_calls_a_soap_endpoint_answered_by_a_rest_backend(
        daemon_factory: Any, backend: Any, rabbit: Any) -> None:
    """The SOAP face of a REST service: zeep calls esb's SOAP endpoint (the WSDL of a legacy
    customer service), the answer is the operation's real output message built from the REST
    backend's JSON, checked against the WSDL's output schema; failures are SOAP faults."""
    import zeep
    import zeep.exceptions
    from esbtest.customer_service import CustomerPeer

    with CustomerPeer() as legacy:  # only for its WSDL: the REST backend answers
        wsdl = httpx.get(legacy.url + "?wsdl", timeout=10).text
    b, url = backend
    config, _ = facade(rabbit.bus("crm", "audit"), url)
    config["sources"] = {
        "crm-soap": {"adapter": "soap", "path": "/soap/crm", "wsdl": "wsdl/crm.wsdl"},
        "crm-soap-bad": {"adapter": "soap", "path": "/soap/crm-raw", "wsdl": "wsdl/crm.wsdl"},
        "crm-soap-invalid": {"adapter": "soap", "path": "/soap/crm-invalid",
                             "wsdl": "wsdl/crm.wsdl"}}
    d = daemon_factory(config, SOAP_FACADE_ROUTES, files={"wsdl/crm.wsdl": wsdl}).start()
    client = zeep.Client(f"{d.url}/soap/crm?wsdl")
    customer = client.service.GetCustomer(id=42)
    assert (customer.id, customer.name, customer.tier) == (42, "Customer 42", "gold")
    assert b.calls[-1][0] == "42"

    with pytest.raises(zeep.exceptions.Fault) as fault:  # REST 404 → a Client fault
        client.service.GetCustomer(id=404)
    assert "404" in fault.value.message and "Client" in (fault.value.code or "")
    with pytest.raises(zeep.exceptions.Fault) as fault:  # REST 500 → a Server fault
        client.service.GetCustomer(id=500)
    assert "Server" in (fault.value.code or "")
    with pytest.raises(zeep.exceptions.Fault) as fault:  # no answer in time → Server fault
        client.service.GetCustomer(id=999)
    assert f"within {SOAP_TIMEOUT}" in fault.value.message

    # a reply that is not the output message (no reply leg builds it): a Server fault
    raw = zeep.Client(f"{d.url}/soap/crm-raw?wsdl")
    with pytest.raises(zeep.exceptions.Fault) as fault:
        raw.service.GetCustomer(id=1)
    assert "not XML" in fault.value.message
    # one that does not match the WSDL's output schema: a Server fault saying so
    invalid = zeep.Client(f"{d.url}/soap/crm-invalid?wsdl")
    with pytest.raises(zeep.exceptions.Fault) as fault:
        invalid.service.GetCustomer(id=1)
    assert "output schema" in fault.value.message and "nickname" in fault.value.message
