"""SOAP outbound against a spyne service (the legacy ERP) over real sockets."""

from __future__ import annotations

import base64
import contextlib
import functools
import threading
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import structlog
from lxml import etree
from pydantic import ValidationError
from soap_erp_peer import NS, PASSWORD, RECEIVED, USER, ErpPeer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from zeep.wsdl.utils import etree_to_string

from esb.adapters.soap.faults import (
    SOAP11_ENV,
    Version,
    element_bytes,
    envelope_bytes,
    soap_envelope,
)
from esb.adapters.soap.outbound import SoapOutbound
from esb.adapters.soap.settings import SoapOutboundSettings
from esb.adapters.soap.wsdlcache import CACHE_FOLDER
from esb.adapters.spec import OutboundContext
from esb.bus.envelope import Envelope
from esb.bus.errors import ConfigError, PermanentError, TransientError
from esb.bus.runtime.httptransport import lean_client
from esb.bus.xmlsafe import parse_xml

RAW = ('<e:ReceiveOrder xmlns:e="urn:example:erp"><e:orderId>{id}</e:orderId>'
       "{amount}</e:ReceiveOrder>")


def local_wsdl(peer: ErpPeer, folder: Path) -> str:
    (folder / "erp.wsdl").write_bytes(httpx.get(peer.url + "?wsdl").content)
    return "erp.wsdl"


@contextlib.asynccontextmanager
async def opened(folder: Path, allowed_hosts: tuple[str, ...] = (), lean: bool = False,
                 **settings: Any) -> AsyncIterator[SoapOutbound]:
    """A started outbound (``settings`` over ``operation: ReceiveOrder``); ``lean``: on the
    daemon's client (calls without auth take its short path), else on a plain httpx one."""
    cfg = SoapOutboundSettings.model_validate({"operation": "ReceiveOrder", **settings})
    async with lean_client(30.0) if lean else httpx.AsyncClient() as client:
        out = SoapOutbound(cfg, OutboundContext("erp", folder, lambda: client,
                                                allowed_hosts=allowed_hosts))
        await out.start()
        try:
            yield out
        finally:
            await out.stop()


async def deliver(folder: Path, envelopes: list[Envelope], lean: bool = False,
                  **settings: Any) -> None:
    async with opened(folder, lean=lean, **settings) as out:
        for env in envelopes:
            await out.send(env)


def order(data: Any) -> Envelope:
    return Envelope(source="s", type="order", data=data)


def raw(order_id: str, amount: str | None = "3.5") -> Envelope:
    extra = f"<e:amount>{amount}</e:amount>" if amount is not None else ""
    return Envelope(source="s", type="order", datacontenttype="application/xml",
                    data=RAW.format(id=order_id, amount=extra))


async def test_typed(erp: ErpPeer, tmp_path: Path) -> None:
    await deliver(tmp_path, [order({"orderId": "T-1", "amount": "12.50"})],
                  wsdl=local_wsdl(erp, tmp_path))
    assert [("T-1", Decimal("12.50"))] == RECEIVED


@pytest.mark.parametrize("lean", [False, True])
async def test_raw(erp: ErpPeer, tmp_path: Path, lean: bool) -> None:
    await deliver(tmp_path, [raw("R-1")], wsdl=local_wsdl(erp, tmp_path), mode="raw",
                  lean=lean)
    assert [("R-1", Decimal("3.5"))] == RECEIVED


@pytest.mark.parametrize("lean", [False, True])
async def test_raw_request_answers_the_bodys_element(erp: ErpPeer, tmp_path: Path,
                                                      lean: bool,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Request/reply: the answer's Body element, standalone (the envelope's namespace
    dropped), whichever path the call took — the daemon's client takes its short path, past
    httpx's objects —; a body declaring its encoding goes as well."""
    env = raw("Q-1").model_copy(update={
        "data": '<?xml version="1.0" encoding="UTF-8"?>\n' + raw("Q-1").data})
    async with opened(tmp_path, wsdl=local_wsdl(erp, tmp_path), mode="raw", lean=lean) as out:
        if lean:
            monkeypatch.setattr(type(out.ctx.http()), "build_request", None)
        reply = await out.request(env)
    assert reply.status == 200 and reply.content_type == "application/xml"
    root = etree.fromstring(reply.body)
    assert root.tag == f"{{{NS}}}ReceiveOrderResponse"
    assert "soap" not in reply.body.decode().lower().split(">", 1)[0]
    assert [("Q-1", Decimal("3.5"))] == RECEIVED


async def test_network_wsdl_needs_opt_in(erp: ErpPeer, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="allow_network_wsdl"):
        await deliver(tmp_path, [], wsdl=erp.url + "?wsdl")
    await deliver(tmp_path, [order({"orderId": "N-1", "amount": 1})], wsdl=erp.url + "?wsdl",
                  allow_network_wsdl=True)
    assert RECEIVED[0][0] == "N-1"


@pytest.mark.parametrize("mode", ["typed", "raw"])
@pytest.mark.parametrize("digest", [False, True])
async def test_username_token(secured_erp: ErpPeer, tmp_path: Path, mode: str,
                              digest: bool) -> None:
    wsdl = local_wsdl(secured_erp, tmp_path)
    env = raw("W-1") if mode == "raw" else order({"orderId": "W-1", "amount": 2})
    wsse = {"username": USER, "password": PASSWORD, "digest": digest}
    await deliver(tmp_path, [env], wsdl=wsdl, mode=mode, wsse=wsse)
    assert RECEIVED[0][0] == "W-1"
    with pytest.raises(PermanentError, match="Authentication"):
        await deliver(tmp_path, [env], wsdl=wsdl, mode=mode, wsse={**wsse, "password": "x"})
    with pytest.raises(PermanentError):
        await deliver(tmp_path, [env], wsdl=wsdl, mode=mode)


@pytest.mark.parametrize(("mode", "lean"), [("typed", False), ("raw", False), ("raw", True)])
async def test_faults(erp: ErpPeer, tmp_path: Path, mode: str, lean: bool) -> None:
    wsdl = local_wsdl(erp, tmp_path)
    deliver = functools.partial(globals()["deliver"], lean=lean)

    def env(order_id: str) -> Envelope:
        return raw(order_id) if mode == "raw" else order({"orderId": order_id, "amount": 1})

    with pytest.raises(PermanentError, match=r"Client\.UnknownCustomer") as info:
        await deliver(tmp_path, [env("bad-1")], wsdl=wsdl, mode=mode)
    assert info.value.status == 500
    assert type(info.value.__cause__).__name__ == "Fault"
    with pytest.raises(TransientError, match=r"Server\.Database"):
        await deliver(tmp_path, [env("boom-1")], wsdl=wsdl, mode=mode)
    with pytest.raises(TransientError, match="timed out"):
        await deliver(tmp_path, [env("slow-1")], wsdl=wsdl, mode=mode, timeout=0.2)


async def test_a_fault_can_be_given_an_http_meaning(erp: ErpPeer, tmp_path: Path) -> None:
    """``fault_status``: a legacy service's "not found" fault is a 404 to a request/reply
    caller (not a 502), still permanent for one-way traffic; other faults are unchanged."""
    wsdl = local_wsdl(erp, tmp_path)
    mapped = {"fault_status": {"Client.UnknownCustomer": 404}}
    with pytest.raises(PermanentError, match=r"Client\.UnknownCustomer") as info:
        await deliver(tmp_path, [order({"orderId": "bad-1", "amount": 1})], wsdl=wsdl,
                      **mapped)
    assert (info.value.status, info.value.fault) == (404, None)
    with pytest.raises(TransientError, match=r"Server\.Database") as other:
        await deliver(tmp_path, [order({"orderId": "boom-1", "amount": 1})], wsdl=wsdl,
                      **mapped)
    assert other.value.fault is not None
    with pytest.raises(ValidationError, match="HTTP error status"):
        SoapOutboundSettings.model_validate({"wsdl": "x.wsdl", "operation": "A",
                                             "fault_status": {"Client.X": 200}})


async def test_bad_envelopes_are_permanent(erp: ErpPeer, tmp_path: Path) -> None:
    wsdl = local_wsdl(erp, tmp_path)
    with pytest.raises(PermanentError, match="SchemaValidation"):  # spyne validates the body
        await deliver(tmp_path, [raw("V-1", amount=None)], wsdl=wsdl, mode="raw")
    with pytest.raises(PermanentError, match="well-formed"):
        await deliver(tmp_path, [order("<broken")], wsdl=wsdl, mode="raw")
    with pytest.raises(PermanentError, match="JSON object"):
        await deliver(tmp_path, [order(["x"])], wsdl=wsdl)
    with pytest.raises(PermanentError, match="cannot build"):
        await deliver(tmp_path, [order({"nope": 1})], wsdl=wsdl)
    # (a slow call timed out by an earlier test may still land: only this test's ids count)
    assert [r for r in RECEIVED if not r[0].startswith("slow")] == []


@pytest.mark.parametrize("lean", [False, True])
async def test_http_status_without_fault(erp: ErpPeer, tmp_path: Path,
                                         serve_app: Callable[[object], str],
                                         lean: bool) -> None:
    async def answer(request: Request) -> Response:
        status = int(request.path_params["status"])
        return Response("nope", status_code=status, headers={"Retry-After": "3"})

    base = serve_app(Starlette(routes=[Route("/{status:int}", answer, methods=["POST"])]))
    wsdl = local_wsdl(erp, tmp_path)
    deliver = functools.partial(globals()["deliver"], lean=lean)
    with pytest.raises(TransientError) as info:
        await deliver(tmp_path, [raw("H-1")], wsdl=wsdl, mode="raw", address=f"{base}/503")
    assert (info.value.status, info.value.retry_after) == (503, 3)
    for status in (404, 401):
        with pytest.raises(PermanentError) as refused:
            await deliver(tmp_path, [raw("H-1")], wsdl=wsdl, mode="raw",
                          address=f"{base}/{status}")
        assert refused.value.status == status
    with pytest.raises(TransientError):
        await deliver(tmp_path, [raw("H-1")], wsdl=wsdl, mode="raw",
                      address="http://127.0.0.1:9/erp")


async def test_unknown_operation_is_config_error(erp: ErpPeer, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ReceiveOrder"):
        await deliver(tmp_path, [], wsdl=local_wsdl(erp, tmp_path), operation="Nope")


# -- the WSDL cache ---------------------------------------------------------------------------

WSDL_NS = "http://schemas.xmlsoap.org/wsdl/"
XS_NS = "http://www.w3.org/2001/XMLSchema"


def split_wsdl(wsdl: bytes, location: str = "erp.xsd") -> dict[str, bytes]:
    """The peer's WSDL as two documents: the WSDL importing its schema from ``location``
    (served as ``/erp.xsd``)."""
    doc = etree.fromstring(wsdl)
    types = doc.find(f"{{{WSDL_NS}}}types")
    assert types is not None
    schema = types[0]
    xsd = etree.tostring(schema)  # keeps the namespace declarations in scope (tns, xs)
    types.remove(schema)
    wrapper = etree.SubElement(types, f"{{{XS_NS}}}schema")
    etree.SubElement(wrapper, f"{{{XS_NS}}}import", namespace=NS, schemaLocation=location)
    return {"/erp.wsdl": etree.tostring(doc), "/erp.xsd": xsd}


class DocumentServer:
    """Serves fixed documents over HTTP on 127.0.0.1, counts the GETs of each path and keeps
    the headers (lower-cased names) of each GET."""

    def __init__(self, documents: dict[str, bytes]) -> None:
        self.hits: dict[str, int] = {}
        self.headers: list[dict[str, str]] = []
        served, hits, seen = documents, self.hits, self.headers

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = served.get(self.path)
                hits[self.path] = hits.get(self.path, 0) + 1
                seen.append({k.lower(): v for k, v in self.headers.items()})
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


async def test_url_wsdl_is_cached_and_used_while_its_server_is_down(
        erp: ErpPeer, tmp_path: Path) -> None:
    server = DocumentServer(split_wsdl(httpx.get(erp.url + "?wsdl").content))
    url = server.url + "/erp.wsdl"
    try:
        await deliver(tmp_path, [order({"orderId": "C-1", "amount": 1})], wsdl=url,
                      allow_network_wsdl=True)
    finally:
        server.stop()
    assert server.hits == {"/erp.wsdl": 1, "/erp.xsd": 1}
    cached = sorted((tmp_path / CACHE_FOLDER).iterdir())
    assert len(cached) == 2, "the WSDL and the schema it imports"
    assert all(not p.name.startswith(".tmp-") for p in cached)

    # the server is gone: a fresh outbound starts from the cache and delivers
    with structlog.testing.capture_logs() as logs:
        await deliver(tmp_path, [order({"orderId": "C-2", "amount": 2})], wsdl=url,
                      allow_network_wsdl=True)
    assert [r[0] for r in erp.received] == ["C-1", "C-2"]
    warnings = [e for e in logs if e["event"] == "wsdl unreachable, using the cached copy"]
    assert sorted(e["url"] for e in warnings) == [server.url + "/erp.wsdl",
                                                  server.url + "/erp.xsd"]
    assert all(e["log_level"] == "warning" and "ConnectError" in e["error"]
               for e in warnings)

    # the cache does not open the network: it still needs the opt-in
    with pytest.raises(ConfigError, match="allow_network_wsdl"):
        await deliver(tmp_path, [], wsdl=url)

    # no cached copy: a clear configuration error naming the URL and the cache folder
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    with pytest.raises(ConfigError) as info:
        await deliver(fresh, [], wsdl=url, allow_network_wsdl=True)
    message = str(info.value)
    assert f"wsdl: {url} cannot be fetched (ConnectError" in message
    assert f"no cached copy exists in {fresh / CACHE_FOLDER}" in message


async def test_a_failing_wsdl_server_falls_back_to_the_cache(erp: ErpPeer,
                                                             tmp_path: Path) -> None:
    documents = {"/erp.wsdl": httpx.get(erp.url + "?wsdl").content}
    server = DocumentServer(documents)
    url = server.url + "/erp.wsdl"
    try:
        await deliver(tmp_path, [], wsdl=url, allow_network_wsdl=True)
        documents.clear()  # the server now answers 404
        with structlog.testing.capture_logs() as logs:
            await deliver(tmp_path, [order({"orderId": "C-3", "amount": 3})], wsdl=url,
                          allow_network_wsdl=True)
        assert [e["error"] for e in logs if e["event"].startswith("wsdl unreachable")] == [
            "HTTP 404"]
        assert [r[0] for r in erp.received] == ["C-3"]
        with pytest.raises(ConfigError, match=r"cannot be fetched \(HTTP 404\)"):
            await deliver(tmp_path / "fresh", [], wsdl=url, allow_network_wsdl=True)
    finally:
        server.stop()


# -- HTTP authentication and headers ----------------------------------------------------------

BASIC = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
#: kind -> (auth settings, the Authorization value the peer takes, the setting holding the secret)
AUTHS: dict[str, tuple[dict[str, str], str, str]] = {
    "basic": ({"type": "basic", "username": USER, "password": PASSWORD}, BASIC, "password"),
    "bearer": ({"type": "bearer", "token": "t0ken-erp"}, "Bearer t0ken-erp", "token"),
    "api_key": ({"type": "api_key", "header": "Authorization", "value": "Key k3y-erp"},
                "Key k3y-erp", "value"),
}


def guarded_wsdl(peer: ErpPeer, folder: Path, authorization: str) -> str:
    """The guarded peer's WSDL saved as ``erp.wsdl`` in ``folder``."""
    response = httpx.get(peer.url + "?wsdl", headers={"Authorization": authorization})
    response.raise_for_status()
    (folder / "erp.wsdl").write_bytes(response.content)
    return "erp.wsdl"


@pytest.mark.parametrize("mode", ["typed", "raw"])
@pytest.mark.parametrize("kind", sorted(AUTHS))
async def test_http_auth_reaches_a_guarded_service(tmp_path: Path, kind: str, mode: str) -> None:
    auth, presented, field = AUTHS[kind]
    env = raw("A-1") if mode == "raw" else order({"orderId": "A-1", "amount": 1})
    RECEIVED.clear()
    with ErpPeer(http_auth=lambda value: value == presented) as peer:
        wsdl = guarded_wsdl(peer, tmp_path, presented)
        await deliver(tmp_path, [env], wsdl=wsdl, mode=mode, auth=auth)
        assert [r[0] for r in peer.received] == ["A-1"]
        assert peer.seen[-1][1]["authorization"] == presented

        with pytest.raises(PermanentError, match=r"Client\.Authentication") as missing:
            await deliver(tmp_path, [env], wsdl=wsdl, mode=mode)
        assert missing.value.status == 401

        # the service echoes the refused credentials in its fault: they never reach the error
        stale = f"{auth[field]}-old"
        with pytest.raises(PermanentError) as refused:
            await deliver(tmp_path, [env], wsdl=wsdl, mode=mode, auth={**auth, field: stale})
    message = str(refused.value)
    assert refused.value.status == 401 and "refused credentials ***" in message
    assert stale.rsplit(" ", 1)[-1] not in message
    assert [r[0] for r in peer.received] == ["A-1"]


async def test_headers_and_ws_security_go_alongside_http_auth(tmp_path: Path) -> None:
    RECEIVED.clear()
    with ErpPeer(require_wsse=True, http_auth=lambda value: value == BASIC) as peer:
        wsdl = guarded_wsdl(peer, tmp_path, BASIC)
        await deliver(tmp_path, [raw("H-2")], wsdl=wsdl, auth=AUTHS["basic"][0],
                      wsse={"username": USER, "password": PASSWORD, "digest": True},
                      headers={"X-Tenant": "acme", "content-type": "application/json"},
                      mode="raw")
    assert [r[0] for r in peer.received] == ["H-2"]
    posted = [headers for method, headers in peer.seen if method == "POST"]
    assert len(posted) == 1
    assert posted[0]["x-tenant"] == "acme" and posted[0]["authorization"] == BASIC
    assert posted[0]["content-type"].startswith("text/xml")  # the binding's, not the header's


async def test_raw_and_typed_carry_the_headers(tmp_path: Path) -> None:
    RECEIVED.clear()
    with ErpPeer(http_auth=lambda value: value == BASIC) as peer:
        wsdl = guarded_wsdl(peer, tmp_path, BASIC)
        await deliver(tmp_path, [order({"orderId": "H-4", "amount": 1})], wsdl=wsdl,
                      auth=AUTHS["basic"][0], headers={"X-Tenant": "acme"})
    assert [r[0] for r in peer.received] == ["H-4"]
    assert peer.seen[-1][0] == "POST" and peer.seen[-1][1]["x-tenant"] == "acme"


async def test_oauth2_token_is_fetched_and_refreshed_once_on_401(
        tmp_path: Path, serve_app: Callable[[object], str]) -> None:
    tokens: list[str] = []
    grants: list[str] = []

    async def token(request: Request) -> Response:
        grants.extend(parse_qs((await request.body()).decode())["grant_type"])
        tokens.append(f"tok-{len(tokens) + 1}")
        return JSONResponse({"access_token": tokens[-1], "token_type": "Bearer"})

    idp = serve_app(Starlette(routes=[Route("/token", token, methods=["POST"])]))
    auth = {"type": "oauth2", "token_url": idp + "/token", "client_id": "esb",
            "client_secret": "cl1ent-s3cret"}
    valid = {"Bearer tok-1"}
    RECEIVED.clear()
    with ErpPeer(http_auth=lambda value: value in valid) as peer:
        async with opened(tmp_path, wsdl=peer.url + "?wsdl", allow_network_wsdl=True,
                          auth=auth) as out:
            await out.send(order({"orderId": "O-1", "amount": 1}))
            valid.clear()
            valid.add("Bearer tok-2")  # the service no longer takes tok-1
            await out.send(order({"orderId": "O-2", "amount": 2}))
            valid.clear()  # nor any other: after one refresh the 401 is the answer
            with pytest.raises(PermanentError) as refused:
                await out.send(order({"orderId": "O-3", "amount": 3}))
    assert [r[0] for r in peer.received] == ["O-1", "O-2"]
    assert tokens == ["tok-1", "tok-2", "tok-3"] and set(grants) == {"client_credentials"}
    assert [(method, h["authorization"]) for method, h in peer.seen] == [
        ("GET", "Bearer tok-1"),  # the WSDL, from the service's own origin
        ("POST", "Bearer tok-1"),
        ("POST", "Bearer tok-1"), ("POST", "Bearer tok-2"),
        ("POST", "Bearer tok-2"), ("POST", "Bearer tok-3")]
    assert refused.value.status == 401 and "tok-3" not in str(refused.value)


async def test_credentials_are_not_sent_with_documents_from_another_origin(
        tmp_path: Path) -> None:
    RECEIVED.clear()
    with ErpPeer(http_auth=lambda value: value == BASIC) as peer:
        wsdl = httpx.get(peer.url + "?wsdl", headers={"Authorization": BASIC}).content
        server = DocumentServer(split_wsdl(wsdl))
        try:
            await deliver(tmp_path, [order({"orderId": "D-1", "amount": 1})],
                          wsdl=server.url + "/erp.wsdl", allow_network_wsdl=True,
                          address=peer.url, auth=AUTHS["basic"][0],
                          headers={"X-Tenant": "acme"})
        finally:
            server.stop()
    assert server.hits == {"/erp.wsdl": 1, "/erp.xsd": 1}
    assert all("authorization" not in h and "x-tenant" not in h for h in server.headers)
    assert [r[0] for r in peer.received] == ["D-1"]
    assert peer.seen[-1][1]["authorization"] == BASIC


# -- the outbound allow-list ------------------------------------------------------------------

async def test_allow_list_refuses_a_wsdl_url_when_the_destination_is_built(
        erp: ErpPeer, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^wsdl: host '127\.0\.0\.1' is not in the outbound "
                                          r"allow-list$"):
        async with opened(tmp_path, ("erp.example.com",), wsdl=erp.url + "?wsdl",
                          allow_network_wsdl=True):
            pass
    assert erp.calls == {} and not (tmp_path / CACHE_FOLDER).exists()


async def test_allow_list_refuses_a_schema_imported_from_another_host(
        erp: ErpPeer, tmp_path: Path) -> None:
    documents: dict[str, bytes] = {}
    server = DocumentServer(documents)
    port = server.url.rsplit(":", 1)[1]
    wsdl = httpx.get(erp.url + "?wsdl").content
    try:
        documents.update(split_wsdl(wsdl, f"http://localhost:{port}/erp.xsd"))
        with pytest.raises(ConfigError) as info:
            await deliver(tmp_path, [], wsdl=server.url + "/erp.wsdl", allow_network_wsdl=True,
                          allowed_hosts=("127.0.0.1",))
        assert str(info.value) == (f"wsdl: http://localhost:{port}/erp.xsd: host 'localhost' "
                                   "is not in the outbound allow-list")
        assert server.hits == {"/erp.wsdl": 1}
        documents.update(split_wsdl(wsdl))  # the schema next to the WSDL: allowed
        await deliver(tmp_path, [order({"orderId": "L-1", "amount": 1})],
                      wsdl=server.url + "/erp.wsdl", allow_network_wsdl=True,
                      allowed_hosts=("127.0.0.1",))
    finally:
        server.stop()
    assert [r[0] for r in erp.received] == ["L-1"]


async def test_allow_list_refuses_the_oauth_token_url(erp: ErpPeer, tmp_path: Path) -> None:
    auth = {"type": "oauth2", "token_url": "https://idp.example.org/token", "client_id": "esb",
            "client_secret": "cl1ent-s3cret"}
    with pytest.raises(ConfigError, match=r"^auth\.token_url: host 'idp\.example\.org' is not "
                                          r"in the outbound allow-list$"):
        async with opened(tmp_path, ("127.0.0.1",), wsdl=local_wsdl(erp, tmp_path),
                          auth=auth):
            pass


async def test_a_fault_answered_with_200_fails_on_the_short_path(
        erp: ErpPeer, tmp_path: Path, serve_app: Callable[[object], str]) -> None:
    """A 2xx answer read on the client's short path is still looked at for a fault."""
    fault = (f'<s:Envelope xmlns:s="{SOAP11_ENV}"><s:Body><s:Fault>'
             "<faultcode>s:Client.Nope</faultcode><faultstring>refused</faultstring>"
             "</s:Fault></s:Body></s:Envelope>")

    async def answer(request: Request) -> Response:
        return Response(fault, status_code=200, media_type="text/xml")

    base = serve_app(Starlette(routes=[Route("/erp", answer, methods=["POST"])]))
    with pytest.raises(PermanentError, match=r"Client\.Nope: refused") as info:
        await deliver(tmp_path, [raw("F-1")], wsdl=local_wsdl(erp, tmp_path), mode="raw",
                      address=f"{base}/erp", lean=True)
    assert info.value.status == 200


@pytest.mark.parametrize("body", [
    '<e:R xmlns:e="urn:e"><e:a x="1">t</e:a></e:R>',
    '<?xml version="1.0" encoding="utf-8"?>\n<R a=\'1\'>&amp;&#65;<x></x></R>\n',
    '<soap:R xmlns:soap="urn:not-soap"/>',
    '<?xml version="1.0" encoding="ISO-8859-1"?><R>é</R>',  # text: UTF-8 whatever it says
    b'<?xml version="1.0" encoding="UTF-8"?><R>\xc3\xa9</R>',
])
@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_the_envelope_around_the_bodys_bytes_is_the_trees(body: str | bytes,
                                                          version: Version) -> None:
    """The envelope written around the body's own bytes is the one built as a tree and
    serialized (the same XML; canonical forms equal)."""
    raw_ = body.encode() if isinstance(body, str) else body
    root = parse_xml(body, max_bytes=None)
    element = element_bytes(raw_, root, text=isinstance(body, str))
    assert element is not None
    written = envelope_bytes(version, element)
    tree = etree_to_string(soap_envelope(version, parse_xml(body, max_bytes=None)))
    assert written.startswith(b"<?xml version='1.0' encoding='utf-8'?>\n<soap:Envelope")

    def c14n(data: bytes) -> bytes:
        return etree.tostring(etree.fromstring(data), method="c14n")

    assert c14n(written) == c14n(tree)


@pytest.mark.parametrize("body", [
    b'<?xml version="1.0" encoding="ISO-8859-1"?><R>\xe9</R>',  # bytes in another encoding
    b"\xef\xbb\xbf<R/>",  # a byte-order mark
    b"<!-- before --><R/>",
    b"<R/><?after x?>",
])
def test_what_the_envelope_is_not_written_around(body: bytes) -> None:
    """Bytes that are more than one UTF-8 element take the tree's path."""
    assert element_bytes(body, parse_xml(body, max_bytes=None), text=False) is None
