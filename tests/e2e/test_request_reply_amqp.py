"""A REST facade over a legacy AMQP RPC service, through a daemon on the real RabbitMQ
(§12): the legacy system is a tiny responder on a vhost of its own; its answer, its error
replies, a bad answer, a responder that is down and a reply after the caller's deadline."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from esbtest.amqp_responder import Answer, Responder
from esbtest.legacy_broker import Legacy, legacy_broker

pytestmark = pytest.mark.rabbitmq


def customer_service(props: Any, body: bytes) -> Answer | None:
    cid = orjson.loads(body)["id"]
    if cid == 404:
        return 0, {"status": 404}, b"no customer 404", "text/plain"
    if cid == 7:
        return 0, {"status": "ok"}, b'{"id": 7}', "application/json"  # a bad answer
    # After the late route's 1 s (which runs from before the request reached the responder).
    delay = 1.5 if cid == 999 else 0
    return delay, {"x-erp-site": "north"}, orjson.dumps(
        {"id": cid, "name": f"Customer {cid}"}), "application/json"


@pytest.fixture(scope="module")
def legacy() -> Iterator[Legacy]:
    with legacy_broker() as scope:
        yield scope


@pytest.fixture(scope="module")
def facade(legacy: Legacy, module_rabbit: Any, module_daemon_factory: Any
           ) -> Iterator[tuple[Any, Responder]]:
    queue, idle = legacy.queue("customers"), legacy.queue("nobody-consumes")
    delivery = {"timeout": "5s", "breaker": False}
    config = {
        "bus": module_rabbit.bus("erp", "erp-down"),
        "sources": {
            "api": {"adapter": "rest", "path": "/api/customers/{id}", "methods": ["GET"],
                    "params": {"id": "integer"}},
            "api-late": {"adapter": "rest", "path": "/api/late/customers/{id}",
                         "methods": ["GET"], "params": {"id": "integer"}},
            "api-down": {"adapter": "rest", "path": "/api/down/{id}", "methods": ["GET"],
                         "params": {"id": "integer"}}},
        "destinations": {
            "erp": {"adapter": "amqp", "url": "${LEGACY_AMQP_URL}", "routing_key": queue,
                    "delivery": delivery},
            "erp-down": {"adapter": "amqp", "url": "${LEGACY_AMQP_URL}", "routing_key": idle,
                         "delivery": delivery}},
    }
    # The answered calls get a timeout far above their round trip: on a loaded machine a cold
    # call can take a second, and a 504 there says nothing the tests check. The short one is
    # the late route's, for the reply that comes after it.
    routes = {"r.yaml": {"routes": [
        {"name": "customer", "from": ["api"], "to": "erp",
         "reply": {"timeout": "30s", "transform": [{"jmespath": "{customer: name}"}]}},
        {"name": "customer-late", "from": ["api-late"], "to": "erp",
         "reply": {"timeout": "1s"}},
        {"name": "customer-down", "from": ["api-down"], "to": "erp-down",
         "reply": {"timeout": "1s"}}]}}
    with Responder(legacy.url, queue, customer_service) as responder:
        yield module_daemon_factory(config, routes, env={
            "LEGACY_AMQP_URL": legacy.url}).start(), responder


def get(d: Any, path: str) -> httpx.Response:
    return d.http.get(f"{d.url}{path}", timeout=30)


def test_the_legacy_systems_answer_reaches_the_rest_caller(facade: Any) -> None:
    d, responder = facade
    r = get(d, "/api/customers/42")
    assert r.status_code == 200, r.text
    assert r.json() == {"customer": "Customer 42"}
    assert r.headers["x-erp-site"] == "north"
    props, body = responder.requests[-1]
    assert orjson.loads(body) == {"id": 42} and props.headers["idempotency-key"]


def test_error_replies_and_a_bad_answer_are_mapped(facade: Any) -> None:
    d, _ = facade
    r = get(d, "/api/customers/404")
    assert r.status_code == 404 and r.json()["kind"] == "not-found"
    assert "no customer 404" in r.json()["detail"]
    r = get(d, "/api/customers/7")
    assert r.status_code == 502 and r.json()["kind"] == "backend"
    assert "bad reply from the legacy system" in r.json()["detail"]


def test_a_responder_that_is_down_costs_the_caller_its_timeout(facade: Any) -> None:
    d, _ = facade
    r = get(d, "/api/down/1")
    assert r.status_code == 504, r.text
    assert r.json()["kind"] == "timeout" and "erp-down" in r.json()["detail"]


def test_a_reply_after_the_deadline_reaches_no_other_caller(facade: Any) -> None:
    d, responder = facade
    taken = len(responder.requests)
    r = get(d, "/api/late/customers/999")  # answered 1.5 s later, past the route's 1 s
    assert r.status_code == 504 and r.json()["kind"] == "timeout"

    def late_reply_sent() -> bool:
        return any(orjson.loads(body)["id"] == 999 for _, body in responder.answered)

    asked, got = [], []
    after = 0  # callers since the late reply was sent
    cid = 500
    while after < 5:  # callers keep coming while the late reply arrives, and a while after
        asked.append(cid)
        got.append(get(d, f"/api/customers/{cid}").json())
        cid += 1
        after += late_reply_sent()
        time.sleep(0.1)
        assert len(asked) < 300, "the late reply was never sent"
    assert got == [{"customer": f"Customer {c}"} for c in asked]
    assert len(responder.requests) == taken + 1 + len(asked)  # 999 was called once
