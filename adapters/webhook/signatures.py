"""Signature schemes: Standard Webhooks, GitHub, Stripe, HubSpot (v3) and generic HMAC.

A :class:`Verifier` checks one request's headers and raw body and says which delivery it
was; every comparison is constant-time (``hmac.compare_digest``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import unquote

STANDARD_PREFIX = "whsec_"


class SignatureError(Exception):
    """The request is not authentic (missing, malformed or wrong signature)."""


class TimestampError(SignatureError):
    """The signed timestamp is outside the tolerance (stale or in the future)."""


@dataclass(frozen=True)
class Verified:
    """What a valid signature vouches for."""

    delivery_id: str | None = None
    timestamp: int | None = None


class Verifier(Protocol):
    """Checks one scheme's signature."""

    @property
    def payload_id_field(self) -> str | None:
        """Payload field holding the delivery id when no header does (Stripe: ``id``)."""
        ...

    def verify(self, headers: Mapping[str, str], body: bytes, now: float, *,
               method: str = "POST", url: str = "") -> Verified:
        """Return what the signature vouches for, or raise :class:`SignatureError`.
        ``method`` and ``url`` are the request's, for schemes that sign them (HubSpot)."""
        ...


def decode_standard_secret(secret: str) -> bytes:
    """The key bytes of a Standard Webhooks secret (``whsec_`` + base64)."""
    raw = secret.removeprefix(STANDARD_PREFIX)
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("a Standard Webhooks secret is 'whsec_' followed by base64") from exc


def sign_standard(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` Standard Webhooks signature."""
    content = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.digest(key, content, "sha256")).decode("ascii")


def sign_stripe(secret: str, timestamp: int, body: bytes) -> str:
    """The hex ``v1`` signature of Stripe's scheme (``hmac_sha256(secret, "t.body")``)."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, "sha256").hexdigest()


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if not value:
        raise SignatureError(f"missing {name} header")
    return value


def _timestamp(value: str, now: float, tolerance: int) -> int:
    try:
        ts = int(value)
    except ValueError as exc:
        raise SignatureError(f"timestamp {value[:32]!r} is not an integer") from exc
    if ts < now - tolerance:
        raise TimestampError("timestamp is too old")
    if ts > now + tolerance:
        raise TimestampError("timestamp is in the future")
    return ts


def _check_match(candidates: list[str], expected: list[str]) -> None:
    """:class:`SignatureError` unless one of ``candidates`` is one of ``expected``."""
    found = False
    for given in candidates:
        for want in expected:
            # no short-circuit on a match: the time spent does not depend on which one matched
            found |= hmac.compare_digest(given.encode(), want.encode())
    if not found:
        raise SignatureError("no matching signature")


class StandardVerifier:
    """Standard Webhooks: ``webhook-id``, ``webhook-timestamp``, ``webhook-signature``."""

    payload_id_field: str | None = None

    def __init__(self, secrets: list[str], tolerance: int) -> None:
        self._keys = [decode_standard_secret(s) for s in secrets]
        self._tolerance = tolerance

    def verify(self, headers: Mapping[str, str], body: bytes, now: float, *,
               method: str = "POST", url: str = "") -> Verified:
        msg_id = _header(headers, "webhook-id")
        ts = _timestamp(_header(headers, "webhook-timestamp"), now, self._tolerance)
        given = [s for s in _header(headers, "webhook-signature").split(" ") if s]
        expected = [sign_standard(k, msg_id, ts, body) for k in self._keys]
        _check_match(given, expected)
        return Verified(delivery_id=msg_id, timestamp=ts)


class GithubVerifier:
    """GitHub: ``X-Hub-Signature-256: sha256=<hex>``, delivery ``X-GitHub-Delivery``."""

    payload_id_field: str | None = None

    def __init__(self, secrets: list[str]) -> None:
        self._secrets = [s.encode() for s in secrets]

    def verify(self, headers: Mapping[str, str], body: bytes, now: float, *,
               method: str = "POST", url: str = "") -> Verified:
        given = _header(headers, "x-hub-signature-256").strip().lower()
        expected = ["sha256=" + hmac.new(s, body, "sha256").hexdigest() for s in self._secrets]
        _check_match([given], expected)
        return Verified(delivery_id=headers.get("x-github-delivery") or None)


class StripeVerifier:
    """Stripe: ``Stripe-Signature: t=<ts>,v1=<hex>[,v1=...]``; the event id is the payload's."""

    payload_id_field: str | None = "id"

    def __init__(self, secrets: list[str], tolerance: int) -> None:
        self._secrets = secrets
        self._tolerance = tolerance

    def verify(self, headers: Mapping[str, str], body: bytes, now: float, *,
               method: str = "POST", url: str = "") -> Verified:
        stamp: str | None = None
        given: list[str] = []
        for item in _header(headers, "stripe-signature").split(","):
            key, _, value = item.strip().partition("=")
            if key == "t":
                stamp = value
            elif key == "v1":
                given.append(value.lower())
        if stamp is None or not given:
            raise SignatureError("Stripe-Signature lacks t= or v1=")
        ts = _timestamp(stamp, now, self._tolerance)
        expected = [sign_stripe(s, ts, body) for s in self._secrets]
        _check_match(given, expected)
        return Verified(timestamp=ts)


class HmacVerifier:
    """Generic HMAC over the body (or ``<timestamp>.<body>`` when a timestamp header is set)."""

    payload_id_field: str | None = None

    def __init__(self, secrets: list[str], *, header: str, algorithm: str, encoding: str,
                 prefix: str, tolerance: int, timestamp_header: str | None,
                 id_header: str | None) -> None:
        self._secrets = [s.encode() for s in secrets]
        self._header = header.lower()
        self._algorithm = getattr(hashlib, algorithm)
        self._encoding = encoding
        self._prefix = prefix
        self._tolerance = tolerance
        self._timestamp_header = timestamp_header.lower() if timestamp_header else None
        self._id_header = id_header.lower() if id_header else None

    def _encode(self, digest: bytes) -> str:
        if self._encoding == "hex":
            return self._prefix + digest.hex()
        return self._prefix + base64.b64encode(digest).decode("ascii")

    def verify(self, headers: Mapping[str, str], body: bytes, now: float, *,
               method: str = "POST", url: str = "") -> Verified:
        given = _header(headers, self._header).strip()
        if self._encoding == "hex":
            given = given.lower()
        ts = None
        content = body
        if self._timestamp_header:
            ts = _timestamp(_header(headers, self._timestamp_header), now, self._tolerance)
            content = f"{ts}.".encode() + body
        expected = [self._encode(hmac.digest(s, content, self._algorithm))
                    for s in self._secrets]
        if self._encoding == "hex":
            expected = [e.lower() for e in expected]
        _check_match([given], expected)
        delivery = headers.get(self._id_header) if self._id_header else None
        return Verified(delivery_id=delivery or None, timestamp=ts)


def sign_hubspot(secret: str, method: str, url: str, body: bytes, timestamp_ms: int) -> str:
    """HubSpot's v3 signature: base64 HMAC-SHA256 of method + URL + body + timestamp (ms)."""
    content = f"{method}{url}".encode() + body + str(timestamp_ms).encode()
    return base64.b64encode(hmac.digest(secret.encode(), content, "sha256")).decode("ascii")


class HubspotVerifier:
    """HubSpot v3: ``X-HubSpot-Signature-v3`` over method, the URL HubSpot called, the body and
    ``X-HubSpot-Request-Timestamp`` (milliseconds). HubSpot sends no delivery id: a batch is
    identified by the ``eventId``s of its events."""

    payload_id_field: str | None = None

    def __init__(self, secrets: list[str], tolerance: int, public_url: str | None) -> None:
        self._secrets = secrets
        self._tolerance = tolerance
        self._public_url = public_url

    def verify(self, headers: Mapping[str, str], body: bytes, now: float, *,
               method: str = "POST", url: str = "") -> Verified:
        given = _header(headers, "x-hubspot-signature-v3").strip()
        stamp = _header(headers, "x-hubspot-request-timestamp")
        if not stamp.isdigit():
            raise SignatureError(f"timestamp {stamp[:32]!r} is not an integer")
        ts = _timestamp(str(int(stamp) // 1000), now, self._tolerance)
        target = unquote(self._public_url or url)
        expected = [sign_hubspot(s, method, target, body, int(stamp)) for s in self._secrets]
        _check_match([given], expected)
        return Verified(delivery_id=_batch_id(body), timestamp=ts)


def _batch_id(body: bytes) -> str | None:
    """A stable id for a batch of HubSpot events (their ``eventId``s), or ``None``."""
    try:
        events = json.loads(body)
    except ValueError:
        return None
    if isinstance(events, dict):
        events = [events]
    ids = sorted(str(e.get("eventId")) for e in events
                 if isinstance(e, dict) and e.get("eventId") is not None)
    if not ids or not isinstance(events, list) or len(ids) != len(events):
        return None
    return "hs-" + hashlib.sha256(",".join(ids).encode()).hexdigest()[:32]
