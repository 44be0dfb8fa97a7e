"""Every webhook verification failure gets one identical 401 body; the reason is only in the
daemon's log."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from esbtest.daemon import DaemonProcess
from esbtest.edge_daemon import SECRET, edge_daemon, post_hook, signed_headers

BODY = b'{"type": "invoice.paid"}'


@pytest.fixture(scope="module")
def daemon(module_daemons: Callable[..., DaemonProcess], module_sink: Any) -> DaemonProcess:
    return edge_daemon(module_daemons, module_sink.url)


def failures() -> dict[str, dict[str, str]]:
    good = signed_headers(BODY, "m-1")
    now = int(time.time())
    return {
        "no headers": {"content-type": "application/json"},
        "no signature": {k: v for k, v in good.items() if k != "webhook-signature"},
        "no timestamp": {k: v for k, v in good.items() if k != "webhook-timestamp"},
        "wrong signature": {**good, "webhook-signature": "v1,AAAA"},
        "other secret": signed_headers(BODY, "m-1",
                                       secret="whsec_" + "QUJDREVGR0hJSktMTU5PUA=="),
        "stale": signed_headers(BODY, "m-1", ts=now - 3600),
        "future": signed_headers(BODY, "m-1", ts=now + 3600),
        "timestamp not a number": {**good, "webhook-timestamp": "soon"},
        "tampered body": good,  # sent with another body below
    }


def test_one_body_for_every_failure(daemon: DaemonProcess) -> None:
    answers = set()
    for name, headers in failures().items():
        body = b'{"type": "invoice.void"}' if name == "tampered body" else BODY
        r = post_hook(daemon, body, headers)
        assert r.status_code == 401, (name, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        answers.add((r.content, tuple(sorted((k, v) for k, v in r.headers.items()
                                             if k not in ("date", "content-length")))))
    assert len(answers) == 1, answers
    log = daemon.log(200_000)
    for reason in ("timestamp is too old", "timestamp is in the future", "no matching signature",
                   "missing webhook-signature header"):
        assert reason in log


def test_a_verified_delivery_is_accepted(daemon: DaemonProcess) -> None:
    assert post_hook(daemon, BODY, signed_headers(BODY, "m-ok")).status_code == 202
    assert SECRET not in daemon.log(200_000)
