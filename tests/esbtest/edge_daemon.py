"""One daemon with an endpoint of each HTTP adapter (rest, webhook, graphql, soap) for the
hostile-input modules of ``tests/security``."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from esb.adapters.webhook.signatures import decode_standard_secret, sign_standard
from esbtest.daemon import DaemonProcess
from esbtest.hostile import ROUTES

HERE = Path(__file__).parents[1]
#: The webhook endpoint's Standard Webhooks secret (its environment variable's value).
SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def edge_daemon(make: Callable[..., DaemonProcess], sink_url: str,
                **http: Any) -> DaemonProcess:
    """Started; ``/in/shop`` (rest), ``/hook`` (webhook), ``/graphql``, ``/soap/orders``."""
    d = make({"http": {"max_body": "1MiB", **http},
              "sources": {
                  "shop": {"adapter": "rest", "path": "/in/shop"},
                  "hook": {"adapter": "webhook", "path": "/hook",
                           "secrets": ["${HOOK_SECRET}"]},
                  "gql": {"adapter": "graphql", "path": "/graphql",
                          "sdl": "config/orders.graphql"},
                  "orders": {"adapter": "soap", "path": "/soap/orders",
                             "wsdl": "config/orders.wsdl"}},
              "destinations": {"out": {"adapter": "rest", "url": sink_url + "/in"}}},
             ROUTES, env={"HOOK_SECRET": SECRET})
    shutil.copy(HERE / "adapters" / "soap" / "orders.wsdl", d.root / "config" / "orders.wsdl")
    shutil.copy(HERE / "adapters" / "graphql" / "orders.graphql",
                d.root / "config" / "orders.graphql")
    return d.start()


def signed_headers(body: bytes, msg_id: str = "msg-1", ts: int | None = None,
                   secret: str = SECRET) -> dict[str, str]:
    ts = int(time.time()) if ts is None else ts
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts),
            "webhook-signature": sign_standard(decode_standard_secret(secret), msg_id, ts, body),
            "content-type": "application/json"}


def post_hook(d: DaemonProcess, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(d.url + "/hook", content=body, headers=headers, timeout=10)
