"""GraphQL outbound: one query/mutation per envelope; ``errors`` fail it even under 200. As
a request/reply destination it answers with the response's ``data``."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
from graphql import GraphQLError, OperationDefinitionNode, parse

from esb.adapters.auth.outbound import build_outbound_auth, redact_url, scrubbed
from esb.adapters.graphql.settings import GraphqlOutboundSettings
from esb.adapters.graphql.variables import build_variables
from esb.adapters.http import (
    PooledClient,
    check_host,
    is_transient_status,
    raise_for_status,
    retry_after,
    transport_error,
)
from esb.adapters.spec import OutboundContext
from esb.bus.envelope import Envelope
from esb.bus.errors import ConfigError, PermanentError, TransientError
from esb.bus.reply import Reply

ACCEPT = "application/graphql-response+json, application/json;q=0.9"


def load_document(text: str, operation_name: str | None, where: str) -> None:
    """Check that ``text`` parses and names exactly one operation to run."""
    try:
        document = parse(text)
    except GraphQLError as exc:
        raise ConfigError([f"document: {where}: {exc.message}"]) from exc
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    names = [op.name.value for op in operations if op.name]
    if not operations:
        raise ConfigError([f"document: {where} holds no operation"])
    if operation_name is None and len(operations) > 1:
        raise ConfigError([f"document: {where} holds several operations ({', '.join(names)}); "
                           "set operation_name"])
    if operation_name is not None and operation_name not in names:
        raise ConfigError([f"operation_name: {operation_name!r} is not in {where}"])


class GraphqlOutbound(PooledClient):
    """Posts the configured document with variables taken from each envelope."""

    def __init__(self, settings: GraphqlOutboundSettings, ctx: OutboundContext) -> None:
        check_host(settings.url, ctx.allowed_hosts)
        path = ctx.config_dir / settings.document
        try:
            self.document = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError([f"document: cannot read {path}: {exc}"]) from exc
        load_document(self.document, settings.operation_name, str(path))
        self.settings = settings
        self.ctx = ctx
        self._permanent = frozenset(settings.permanent_error_codes)
        self.auth = build_outbound_auth(settings.auth, ctx.http, ctx.allowed_hosts)

    async def send(self, envelope: Envelope) -> int:
        return (await self._call(envelope))[0].status_code

    async def request(self, envelope: Envelope) -> Reply:
        """Request/reply: the response's ``data`` as JSON (``errors`` fail as in ``send``)."""
        response, payload = await self._call(envelope)
        return Reply(response.status_code, {}, orjson.dumps(payload["data"]), "application/json")

    async def _call(self, envelope: Envelope) -> tuple[httpx.Response, dict[str, Any]]:
        s = self.settings
        request: dict[str, Any] = {"query": self.document,
                                   "variables": build_variables(envelope, s.variables)}
        if s.operation_name:
            request["operationName"] = s.operation_name
        headers = {**s.headers, "content-type": "application/json", "accept": ACCEPT,
                   "idempotency-key": envelope.key}
        what = f"GraphQL {redact_url(s.url)}"
        client = self.client()
        try:
            body = orjson.dumps(request)
        except TypeError as exc:
            raise PermanentError(f"variables are not JSON-serializable: {exc}") from exc
        with scrubbed(self.auth, url=s.url):
            try:
                response = await client.post(s.url, content=body, headers=headers,
                                             timeout=s.timeout, auth=self.auth)
            except httpx.HTTPError as exc:
                raise transport_error(exc, what) from exc
            return response, self._check(response, what)

    def _check(self, response: httpx.Response, what: str) -> dict[str, Any]:
        """Errors in the body first (by code), then the HTTP status."""
        try:
            payload = orjson.loads(response.content) if response.content else None
        except orjson.JSONDecodeError:
            payload = None
        errors = payload.get("errors") if isinstance(payload, dict) else None
        status = response.status_code
        if errors:
            codes = [str((e.get("extensions") or {}).get("code", "")) if isinstance(e, dict)
                     else "" for e in errors]
            messages = "; ".join(str(e.get("message", e)) if isinstance(e, dict) else str(e)
                                 for e in errors[:3])
            message = f"{what}: {messages} (codes: {', '.join(c for c in codes if c) or '-'})"
            if any(code in self._permanent for code in codes) or (
                    400 <= status < 500 and not is_transient_status(status)):
                raise PermanentError(message, status=status)
            raise TransientError(message, status=status, retry_after=retry_after(response))
        raise_for_status(response, what)
        if not isinstance(payload, dict) or "data" not in payload:
            raise TransientError(f"{what}: HTTP {status} without a GraphQL response body",
                                 status=status)
        return payload
