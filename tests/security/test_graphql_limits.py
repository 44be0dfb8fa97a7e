"""GraphQL requests are bounded before validation and execution: depth, fields, aliases, cost
and tokens; 1,000 aliased mutations are a GraphQL error, never a RecursionError 500."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
from esbtest.daemon import DaemonProcess
from esbtest.edge_daemon import edge_daemon

MODERN = "application/graphql-response+json"


@pytest.fixture(scope="module")
def daemon(module_daemons: Callable[..., DaemonProcess], module_sink: Any) -> DaemonProcess:
    return edge_daemon(module_daemons, module_sink.url)


def ask(d: DaemonProcess, query: str, accept: str = "application/json") -> httpx.Response:
    return httpx.post(d.url + "/graphql", content=orjson.dumps({"query": query}), timeout=30,
                      headers={"Content-Type": "application/json", "Accept": accept})


def aliased_mutations(n: int) -> str:
    return "mutation {" + " ".join(f'a{i}: createOrder(orderId: "{i}", amount: 1)'
                                   for i in range(n)) + "}"


def fragment_bomb(levels: int) -> str:
    names = [f"F{i}" for i in range(levels + 1)]
    frags = " ".join(f"fragment {names[i]} on Query {{ ...{names[i + 1]} ...{names[i + 1]} }}"
                     for i in range(levels))
    return f"query {{ ...F0 }} {frags} fragment {names[-1]} on Query {{ health }}"


HOSTILE = {
    "1000 aliased mutations": (aliased_mutations(1000), "tokens"),
    "30 aliased mutations": (aliased_mutations(30), "20 aliases"),
    "50 levels deep": ("{" + "health {" * 50 + "}" * 51, "at most 10 are answered"),
    "fragments multiplying": (fragment_bomb(30), "200 fields"),
    "many fields": ("{" + " health" * 300 + "}", "200 fields"),
    "deep and long": ("{" + "a {" * 20000 + "}" * 20001, "deep"),
    "deep within the tokens": ("{" + "a {" * 3000 + "}" * 3001, "deep"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
@pytest.mark.parametrize("accept", ["application/json", MODERN])
def test_hostile_queries_are_graphql_errors(daemon: DaemonProcess, name: str,
                                            accept: str) -> None:
    query, words = HOSTILE[name]
    r = ask(daemon, query, accept)
    assert r.status_code == (400 if accept == MODERN else 200), r.text
    body = r.json()
    assert "data" not in body and len(body["errors"]) == 1, body
    assert words in body["errors"][0]["message"], body
    assert body["errors"][0]["extensions"]["code"] in ("QUERY_TOO_COMPLEX",
                                                      "GRAPHQL_PARSE_FAILED")


def test_nothing_of_a_refused_mutation_is_published(daemon: DaemonProcess,
                                                    module_sink: Any) -> None:
    before = len(module_sink.received)
    ask(daemon, aliased_mutations(30))
    r = ask(daemon, 'mutation { createOrder(orderId: "ok", amount: 2) }')
    assert r.status_code == 200 and "errors" not in r.json(), r.text
    assert len(module_sink.received) <= before + 1


def test_queries_within_the_limits_run(daemon: DaemonProcess) -> None:
    r = ask(daemon, aliased_mutations(15))
    assert r.status_code == 200 and "errors" not in r.json(), r.text
    assert len(r.json()["data"]) == 15
