"""JSON nesting is bounded (limits.json.max_depth) on every JSON entry: REST bodies, structured
CloudEvents, webhooks and GraphQL requests; size is the body limit (413)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from esbtest.daemon import DaemonProcess
from esbtest.edge_daemon import edge_daemon, post_hook, signed_headers
from esbtest.hostile import assert_problem

from esb.bus.payload import JsonTooDeep, check_json_depth, loads_json


def nested(depth: int) -> bytes:
    return b'{"a":' * (depth - 1) + b"[1]" + b"}" * (depth - 1)


@pytest.fixture(scope="module")
def daemon(module_daemons: Callable[..., DaemonProcess], module_sink: Any) -> DaemonProcess:
    return edge_daemon(module_daemons, module_sink.url)


def post(d: DaemonProcess, body: bytes, ctype: str, path: str = "/in/shop") -> httpx.Response:
    return httpx.post(d.url + path, content=body, headers={"Content-Type": ctype}, timeout=10)


@pytest.mark.parametrize("depth", [65, 1000, 5000])
def test_rest_json_too_deep_is_400(daemon: DaemonProcess, depth: int) -> None:
    r = post(daemon, nested(depth), "application/json")
    assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json"


def test_rest_json_at_the_limit_is_accepted(daemon: DaemonProcess) -> None:
    assert post(daemon, nested(64), "application/json").status_code == 202


def test_structured_cloudevent_too_deep_is_400(daemon: DaemonProcess) -> None:
    body = (b'{"specversion":"1.0","id":"1","source":"s","type":"t","data":' + nested(100)
            + b"}")
    assert_problem(post(daemon, body, "application/cloudevents+json"), 400, "64 levels")


def test_webhook_too_deep_is_400(daemon: DaemonProcess) -> None:
    body = nested(100)
    assert_problem(post_hook(daemon, body, signed_headers(body, "m-deep")), 400, "64 levels")


def test_graphql_variables_too_deep_are_400(daemon: DaemonProcess) -> None:
    body = b'{"query": "{ health }", "variables": {"v": ' + nested(100) + b"}}"
    r = post(daemon, body, "application/json", "/graphql")
    assert r.status_code == 400 and "64 levels" in r.json()["errors"][0]["message"]


def test_oversize_json_is_413(daemon: DaemonProcess) -> None:
    body = b'{"a": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    assert_problem(post(daemon, body, "application/json"), 413)


def test_depth_check_counts_arrays_and_objects() -> None:
    check_json_depth(loads_json(nested(64)))
    with pytest.raises(JsonTooDeep):
        loads_json(b"[" * 65 + b"]" * 65)
    with pytest.raises(JsonTooDeep):
        check_json_depth({"a": [{"b": [1]}]}, max_depth=3)
    check_json_depth({"a": [{"b": 1}]}, max_depth=3)


@pytest.mark.parametrize("raw", [b'{"a": "' + b"[{" * 100 + b'"}',  # openers in a string
                                 b"[" + b"[1]," * 100 + b"[2]]",  # many, none deep
                                 "[" + "[1]," * 100 + "[2]]"])  # text, as bytes
def test_many_openers_that_do_not_nest_pass(raw: bytes | str) -> None:
    """More openers than the limit send the check to the parsed value, which is shallow."""
    loads_json(raw, max_depth=3)


@pytest.mark.parametrize("raw", [b'{"s": "' + b"x" * 10_000 + b'", "a": [[[[1]]]]}',
                                 '{"s": "' + "x" * 10_000 + '", "a": [[[[1]]]]}'])
def test_a_deep_value_beside_a_long_string_is_refused(raw: bytes | str) -> None:
    with pytest.raises(JsonTooDeep):
        loads_json(raw, max_depth=4)
    loads_json(raw, max_depth=5)
