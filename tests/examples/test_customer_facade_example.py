"""examples/customer-facade through a real daemon on RabbitMQ, run from a copy of the example
folder as its README says, against its own legacy SOAP CRM (fakes.py): the REST and GraphQL
faces answer from the CRM through request/reply routes, failures are mapped for each caller,
and the README's `esb routes test --reply` line shows what a caller would get."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from esbtest.examples import ExampleProject, load_fakes

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "customer-facade"
fakes = load_fakes(EXAMPLE)


@pytest.fixture(scope="module")
def facade(tmp_path_factory: pytest.TempPathFactory, rabbit_url: str
           ) -> Iterator[tuple[ExampleProject, Any]]:
    with fakes.LegacyCrm(slow_seconds=8) as crm, ExampleProject(
            EXAMPLE, tmp_path_factory.mktemp("facade"), rabbit_url,
            ("crm", "priority-orders", "orders"),
            {"CRM_URL": crm.url}) as project:
        yield project, crm


def test_rest_face(facade: tuple[ExampleProject, Any]) -> None:
    project, crm = facade
    url = project.daemon.url
    r = httpx.get(f"{url}/api/customers/42", timeout=30)
    assert r.status_code == 200, r.text
    assert r.json() == {"id": 42, "name": "Customer 42", "tier": "silver",
                        "creditLimit": 42000}
    assert crm.calls[-1][0] == 42 and crm.calls[-1][1]  # with an idempotency key
    again = httpx.get(f"{url}/api/customers/42", timeout=30)
    assert again.status_code == 200 and again.json() == r.json()
    assert [c for c, _ in crm.calls].count(42) == 1  # answered from the route's cache
    r = httpx.get(f"{url}/api/customers/123", timeout=30)
    assert r.status_code == 502 and "no customer 123" in r.json()["detail"]
    r = httpx.get(f"{url}/api/customers/abc", timeout=30)
    assert r.status_code == 400
    r = httpx.get(f"{url}/api/customers/701", timeout=30)
    assert r.status_code == 504 and r.json()["kind"] == "timeout"


def orders_in(folder: Path, n: int, timeout: float = 30) -> list[dict[str, Any]]:
    """The orders written to ``folder``, once there are ``n`` of them."""
    deadline = time.monotonic() + timeout
    while True:
        files = sorted(folder.glob("*.json")) if folder.is_dir() else []
        if len(files) >= n or time.monotonic() > deadline:
            return sorted((json.loads(f.read_text()) for f in files), key=str)
        time.sleep(0.1)


def test_orders_are_routed_by_the_tier_the_crm_answers(facade: tuple[ExampleProject, Any]
                                                       ) -> None:
    project, crm = facade
    before = len(crm.calls)
    for customer in (7, 8, 7, 123):  # gold, silver, gold again, unknown to the CRM
        r = httpx.post(f"{project.daemon.url}/api/orders",
                       json={"customerId": customer, "sku": "A-1"}, timeout=30)
        assert r.status_code == 202, r.text
    assert orders_in(project.root / "out" / "priority-orders", 2) == [
        {"customerId": 7, "sku": "A-1", "tier": "gold"}] * 2
    assert orders_in(project.root / "out" / "orders", 2) == sorted([
        {"customerId": 8, "sku": "A-1", "tier": "silver"},
        {"customerId": 123, "sku": "A-1"}], key=str)  # not enriched: on_failure continue
    asked = [c for c, _ in crm.calls[before:]]
    assert asked.count(7) == 1 and asked.count(8) == 1  # the second order hit the cache


def test_graphql_face(facade: tuple[ExampleProject, Any]) -> None:
    project, _ = facade
    query = "{ a: customer(id: 7) { name tier } b: customer(id: 500) { name } }"
    r = httpx.post(f"{project.daemon.url}/graphql", json={"query": query}, timeout=30)
    body = r.json()
    assert body["data"] == {"a": {"name": "Customer 7", "tier": "gold"}, "b": None}
    (error,) = body["errors"]
    assert error["path"] == ["b"] and "no customer 500" in error["message"]


def test_routes_test_shows_what_the_caller_would_get(facade: tuple[ExampleProject, Any]
                                                     ) -> None:
    project, _ = facade
    out = subprocess.run(
        [sys.executable, "-m", "esb.bus.cli.main", "routes", "test", "routes/", "--message",
         "samples/get-customer-42.json", "--source", "customers-api", "--reply",
         "samples/crm-reply-42.xml"], cwd=project.root, capture_output=True, text=True,
        timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "→ crm  route customer-rest" in out.stdout
    assert "← caller gets 200  application/json" in out.stdout
    assert '"creditLimit": 42000' in out.stdout
