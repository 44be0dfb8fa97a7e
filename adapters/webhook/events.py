"""Where a webhook's event type and payload come from."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

from esb.bus.payload import (
    DEFAULT_JSON_DEPTH,
    JSON,
    PayloadError,
    decode,
    lookup,
    media_type,
    scalar,
)


def parse_payload(body: bytes, content_type: str, max_depth: int = DEFAULT_JSON_DEPTH) -> Any:
    """The JSON payload (whatever the content type says: every scheme sends JSON); GitHub's
    form encoding (``payload=<json>``) is unwrapped. PayloadError when it is not JSON."""
    if media_type(content_type)[0] == "application/x-www-form-urlencoded":
        fields = parse_qs(body.decode("utf-8", "replace"))
        if "payload" not in fields:
            raise PayloadError("Malformed webhook payload",
                               "form-encoded webhook without a 'payload' field")
        body = fields["payload"][0].encode()
    return decode(body, JSON, json_depth=max_depth)


def event_type(where: str, headers: Mapping[str, str], payload: Any) -> str | None:
    """Read the event type from ``header:<Name>``, ``json:<path>`` or ``github``."""
    if where == "github":
        name = headers.get("x-github-event")
        action = lookup(payload, "action")
        if name and isinstance(action, str) and action:
            return f"{name}.{action}"
        return name or None
    kind, _, ref = where.partition(":")
    if kind == "header":
        return headers.get(ref) or None
    return scalar(lookup(payload, ref)) or None


def default_event_type(scheme: str) -> str:
    """The scheme's own place for the event type."""
    if scheme == "hubspot":  # a batch of events: the first one's subscription type
        return "json:0.subscriptionType"
    return "github" if scheme == "github" else "json:type"
