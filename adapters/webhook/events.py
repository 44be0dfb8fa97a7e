"""Where a webhook's event type and payload come from."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

import orjson


class PayloadError(ValueError):
    """The body is not the JSON payload the scheme promises."""


def parse_payload(body: bytes, content_type: str) -> Any:
    """The JSON payload; GitHub's form encoding (``payload=<json>``) is unwrapped."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "application/x-www-form-urlencoded":
        fields = parse_qs(body.decode("utf-8", "replace"))
        if "payload" not in fields:
            raise PayloadError("form-encoded webhook without a 'payload' field")
        body = fields["payload"][0].encode()
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise PayloadError(f"body is not JSON: {exc}") from exc


def lookup(payload: Any, path: str) -> Any:
    """A dotted path into a JSON value (``None`` when any step is missing)."""
    value = payload
    for step in path.split("."):
        if isinstance(value, Mapping):
            value = value.get(step)
        elif isinstance(value, list) and step.isdigit() and int(step) < len(value):
            value = value[int(step)]
        else:
            return None
    return value


def event_type(where: str, headers: Mapping[str, str], payload: Any) -> str | None:
    """Read the event type from ``header:<Name>``, ``json:<path>`` or ``github``."""
    if where == "github":
        name = headers.get("x-github-event")
        action = lookup(payload, "action")
        if name and isinstance(action, str) and action:
            return f"{name}.{action}"
        return name or None
    kind, _, ref = where.partition(":")
    value = headers.get(ref) if kind == "header" else lookup(payload, ref)
    if value is None or isinstance(value, dict | list):
        return None
    return str(value) or None


def default_event_type(scheme: str) -> str:
    """The scheme's own place for the event type."""
    if scheme == "hubspot":  # a batch of events: the first one's subscription type
        return "json:0.subscriptionType"
    return "github" if scheme == "github" else "json:type"
