"""Reading an HTTP request body under a size limit, decoded from its ``Content-Encoding``: one
reader for the inbound adapters, the admin API and the console (:func:`read_body`)."""

from __future__ import annotations

import zlib
from collections.abc import Mapping

from starlette.requests import ClientDisconnect, Request


class BodyTooLarge(Exception):
    """The request body exceeds the configured limit.

    ``declared`` is the Content-Length that gave it away (``None`` when the streamed body did).
    """

    def __init__(self, limit: int, declared: str | None = None) -> None:
        self.limit, self.declared = limit, declared
        if declared is not None:
            super().__init__(f"body of {declared} bytes exceeds the limit of {limit}")
        else:
            super().__init__(f"body exceeds the limit of {limit} bytes")


class EncodingRefused(Exception):
    """A ``Content-Encoding`` esb does not decode (415), or a body that does not decode (400).
    gzip and deflate are decoded under the same body limit as plain bodies."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.title = "Unsupported content encoding" if status == 415 else "Bad content encoding"


#: ``Content-Encoding`` values read_body decodes, with zlib's ``wbits`` for each.
_DECODED = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS,
            "deflate": zlib.MAX_WBITS}


def decode_body(body: bytes, encoding: str, limit: int) -> bytes:
    """``body`` decoded from ``encoding`` (a ``Content-Encoding`` value), never more than
    ``limit`` bytes of it: :class:`BodyTooLarge` past that, :class:`EncodingRefused` for an
    encoding other than gzip/deflate/identity (415) or a body that does not decode (400)."""
    coding = encoding.strip().lower()
    if coding in ("", "identity"):
        return body
    wbits = _DECODED.get(coding)
    if wbits is None:
        raise EncodingRefused(415, f"Content-Encoding {encoding[:40]!r} is not accepted; send "
                                   "the body as is, or gzip or deflate")
    for bits in (wbits, -zlib.MAX_WBITS) if coding == "deflate" else (wbits,):
        inflater = zlib.decompressobj(bits)
        try:
            out = inflater.decompress(body, limit + 1)
        except zlib.error:
            continue  # "deflate" is sent raw by some clients: try that too
        if len(out) > limit or inflater.unconsumed_tail:
            raise BodyTooLarge(limit)
        if not inflater.eof:
            break
        return out
    raise EncodingRefused(400, f"the body is not valid {coding} data")


class BadContentLength(ValueError):
    """The Content-Length header is not a number (only with ``strict_length``)."""


async def read_body(request: Request, limit: int, *, strict_length: bool = False,
                    headers: Mapping[str, str] | None = None) -> bytes:
    """The request body, refusing (:class:`BodyTooLarge`) anything over ``limit`` bytes,
    decoded from its ``Content-Encoding`` (:func:`decode_body`, the limit holding for the
    decoded body too).

    A non-numeric Content-Length is ignored (the stream is still counted), or refused with
    :class:`BadContentLength` when ``strict_length`` is set. ``headers``: the request's
    :func:`header_dict` when the caller already has it.
    """
    declared = (headers if headers is not None else request.headers).get("content-length")
    if strict_length and declared is not None and not declared.isdigit():
        raise BadContentLength("Content-Length is not a number")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit, declared)
    # The ASGI messages read directly (what Starlette's ``request.stream()`` does, minus an
    # async generator per request: a body nearly always arrives as one message). The stream
    # is consumed: read the body with this function or with Starlette's, not both.
    receive = request.receive
    first = b""
    chunks: list[bytes] | None = None
    size = 0
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "http.disconnect":
            raise ClientDisconnect()
        if kind != "http.request":
            continue
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(limit)
            if not first:
                first = chunk
            else:
                if chunks is None:
                    chunks = [first]
                chunks.append(chunk)
        if not message.get("more_body", False):
            body = b"".join(chunks) if chunks is not None else first
            coding = (headers if headers is not None else request.headers).get(
                "content-encoding")
            return body if coding is None else decode_body(body, coding, limit)
