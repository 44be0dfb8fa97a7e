"""rest inbound: HTTP requests → envelopes; 202 with the id once the bus confirmed.

With ``auth:`` the caller is authenticated before the body is read (401 problem+json with
``WWW-Authenticate`` otherwise) and the principal rides in ``esbheaders.principal``. With
``poll:`` the source also (or only, without ``path``) pulls items from an API
(:mod:`esb.adapters.rest.polling`).
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from esb.adapters.auth.inbound import (
    Unauthorized,
    authenticate,
    build_authenticator,
    unauthorized_problem,
)
from esb.adapters.http import JSONBytesResponse, header_dict, validation_detail
from esb.adapters.rest.answer import answer
from esb.adapters.rest.fhir import fhir_errors
from esb.adapters.rest.params import ParamError, path_names, query_params, typed
from esb.adapters.rest.polling import Poller
from esb.adapters.rest.settings import RestInboundSettings
from esb.adapters.spec import Accepted, HttpRoute, InboundContext
from esb.bus.envelope import CLOUDEVENTS_JSON, Envelope
from esb.bus.errors import BusError, IdempotencyInFlight
from esb.bus.httpbody import BadContentLength, BodyTooLarge, EncodingRefused, read_body
from esb.bus.payload import (
    JsonTooDeep,
    PayloadError,
    declares_other_than_utf8,
    decode,
    is_xml,
    loads_json,
    media_type,
)
from esb.bus.problem import not_taken, problem
from esb.bus.xmlsafe import UnsafeXml, XmlError, XmlLimits, parse_xml

_CE_HEADER_ATTRS = ("id", "source", "type", "subject", "time", "dataschema")


class BadRequest(Exception):
    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail


class RestInbound:
    def __init__(self, settings: RestInboundSettings, ctx: InboundContext,
                 default_max_body: int | None = None) -> None:
        self.settings = settings
        self.ctx = ctx
        self.max_body = settings.max_body or default_max_body or ctx.max_body
        self.accepted_types = {t.lower() for t in settings.content_types}
        self._keep = tuple(n.lower() for n in settings.keep_headers)
        self.authenticator = build_authenticator(settings.auth, ctx.config_dir)
        self.xml_limits = ctx.xml_limits
        self.json_depth = ctx.json_depth
        self.poller = Poller(settings.poll, ctx, settings.type) if settings.poll else None
        methods = tuple(settings.methods)
        self._path_params = bool(settings.path and path_names(settings.path))
        #: Other methods than POST: the method rides in ``esbheaders`` (routes match on it).
        self._note_method = methods != ("POST",)
        handler = fhir_errors(self.handle) if settings.errors == "fhir" else self.handle
        self.routes = [] if settings.path is None else [
            HttpRoute(settings.path, methods, handler)] + ([] if self._path_params else [
                HttpRoute(settings.path + "/{type}", methods, handler)])

    async def start(self) -> None:
        if self.poller is not None:
            await self.poller.start()

    async def stop(self) -> None:
        if self.poller is not None:
            await self.poller.stop()

    async def handle(self, request: Request) -> Response:
        try:
            principal = await authenticate(self.authenticator, request)
        except Unauthorized as exc:
            return unauthorized_problem(exc)
        try:
            headers = header_dict(request)
            body = await _read_body(request, self.max_body, headers)
            envelope = self._envelope(request, body, headers)
        except BadRequest as exc:
            return problem(exc.status, exc.title, exc.detail)
        if self._note_method:
            envelope.esbheaders["method"] = request.method  # a fresh envelope's own dict
        if principal is not None:
            envelope = envelope.model_copy(
                update={"esbheaders": {**envelope.esbheaders, "principal": principal}})
        try:
            # A repeated Idempotency-Key is answered by the runtime with the original result.
            result = await self.ctx.request(envelope)
        except IdempotencyInFlight as exc:
            return problem(409, "Request in flight",
                           "a request with this Idempotency-Key is still being processed "
                           f"({exc}); retry", headers={"Retry-After": "1"})
        except BusError as exc:
            return not_taken(exc, f"the message was not accepted ({exc}); retry later")
        if isinstance(result, Accepted) and result.mismatch:
            return problem(422, "Idempotency-Key reused",
                           "this Idempotency-Key was used for a request with another body; "
                           "the original was not replaced (send new requests with new keys)")
        return _accepted(result) if isinstance(result, Accepted) else answer(result)

    def _envelope(self, request: Request, body: bytes, headers: dict[str, str]) -> Envelope:
        if request.method in BODILESS or self._path_params or request.scope.get("query_string"):
            return self._parameters(request, body, headers)
        return self._body_envelope(request, body, headers)

    def _parameters(self, request: Request, body: bytes, headers: dict[str, str]) -> Envelope:
        """A request with path or query parameters: they ride in ``esbheaders`` (``path.NAME``,
        ``query.NAME``); without a body they are the envelope's data (a JSON object)."""
        types = self.settings.params
        try:
            raw_query = query_params(request.scope.get("query_string", b""))
            query = typed(raw_query, types, "query")
            path = typed({k: v for k, v in request.path_params.items() if k != "type"}
                         if self._path_params else {}, types, "path")
        except ParamError as exc:
            raise BadRequest(400, "Bad parameter", str(exc)) from None
        if request.method in BODILESS or not body:
            attrs: dict[str, Any] = {"source": self.ctx.name, "type": self._type(request),
                                     "data": {**query, **path},
                                     "datacontenttype": "application/json"}
            self._transport(headers, attrs)
            try:
                envelope = Envelope(**attrs)
            except ValidationError as exc:
                raise BadRequest(400, "Invalid CloudEvent", validation_detail(exc)) from None
        else:
            envelope = self._body_envelope(request, body, headers)
        noted = {f"path.{k}": str(v) for k, v in path.items()}
        noted.update({f"query.{k}": v if isinstance(v, str) else ",".join(map(str, v))
                      for k, v in raw_query.items()})
        return envelope.model_copy(update={"esbheaders": {**envelope.esbheaders, **noted}})

    def _type(self, request: Request) -> str:
        return request.path_params.get("type") or self.settings.type \
            or f"{self.ctx.name}.received"

    def _body_envelope(self, request: Request, body: bytes, headers: dict[str, str]
                       ) -> Envelope:
        media, _ = media_type(headers.get("content-type", ""))
        if media == CLOUDEVENTS_JSON and media in self.accepted_types:
            return self._structured(headers, body)
        if media not in self.accepted_types:
            raise BadRequest(415, "Unsupported media type",
                             f"content type {media or '(none)'!r} is not accepted here; "
                             f"send one of: {', '.join(sorted(self.accepted_types))}")
        data = _decode(media, headers.get("content-type", ""), body, self.xml_limits,
                       self.json_depth)
        attrs: dict[str, Any] = {"source": self.ctx.name, "type": self._type(request)}
        if "ce-specversion" in headers:  # CloudEvents HTTP binary mode
            missing = [a for a in ("id", "source", "type") if f"ce-{a}" not in headers]
            if missing:
                raise BadRequest(400, "Invalid CloudEvent",
                                 f"binary-mode CloudEvent lacks ce-{', ce-'.join(missing)}")
            extensions: dict[str, Any] = {}
            for name, value in headers.items():
                if name.startswith("ce-") and name != "ce-specversion":
                    attr = name[3:]
                    if attr in _CE_HEADER_ATTRS or attr in _ENVELOPE_EXTENSIONS:
                        attrs[attr] = value
                    else:
                        extensions[attr] = value
            attrs["specversion"] = headers["ce-specversion"]
            attrs["extensions"] = extensions
        attrs["datacontenttype"] = headers.get("content-type") if media else None
        attrs["data"] = data
        self._transport(headers, attrs)
        try:
            return Envelope(**attrs)
        except ValidationError as exc:
            raise BadRequest(400, "Invalid CloudEvent", validation_detail(exc)) from None

    def _structured(self, headers: dict[str, str], body: bytes) -> Envelope:
        try:
            event = loads_json(body, self.json_depth)
        except orjson.JSONDecodeError as exc:
            raise BadRequest(400, "Malformed JSON", f"the body is not JSON: {exc}") from None
        except JsonTooDeep as exc:
            raise BadRequest(400, "JSON too deep", str(exc)) from None
        attrs: dict[str, Any] = {}
        self._transport(headers, attrs)
        if not isinstance(event, dict):
            raise BadRequest(400, "Invalid CloudEvent", "a structured CloudEvent is an object")
        for k in ("correlationid", "idempotencykey", "traceparent"):
            if k in event:
                attrs.pop(k, None)
        try:
            return Envelope.from_cloudevent(event, **attrs)
        except ValidationError as exc:
            raise BadRequest(400, "Invalid CloudEvent", validation_detail(exc)) from None
        except ValueError as exc:
            raise BadRequest(400, "Invalid CloudEvent", str(exc)) from None

    def _transport(self, h: dict[str, str], attrs: dict[str, Any]) -> None:
        if key := h.get("idempotency-key"):
            if len(key) > MAX_KEY:
                # Never cut it: two keys sharing their first characters would be taken for
                # one, and the second message answered as a duplicate and never delivered.
                raise BadRequest(400, "Idempotency-Key too long",
                                 f"the Idempotency-Key has {len(key)} characters; at most "
                                 f"{MAX_KEY} are accepted")
            attrs["idempotencykey"] = key
        if cid := h.get("x-correlation-id"):
            attrs["correlationid"] = cid[:200]
        if tp := h.get("traceparent"):
            attrs["traceparent"] = tp
        kept = {n: h[n] for n in self._keep if n in h}
        if kept:
            attrs["esbheaders"] = kept


#: Longest Idempotency-Key accepted (longer ones are refused, never cut).
MAX_KEY = 200

#: Methods whose requests carry no body: their path and query parameters are the data.
BODILESS = frozenset({"GET", "DELETE"})

_ENVELOPE_EXTENSIONS = ("correlationid", "causationid", "idempotencykey", "traceparent")


async def _read_body(request: Request, limit: int, headers: dict[str, str]) -> bytes:
    """:func:`esb.bus.httpbody.read_body`, its refusals worded as this adapter's problems."""
    try:
        return await read_body(request, limit, strict_length=True, headers=headers)
    except BadContentLength as exc:
        raise BadRequest(400, "Bad Content-Length", str(exc)) from None
    except EncodingRefused as exc:
        raise BadRequest(exc.status, exc.title, str(exc)) from None
    except BodyTooLarge as exc:
        if exc.declared is not None:
            raise BadRequest(413, "Body too large", f"the body is {exc.declared} bytes; "
                             f"this endpoint takes at most {exc.limit}") from None
        raise BadRequest(413, "Body too large",
                         f"the body exceeds this endpoint's limit of {exc.limit} bytes") from None


def _decode(media: str, content_type: str, body: bytes, xml_limits: XmlLimits,
            json_depth: int) -> Any:
    try:
        data = decode(body, content_type, json_depth=json_depth)
        if is_xml(media):  # refused here, at the edge, rather than dead-lettered later
            if isinstance(data, str) and declares_other_than_utf8(body):
                # the bytes a destination is sent, read as their declaration says
                parse_xml(body, max_bytes=None, limits=xml_limits)
            # The payload as the envelope carries it (what routing and steps parse), shared:
            # an XPath route or a step of this message reads this tree, not a second parse.
            parse_xml(data, max_bytes=None, limits=xml_limits, shared=True)
        return data
    except PayloadError as exc:
        raise BadRequest(400, exc.title, exc.detail) from None
    except UnsafeXml as exc:
        raise BadRequest(400, "XML refused", str(exc)) from None
    except XmlError as exc:
        raise BadRequest(400, "Malformed XML", str(exc)) from None


_REPLAYED = ((b"idempotent-replayed", b"true"),)


def _accepted(accepted: Accepted) -> Response:
    return JSONBytesResponse(orjson.dumps({"id": accepted.id, "status": "accepted"}), 202,
                             _REPLAYED if accepted.duplicate else ())
