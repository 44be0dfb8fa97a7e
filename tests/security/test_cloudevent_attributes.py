"""Control characters in CloudEvents attributes (core or extension) are refused at the edge
with a 400, in every mode a CloudEvent can arrive in; nothing reaches the bus."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
from esbtest.daemon import DaemonProcess
from esbtest.edge_daemon import edge_daemon, post_hook, signed_headers
from esbtest.hostile import assert_problem, raw_request

from esb.bus.envelope import Envelope

EVENT = {"specversion": "1.0", "id": "e-1", "source": "partner", "type": "order.created",
         "data": {"n": 1}}


@pytest.fixture(scope="module")
def daemon(module_daemons: Callable[..., DaemonProcess], module_sink: Any) -> DaemonProcess:
    return edge_daemon(module_daemons, module_sink.url)


@pytest.mark.parametrize(("attribute", "value"), [
    ("partnerref", "a\r\nX-Injected: 1"), ("subject", "line\nbreak"), ("type", "t\x00"),
    ("source", "s\x7f"), ("partnerref", "c1\x85"), ("id", "tab\there")])
def test_structured_mode_control_characters_are_400(daemon: DaemonProcess, attribute: str,
                                                    value: str) -> None:
    r = httpx.post(daemon.url + "/in/shop", content=orjson.dumps({**EVENT, attribute: value}),
                   headers={"Content-Type": "application/cloudevents+json"}, timeout=10)
    assert_problem(r, 400, "control characters")


def test_binary_mode_control_characters_are_400(daemon: DaemonProcess) -> None:
    status, body = raw_request(daemon, (
        b"POST /in/shop HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"ce-specversion: 1.0\r\nce-id: 1\r\nce-source: s\r\nce-type: t\r\n"
        b"ce-partnerref: a\tb\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}"))
    assert status == 400 and "control characters" in body["detail"]


def test_webhook_event_type_with_control_characters_is_400(daemon: DaemonProcess) -> None:
    body = b'{"type": "invoice.paid\\r\\nX: 1"}'
    r = post_hook(daemon, body, signed_headers(body, "m-ctl"))
    assert_problem(r, 400, "control characters")


def test_clean_events_are_accepted(daemon: DaemonProcess) -> None:
    r = httpx.post(daemon.url + "/in/shop", content=orjson.dumps({**EVENT, "partnerref": "é-1"}),
                   headers={"Content-Type": "application/cloudevents+json"}, timeout=10)
    assert r.status_code == 202, r.text


def test_the_envelope_model_refuses_them_wherever_it_is_built() -> None:
    with pytest.raises(ValueError, match="control characters"):
        Envelope(source="s", type="t", subject="\r\n")
    with pytest.raises(ValueError, match="control characters"):
        Envelope(source="s", type="t", extensions={"ref": "\x1b[31m"})
