"""Content-Encoding: gzip and deflate are decoded under the body limit (a decompression bomb
is a 413, not memory), anything else is a 415, a body that does not decode a 400 — on every
HTTP adapter, in its own error shape."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
from esbtest.daemon import DaemonProcess
from esbtest.edge_daemon import edge_daemon, post_hook, signed_headers
from esbtest.hostile import MiB, assert_problem, rss

BODY = orjson.dumps({"order": 1})


@pytest.fixture(scope="module")
def daemon(module_daemons: Callable[..., DaemonProcess], module_sink: Any) -> DaemonProcess:
    return edge_daemon(module_daemons, module_sink.url)


def post(d: DaemonProcess, body: bytes, encoding: str, path: str = "/in/shop",
         ctype: str = "application/json") -> httpx.Response:
    return httpx.post(d.url + path, content=body, timeout=30,
                      headers={"Content-Type": ctype, "Content-Encoding": encoding})


@pytest.mark.parametrize(("encoding", "pack"), [
    ("gzip", gzip.compress), ("deflate", zlib.compress),
    ("deflate", lambda b: zlib.compress(b)[2:-4]),  # raw deflate, as some clients send it
    ("identity", lambda b: b)])
def test_gzip_and_deflate_are_decoded(daemon: DaemonProcess, encoding: str,
                                      pack: Callable[[bytes], bytes]) -> None:
    r = post(daemon, pack(BODY), encoding)
    assert r.status_code == 202, r.text


def test_a_decompression_bomb_is_413_and_costs_no_memory(daemon: DaemonProcess) -> None:
    bomb = gzip.compress(b"[" + b"0," * (200 * MiB) + b"0]", compresslevel=9)
    assert len(bomb) < 1 * MiB
    before = rss(daemon)
    assert_problem(post(daemon, bomb, "gzip"), 413)
    assert rss(daemon) - before < 50 * MiB


@pytest.mark.parametrize("encoding", ["br", "zstd", "compress", "gzip, gzip"])
def test_other_encodings_are_415(daemon: DaemonProcess, encoding: str) -> None:
    assert_problem(post(daemon, BODY, encoding), 415, "content-encoding")


def test_a_body_that_does_not_decode_is_400(daemon: DaemonProcess) -> None:
    assert_problem(post(daemon, BODY, "gzip"), 400, "gzip")


def test_webhook_graphql_and_soap_answer_in_their_own_shape(daemon: DaemonProcess) -> None:
    hook = post_hook(daemon, BODY, {**signed_headers(BODY, "m-enc"), "content-encoding": "br"})
    assert_problem(hook, 415)
    gql = post(daemon, BODY, "br", "/graphql")
    assert gql.status_code == 415 and gql.json()["errors"][0]["extensions"]["code"] == \
        "BAD_REQUEST"
    soap = post(daemon, b"<x/>", "br", "/soap/orders", "text/xml")
    assert soap.status_code == 415 and b"soap:Client" in soap.content
    packed = gzip.compress(orjson.dumps({"query": "mutation { createOrder(orderId: \"1\", "
                                                  "amount: 2) }"}))
    ok = post(daemon, packed, "gzip", "/graphql")
    assert ok.status_code == 200 and "errors" not in ok.json(), ok.text
