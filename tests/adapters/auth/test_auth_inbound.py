"""Inbound auth (API key, basic, JWT) on the rest, graphql and soap sources, over real HTTP."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import requests
import zeep
import zeep.exceptions
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from lxml import etree
from pydantic import ValidationError

from esb.adapters.graphql.inbound import GraphqlInbound
from esb.adapters.graphql.settings import GraphqlInboundSettings
from esb.adapters.rest.inbound import RestInbound
from esb.adapters.rest.settings import RestInboundSettings
from esb.adapters.soap.inbound import SoapInbound
from esb.adapters.soap.settings import SoapInboundSettings
from esb.adapters.spec import HttpRoute

ADAPTERS = Path(__file__).parent.parent
Serve = Callable[[list[HttpRoute]], str]
KEY = "k3y-0f-the-partner-7f9a"
HS_SECRET = "hs256-shared-secret-that-is-long-enough-1234"
S11 = "http://schemas.xmlsoap.org/soap/envelope/"


@pytest.fixture(scope="module")
def rsa_keys() -> tuple[Any, str]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, pem.decode()


@pytest.fixture
def rest(serve_routes: Serve, inbound_ctx: Any) -> Callable[..., str]:
    def make(auth: dict[str, Any], **settings: Any) -> str:
        cfg = RestInboundSettings.model_validate({"path": "/in", "auth": auth, **settings})
        return serve_routes(RestInbound(cfg, inbound_ctx, 1024).routes) + "/in"

    return make


def assert_401(response: httpx.Response, challenge: str, *never: str) -> dict[str, Any]:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].startswith(challenge)
    body = response.json()
    assert body["status"] == 401 and body["title"] == "Unauthorized"
    for secret in never:
        assert secret not in response.text
        assert secret not in response.headers["www-authenticate"]
    return body


# -- API key ----------------------------------------------------------------------------------


def test_api_key_header(rest: Callable[..., str], inbound_ctx: Any) -> None:
    url = rest({"type": "api_key", "keys": [KEY, "another-key-1234"]})
    body = assert_401(httpx.post(url, json={}), "ApiKey")
    assert "X-API-Key" in body["detail"]
    wrong = "wrong-key-presented-123"
    assert_401(httpx.post(url, json={}, headers={"X-API-Key": wrong}), "ApiKey", wrong, KEY)
    ok = httpx.post(url, json={"n": 1}, headers={"x-api-key": KEY})
    assert ok.status_code == 202
    assert inbound_ctx.accepted[0].esbheaders["principal"] == "api-key-1"


def test_api_key_query_and_named_keys(rest: Callable[..., str], inbound_ctx: Any) -> None:
    url = rest({"type": "api_key", "query": "api_key", "keys": {"partner-a": KEY}})
    assert_401(httpx.post(url, json={}, headers={"X-API-Key": KEY}), "ApiKey")
    assert_401(httpx.post(url + "?api_key=nope-nope", json={}), "ApiKey", "nope-nope")
    assert httpx.post(url + f"?api_key={KEY}", json={}).status_code == 202
    assert inbound_ctx.accepted[0].esbheaders["principal"] == "partner-a"


def test_auth_comes_before_the_body(rest: Callable[..., str], inbound_ctx: Any) -> None:
    url = rest({"type": "api_key", "keys": [KEY]})
    big = b"x" * 10_000  # over the 1024-byte limit: still 401, not 413
    assert httpx.post(url, content=big, headers={"content-type": "application/json"}
                      ).status_code == 401
    assert httpx.post(url, content=big, headers={"content-type": "application/json",
                                                 "x-api-key": KEY}).status_code == 413
    assert not inbound_ctx.accepted


def test_principal_cannot_be_forged_by_the_caller(rest: Callable[..., str],
                                                  inbound_ctx: Any) -> None:
    url = rest({"type": "api_key", "keys": {"real": KEY}}, keep_headers=["principal"])
    r = httpx.post(url, json={}, headers={"x-api-key": KEY, "principal": "admin"})
    assert r.status_code == 202
    assert inbound_ctx.accepted[0].esbheaders["principal"] == "real"


# -- basic ------------------------------------------------------------------------------------


def test_basic(rest: Callable[..., str], inbound_ctx: Any) -> None:
    url = rest({"type": "basic", "users": {"erp": "pa:ss-word-1"}, "realm": "orders"})
    assert_401(httpx.post(url, json={}), 'Basic realm="orders"')
    assert_401(httpx.post(url, json={}, auth=("erp", "guess-123")), "Basic", "guess-123")
    assert_401(httpx.post(url, json={}, auth=("nobody", "pa:ss-word-1")), "Basic",
               "pa:ss-word-1")
    assert_401(httpx.post(url, json={}, headers={"authorization": "Basic !!!notbase64"}),
               "Basic", "notbase64")
    no_colon = base64.b64encode(b"erp").decode()
    assert_401(httpx.post(url, json={}, headers={"authorization": f"Basic {no_colon}"}),
               "Basic")
    assert httpx.post(url, json={}, auth=("erp", "pa:ss-word-1")).status_code == 202
    assert inbound_ctx.accepted[0].esbheaders["principal"] == "erp"


# -- JWT --------------------------------------------------------------------------------------


def hs_token(**claims: Any) -> str:
    base = {"sub": "svc-shop", "exp": int(time.time()) + 60}
    return jwt.encode({**base, **claims}, HS_SECRET, algorithm="HS256")


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_jwt_hs256_claims(rest: Callable[..., str], inbound_ctx: Any) -> None:
    url = rest({"type": "jwt", "algorithms": ["HS256"], "secret": HS_SECRET,
                "audience": "esb", "issuer": "https://idp.example", "leeway": "5s"})
    good = {"aud": "esb", "iss": "https://idp.example"}
    assert_401(httpx.post(url, json={}), 'Bearer realm="esb"')
    cases = {
        "expired": hs_token(**good, exp=int(time.time()) - 60),
        "not valid yet": hs_token(**good, nbf=int(time.time()) + 60),
        "audience": hs_token(iss="https://idp.example", aud="other"),
        "issuer": hs_token(aud="esb", iss="https://evil.example"),
        "signature": jwt.encode({"sub": "x", "exp": int(time.time()) + 60, **good},
                                "another-secret-that-is-long-enough-000", algorithm="HS256"),
        "'exp'": jwt.encode({"sub": "x", **good}, HS_SECRET, algorithm="HS256"),
        "malformed": "not.a.jwt",
        "algorithm": jwt.encode({"sub": "x", "exp": int(time.time()) + 60, **good}, None,
                                algorithm="none"),
    }
    for expected, token in cases.items():
        r = httpx.post(url, json={}, headers=bearer(token))
        body = assert_401(r, 'Bearer realm="esb", error="invalid_token"', token)
        assert expected in body["detail"], (expected, body)
    within_leeway = hs_token(**good, exp=int(time.time()) - 2)
    assert httpx.post(url, json={}, headers=bearer(within_leeway)).status_code == 202
    assert inbound_ctx.accepted[0].esbheaders["principal"] == "svc-shop"


def test_jwt_rs256_public_key_and_jwks(rest: Callable[..., str], inbound_ctx: Any,
                                       rsa_keys: tuple[Any, str]) -> None:
    private, pem = rsa_keys
    cfg = inbound_ctx.config_dir
    (cfg / "idp.pem").write_text(pem)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    (cfg / "jwks.json").write_text(json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig"}]}))
    claims = {"sub": "partner-x", "exp": int(time.time()) + 60}
    by_pem = rest({"type": "jwt", "public_key_file": "idp.pem"})
    by_jwks = rest({"type": "jwt", "jwks_file": "jwks.json", "principal_claim": "client"})
    token = jwt.encode(claims, private, algorithm="RS256")
    assert httpx.post(by_pem, json={}, headers=bearer(token)).status_code == 202
    kid_token = jwt.encode({**claims, "client": "c-9"}, private, algorithm="RS256",
                           headers={"kid": "k1"})
    assert httpx.post(by_jwks, json={}, headers=bearer(kid_token)).status_code == 202
    assert [e.esbheaders["principal"] for e in inbound_ctx.accepted] == ["partner-x", "c-9"]
    unknown_kid = jwt.encode(claims, private, algorithm="RS256", headers={"kid": "k2"})
    assert "kid" in assert_401(httpx.post(by_jwks, json={}, headers=bearer(unknown_kid)),
                               "Bearer")["detail"]
    # Algorithm confusion: an HS256 token signed with the public key must not pass.
    forged = _hs256_with(pem, claims)
    assert_401(httpx.post(by_pem, json={}, headers=bearer(forged)), "Bearer")


def _hs256_with(key: str, claims: dict[str, Any]) -> str:
    """An HS256 JWT keyed with ``key`` (PyJWT refuses PEM keys for HMAC, so by hand)."""
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = json.dumps({"alg": "HS256", "typ": "JWT"}).encode()
    signing = f"{b64(header)}.{b64(json.dumps(claims).encode())}"
    sig = hmac.new(key.encode(), signing.encode(), hashlib.sha256).digest()
    return f"{signing}.{b64(sig)}"


def test_jwt_settings_are_checked() -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        RestInboundSettings.model_validate({"path": "/x", "auth": {"type": "jwt"}})
    with pytest.raises(ValidationError, match="HS256"):
        RestInboundSettings.model_validate(
            {"path": "/x", "auth": {"type": "jwt", "secret": "s", "algorithms": ["RS256"]}})
    with pytest.raises(ValidationError, match="RS256"):
        RestInboundSettings.model_validate(
            {"path": "/x", "auth": {"type": "jwt", "public_key_file": "k.pem",
                                    "algorithms": ["HS256", "RS256"]}})
    with pytest.raises(ValidationError, match="either header or query"):
        RestInboundSettings.model_validate(
            {"path": "/x", "auth": {"type": "api_key", "header": "a", "query": "b",
                                    "keys": ["k"]}})


def test_settings_repr_and_dump_hide_secrets() -> None:
    cfg = RestInboundSettings.model_validate({"path": "/x", "auth": {
        "type": "basic", "users": {"erp": "visible-if-broken-1"}}})
    jwt_cfg = RestInboundSettings.model_validate({"path": "/x", "auth": {
        "type": "jwt", "algorithms": ["HS256"], "secret": "visible-if-broken-2"}})
    key_cfg = RestInboundSettings.model_validate({"path": "/x", "auth": {
        "type": "api_key", "keys": {"a": "visible-if-broken-3"}}})
    for c in (cfg, jwt_cfg, key_cfg):
        for text in (repr(c), str(c), str(c.model_dump()), c.model_dump_json()):
            assert "visible-if-broken" not in text


# -- graphql and soap -------------------------------------------------------------------------


def test_graphql_inbound_auth(serve_routes: Serve, inbound_ctx: Any) -> None:
    shutil.copy(ADAPTERS / "graphql" / "orders.graphql", inbound_ctx.config_dir)
    cfg = GraphqlInboundSettings.model_validate({
        "path": "/graphql", "sdl": "orders.graphql",
        "auth": {"type": "jwt", "algorithms": ["HS256"], "secret": HS_SECRET}})
    url = serve_routes(GraphqlInbound(cfg, inbound_ctx).routes) + "/graphql"
    query = {"query": 'mutation { cancelOrder(orderId: "1") { id } }'}
    r = httpx.post(url, json=query)
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert r.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert "data" not in r.json()
    expired = hs_token(exp=int(time.time()) - 100)
    r = httpx.post(url, json=query, headers=bearer(expired))
    assert r.status_code == 401 and expired not in r.text
    r = httpx.post(url, json=query, headers=bearer(hs_token()))
    assert r.status_code == 200 and "errors" not in r.json(), r.text
    assert inbound_ctx.accepted[0].esbheaders == {"principal": "svc-shop"}


def test_soap_inbound_auth(serve_routes: Serve, inbound_ctx: Any) -> None:
    shutil.copy(ADAPTERS / "soap" / "orders.wsdl", inbound_ctx.config_dir)
    cfg = SoapInboundSettings.model_validate({
        "path": "/soap/orders", "wsdl": "orders.wsdl",
        "auth": {"type": "basic", "users": {"legacy-erp": "s0ap-pass-word"}}})
    url = serve_routes(SoapInbound(cfg, inbound_ctx).routes) + "/soap/orders"
    r = httpx.get(url + "?wsdl")
    assert r.status_code == 401
    body = (f'<soap:Envelope xmlns:soap="{S11}"><soap:Body/></soap:Envelope>').encode()
    r = httpx.post(url, content=body, auth=("legacy-erp", "wrong-pass-1"),
                   headers={"content-type": "text/xml", "soapaction": '""'})
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Basic")
    doc = etree.fromstring(r.content)
    assert doc.findtext(f"{{{S11}}}Body/{{{S11}}}Fault/faultcode") == "soap:Client"
    assert "wrong-pass-1" not in r.text
    session = requests.Session()
    session.auth = ("legacy-erp", "s0ap-pass-word")
    client = zeep.Client(url + "?wsdl", transport=zeep.Transport(session=session))
    client.bind("OrderService", "OrderPort11").CancelOrder(orderId="A-1")
    assert inbound_ctx.accepted[0].esbheaders["principal"] == "legacy-erp"
    unauthenticated = zeep.Client(url + "?wsdl", transport=zeep.Transport(session=session))
    session.auth = None
    with pytest.raises(zeep.exceptions.Fault) as info:  # a SOAP client sees a Client fault
        unauthenticated.bind("OrderService", "OrderPort11").CancelOrder(orderId="A-2")
    assert info.value.code == "soap:Client" and "authentication" in info.value.message
    assert len(inbound_ctx.accepted) == 1
