"""The content enricher and the response cache through a daemon, against a real REST backend
and a real HTTP sink: orders routed by the tier the CRM answers (embedded bus and RabbitMQ),
each failure of the CRM (not found, never answering, down, an answer too large) under both
failure policies, and a GET facade answered from its cache.

One daemon per bus (and one CRM and one sink) serves every test but the one with workers:
each test sends customers of its own and counts what its own requests caused (the CRM's
calls, the metrics, what the sink received since it began)."""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest
from esbtest.asgi import answer_late, serve_in_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from esb.adapters.testing.daemon import free_port


class Crm:
    """``GET /customers/{id}``: ``{"id", "tier"}`` (gold below 100, silver from 100); 404 for
    id 404; no answer for 5 s for id 999 (or until the caller hangs up); a 64 KiB answer for
    id 777. Counts the calls."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.keys: list[str | None] = []
        self.lock = threading.Lock()

    def app(self) -> Starlette:
        async def customer(request: Request) -> Response:
            cid = request.path_params["id"]
            with self.lock:
                self.calls[cid] += 1
                self.keys.append(request.headers.get("idempotency-key"))
            if cid == "404":
                return JSONResponse({"error": "no such customer"}, 404)
            if cid == "999":
                await answer_late(request, 5)
            if cid == "777":
                return JSONResponse({"id": 777, "notes": "x" * 64 * 1024})
            n = int(cid)
            return JSONResponse({"id": n, "tier": "gold" if n < 100 else "silver"})

        return Starlette(routes=[Route("/customers/{id}", customer)])


ASK_CRM = {"request": [{"jmespath": "{id: customer}"}],
           "merge": [{"jmespath": "merge(message, {tier: reply.tier})"}], "timeout": "3s"}
ORDER_SOURCES = ["shop", "lenient", "strict"]
ROUTES = {"orders.yaml": {"routes": [
    {"name": "customer-tier", "from": ["shop"], "priority": 10,
     "enrich": {"destination": "crm", **ASK_CRM,
                "cache": {"ttl": "60s", "key": "data.id"}}},
    {"name": "tier-or-not", "from": ["lenient"], "priority": 10,
     "enrich": {"destination": "crm-down", **ASK_CRM, "on_failure": "continue"}},
    {"name": "tier-or-retry", "from": ["strict"], "priority": 10,
     "enrich": {"destination": "crm-down", **ASK_CRM}},
    {"name": "gold-orders", "from": ORDER_SOURCES, "exclusive": True,
     "match": {"data": {"tier": ["gold"]}}, "to": ["gold-desk"]},
    {"name": "all-orders", "from": ORDER_SOURCES, "to": ["orders"]},
    {"name": "customer-lookup", "from": ["api"], "to": "crm",
     "reply": {"timeout": "10s", "cache": {"ttl": "60s", "key": "data.id"}}},
]}}


def config(bus: dict[str, Any], crm_url: str, sink_url: str) -> dict[str, Any]:
    no_retry_storm = {"timeout": "5s", "backoff": {"initial": "0.2s", "max": "0.5s"},
                      "breaker": False, "max_reply": "16KiB"}
    return {
        "bus": bus,
        "sources": {
            **{name: {"adapter": "rest", "path": f"/in/{name}", "type": "order.created"}
               for name in ORDER_SOURCES},
            "api": {"adapter": "rest", "path": "/api/customers/{id}", "methods": ["GET"],
                    "params": {"id": "integer"}, "type": "customer.get"},
        },
        "destinations": {
            "crm": {"adapter": "rest", "method": "GET",
                    "url": crm_url + "/customers/{data.id}", "delivery": no_retry_storm},
            # nothing listens there: every call is refused
            "crm-down": {"adapter": "rest", "method": "GET",
                         "url": f"http://127.0.0.1:{free_port()}/customers/{{data.id}}",
                         "delivery": no_retry_storm},
            "gold-desk": {"adapter": "rest", "url": sink_url + "/gold"},
            "orders": {"adapter": "rest", "url": sink_url + "/orders"},
        },
    }


@pytest.fixture
def crm() -> Iterator[tuple[Crm, str]]:
    c = Crm()
    with serve_in_thread(c.app()) as url:
        yield c, url


@pytest.fixture(scope="module")
def module_crm() -> Iterator[tuple[Crm, str]]:
    c = Crm()
    with serve_in_thread(c.app()) as url:
        yield c, url


@pytest.fixture(scope="module")
def embedded_daemon(module_daemon_factory: Any, module_crm: tuple[Crm, str],
                    module_sink: Any) -> Iterator[Any]:
    d = module_daemon_factory(config({"url": "embedded"}, module_crm[1], module_sink.url),
                              ROUTES, name="embedded").start()
    yield d
    d.stop()


@pytest.fixture(scope="module")
def rabbitmq_daemon(module_daemon_factory: Any, module_rabbit: Any,
                    module_crm: tuple[Crm, str], module_sink: Any) -> Iterator[Any]:
    bus = module_rabbit.bus("crm", "crm-down", "gold-desk", "orders")
    d = module_daemon_factory(config(bus, module_crm[1], module_sink.url), ROUTES,
                              name="rabbitmq").start()
    yield d
    d.stop()


@pytest.fixture(params=["embedded", "rabbitmq"])
def daemon(request: pytest.FixtureRequest, module_crm: tuple[Crm, str],
           module_sink: Any) -> Any:
    """The module's daemon on each bus."""
    return request.getfixturevalue(f"{request.param}_daemon")


class Since:
    """What the shared CRM, sink and daemon saw from the moment it is made: the calls, the
    deliveries and the metric samples of this test's own requests."""

    def __init__(self, d: Any, crm: Crm, sink: Any) -> None:
        self.d, self.crm, self.sink = d, crm, sink
        self.calls = Counter(crm.calls)
        with sink.lock:
            self.received_before = len(sink.received)
        self.metrics = httpx.get(f"{d.url}/metrics", timeout=10).text
        self.dead = {item["id"] for item in dead_letters(d)}

    def crm_calls(self) -> Counter[str]:
        return self.crm.calls - self.calls

    def received(self) -> list[tuple[str, Any]]:
        return received(self.sink)[self.received_before:]

    def sample(self, name: str, **labels: str) -> float:
        now = httpx.get(f"{self.d.url}/metrics", timeout=10).text
        return sample(now, name, **labels) - sample(self.metrics, name, **labels)

    def dead_letters(self) -> list[dict[str, Any]]:
        return [item for item in dead_letters(self.d) if item["id"] not in self.dead]


def eventually(check: Callable[[], Any], timeout: float = 15) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return result


def received(sink: Any) -> list[tuple[str, Any]]:
    with sink.lock:
        return [(r.path, orjson.loads(r.body)) for r in sink.received]


def order(d: Any, source: str, customer: int) -> httpx.Response:
    return httpx.post(f"{d.url}/in/{source}", json={"customer": customer}, timeout=20)


def test_orders_are_routed_by_the_tier_the_crm_answers(
        daemon: Any, module_crm: tuple[Crm, str], module_sink: Any) -> None:
    c, _ = module_crm
    d = daemon
    seen = Since(d, c, module_sink)
    for customer in (7, 150, 7):
        r = order(d, "shop", customer)
        assert r.status_code == 202, r.text
    assert eventually(lambda: len(seen.received()) == 3), seen.received()
    assert sorted(seen.received(), key=str) == sorted([
        ("/gold", {"customer": 7, "tier": "gold"}),
        ("/orders", {"customer": 150, "tier": "silver"}),
        ("/gold", {"customer": 7, "tier": "gold"})], key=str)
    # the second order of customer 7 was enriched from the cache: one call per customer
    assert seen.crm_calls() == Counter({"7": 1, "150": 1})
    assert all(c.keys)  # every request carries an idempotency key
    assert seen.sample("esb_reply_cache_total", route="customer-tier", outcome="hit") == 1
    assert seen.sample("esb_reply_cache_total", route="customer-tier", outcome="miss") == 2
    assert seen.sample("esb_requests_total", route="customer-tier", outcome="ok") == 3


def test_a_get_facade_answers_repeated_requests_from_its_cache(
        daemon: Any, module_crm: tuple[Crm, str], module_sink: Any) -> None:
    c, _ = module_crm
    d = daemon
    seen = Since(d, c, module_sink)
    answers = [httpx.get(f"{d.url}/api/customers/42", timeout=10) for _ in range(3)]
    assert [a.status_code for a in answers] == [200] * 3
    assert {a.content for a in answers} == {b'{"id":42,"tier":"gold"}'}
    assert seen.crm_calls()["42"] == 1
    # failures are not cached: each one asks again
    for _ in range(2):
        assert httpx.get(f"{d.url}/api/customers/404", timeout=10).status_code == 404
    assert seen.crm_calls() == Counter({"42": 1, "404": 2})
    assert seen.sample("esb_reply_cache_total", route="customer-lookup", outcome="hit") == 2
    assert seen.sample("esb_reply_cache_total", route="customer-lookup", outcome="miss") == 3


def dead_letters(d: Any) -> list[dict[str, Any]]:
    return d.admin("GET", "/admin/dlq").json()["items"]


@pytest.mark.parametrize(("customer", "says"), [
    (404, "'crm' answered 404 (not-found)"),
    (777, "'crm' answered 502 (too-large)")])
def test_an_answer_that_will_not_change_dead_letters_the_order(
        embedded_daemon: Any, module_crm: tuple[Crm, str], module_sink: Any, customer: int,
        says: str) -> None:
    d = embedded_daemon
    seen = Since(d, module_crm[0], module_sink)
    r = order(d, "shop", customer)
    assert r.status_code == 202, r.text  # taken: it is safe in the dead-letter queue
    items = eventually(lambda: seen.dead_letters())
    assert len(items) == 1, items
    assert items[0]["id"] == r.json()["id"] and items[0]["route"] == "customer-tier"
    assert says in items[0]["error"] and "enrich crm" in items[0]["error"]
    assert seen.received() == []  # the routes after the enricher depended on it


def test_a_crm_that_never_answers_costs_the_sender_the_enrichers_timeout(
        embedded_daemon: Any, module_crm: tuple[Crm, str], module_sink: Any) -> None:
    d = embedded_daemon
    seen = Since(d, module_crm[0], module_sink)
    started = time.monotonic()
    r = order(d, "shop", 999)
    took = time.monotonic() - started
    assert r.status_code == 503, r.text  # not taken: the sender is told to retry
    assert "within 3s" in r.json()["detail"] and "enrich crm" in r.json()["detail"]
    assert 2.9 <= took < 10
    assert seen.crm_calls() == Counter({"999": 1})  # no retry after the enricher stopped
    assert seen.dead_letters() == [] and seen.received() == []


def test_a_crm_that_is_down_means_retry_or_no_enrichment_as_configured(
        embedded_daemon: Any, module_crm: tuple[Crm, str], module_sink: Any) -> None:
    d = embedded_daemon
    seen = Since(d, module_crm[0], module_sink)
    r = order(d, "strict", 5)
    assert r.status_code == 503, r.text
    assert "crm-down" in r.json()["detail"]
    r = order(d, "lenient", 5)
    assert r.status_code == 202, r.text
    assert eventually(lambda: seen.received())
    assert seen.received() == [("/orders", {"customer": 5})]  # not enriched, routed on


def sample(metrics: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus text page (0 when absent)."""
    for line in metrics.splitlines():
        m = re.match(rf"{name}{{(.*)}} (\S+)$", line)
        if m and dict(re.findall(r'(\w+)="([^"]*)"', m[1])) == labels:
            return float(m[2])
    return 0.0


def test_the_workers_of_a_daemon_share_one_cache(
        daemon_factory: Any, rabbit: Any, crm: tuple[Crm, str], sink: Any) -> None:
    """With ``--workers 2``, requests on fresh connections reach both workers; the CRM is
    asked once all the same (the trace tells which worker answered each request)."""
    c, crm_url = crm
    bus = rabbit.bus("crm", "crm-down", "gold-desk", "orders")
    d = daemon_factory(config(bus, crm_url, sink.url), ROUTES,
                       run_args=["--workers", "2"]).start()
    admin = {"Authorization": f"Bearer {d.token}"}

    def ask(i: int) -> httpx.Response:
        return httpx.get(f"{d.url}/api/customers/42", timeout=10,
                         headers={"Connection": "close", "X-Correlation-Id": f"ask-{i}"})

    def answered_by(i: int) -> str | None:
        found = httpx.get(f"{d.url}/admin/trace", params={"correlation": f"ask-{i}"},
                          headers=admin, timeout=10).json()["ids"]
        if not found:
            return None
        steps = httpx.get(f"{d.url}/admin/trace/{found[0]}", headers=admin, timeout=10).json()
        return next((e["instance"] for e in steps["events"] if e["step"] == "answered"), None)

    answers: list[httpx.Response] = []
    workers: set[str] = set()
    while len(workers) < 2 and len(answers) < 60:  # the kernel picks who accepts: ask on
        answers.append(ask(len(answers)))
        who = eventually(lambda: answered_by(len(answers) - 1))
        assert who, f"request {len(answers) - 1} was not traced"
        workers.add(who)
    assert len(workers) == 2, f"one worker answered all {len(answers)} requests"
    assert [a.status_code for a in answers] == [200] * len(answers)
    assert {a.content for a in answers} == {b'{"id":42,"tier":"gold"}'}
    assert c.calls["42"] == 1
    metrics = httpx.get(f"{d.url}/metrics", timeout=10).text
    assert sample(metrics, "esb_reply_cache_total", route="customer-lookup",
                  outcome="hit") == len(answers) - 1
    assert sample(metrics, "esb_reply_cache_total", route="customer-lookup",
                  outcome="miss") == 1
