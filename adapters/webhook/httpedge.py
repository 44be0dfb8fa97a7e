"""HTTP edge concerns shared by the HTTP-based adapters (webhook, graphql, soap).

Reading a request body under a size limit, the REST status → delivery error mapping
(2xx accepted; 408/425/429/5xx transient with ``Retry-After``; other statuses permanent),
and the outbound host allow-list check. Kept here until the core grows a shared module.
"""

from __future__ import annotations

import email.utils
import time
from urllib.parse import urlsplit

import httpx
from esb.bus.errors import ConfigError, DeliveryError, PermanentError, TransientError
from starlette.requests import Request

TRANSIENT_STATUSES = frozenset({408, 425, 429})


class BodyTooLarge(Exception):
    """The request body exceeds the configured limit."""


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (``BodyTooLarge``) anything over ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"body of {declared} bytes exceeds the limit of {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def status_error(response: httpx.Response, what: str) -> DeliveryError | None:
    """``None`` for 2xx, else the Transient/PermanentError the status calls for."""
    status = response.status_code
    if 200 <= status < 300:
        return None
    message = f"{what} answered HTTP {status}"
    if status in TRANSIENT_STATUSES or status >= 500:
        return TransientError(message, status=status,
                              retry_after=parse_retry_after(response.headers.get("retry-after")))
    return PermanentError(message, status=status)


def transport_error(exc: httpx.HTTPError, what: str) -> TransientError:
    """A timeout or connection failure: always worth retrying."""
    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "failed"
    return TransientError(f"{what} {kind}: {type(exc).__name__}: {exc}")


def check_host(url: str, allowed: tuple[str, ...], setting: str = "url") -> None:
    """Refuse (``ConfigError``) a URL whose host is not on a non-empty allow-list.

    Entries match exactly, or as a suffix when written ``*.example.com``.
    """
    if not allowed:
        return
    host = (urlsplit(url).hostname or "").lower()
    for entry in allowed:
        entry = entry.lower()
        if host == entry or (entry.startswith("*.") and host.endswith(entry[1:])):
            return
    raise ConfigError([f"{setting}: host {host!r} is not in the outbound allow-list"])
