"""Fake versions of the systems this example integrates, behaving like the real APIs where it
matters to an integration: authentication, body formats, idempotency, error codes and rate
limits. They record what they accepted so you (and the test) can see what esb sent.

    python fakes.py                 # serve them all on their default ports (see PORTS)
    python fakes.py send [FILE]     # sign a Shopify order webhook and post it to esb

- Stripe-style payments API: ``POST /v1/payment_intents``, form-encoded, ``Authorization:
  Bearer sk_test_...``, ``Idempotency-Key`` (same key + same parameters replays the first
  answer with ``Idempotent-Replayed: true``; same key + other parameters is a 400
  ``idempotency_error``), 402 ``card_error`` for the declined test card, 429
  ``rate_limit_error`` above its request rate.
- ShipStation-style fulfilment API: ``POST /orders/createorder``, JSON, HTTP basic auth (API key
  and secret), 40 requests a minute announced in ``X-Rate-Limit-*`` headers, 429 beyond.
- Klaviyo-style events API: ``POST /api/events``, a JSON:API body, ``Authorization:
  Klaviyo-API-Key pk_...`` and a ``revision`` header; 202 with no body; JSON:API ``errors``.
- The company's legacy ERP: a SOAP 1.1 ``SubmitInvoice`` operation (spyne), Client fault for an
  invoice number it already booked.

The payloads are invented; field names follow the public API documentation of each system.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import sys
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from spyne import Application, ComplexModel, Decimal, Fault, Integer, ServiceBase, Unicode, rpc
from spyne.model.complex import Array
from spyne.protocol.soap import Soap11
from spyne.server.wsgi import WsgiApplication
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from esb.adapters.testing.peers import PeerServer

HERE = Path(__file__).resolve().parent
PORTS = {"stripe": 9101, "shipstation": 9102, "klaviyo": 9103, "erp": 9104}
STRIPE_KEY = os.environ.get("STRIPE_SECRET_KEY", "sk_test_example_only")
SHIPSTATION_KEY = os.environ.get("SHIPSTATION_API_KEY", "ss-key")
SHIPSTATION_SECRET = os.environ.get("SHIPSTATION_API_SECRET", "ss-secret")
KLAVIYO_KEY = os.environ.get("KLAVIYO_PRIVATE_KEY", "pk_example_only")
SHOPIFY_SECRET = os.environ.get("SHOPIFY_WEBHOOK_SECRET", "shpss_example_only")
DECLINED_CARD = "pm_card_chargeDeclined"   # Stripe's documented test card that is declined
ERP_NS = "urn:example:erp:invoices"


class RateWindow:
    """At most ``limit`` requests in any ``window`` seconds (a sliding log)."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit, self.window = limit, window
        self._stamps: deque[float] = deque()
        self._lock = threading.Lock()

    def take(self) -> tuple[bool, int, float]:
        """(allowed, remaining, seconds until a slot frees)."""
        now = time.monotonic()
        with self._lock:
            while self._stamps and now - self._stamps[0] >= self.window:
                self._stamps.popleft()
            if len(self._stamps) >= self.limit:
                return False, 0, self.window - (now - self._stamps[0])
            self._stamps.append(now)
            return True, self.limit - len(self._stamps), self.window


# -- Stripe ------------------------------------------------------------------------------------

def _stripe_error(status: int, kind: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": {"type": kind, "message": message, **extra}}, status)


def form_to_nested(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Stripe's bracket notation (``metadata[order_id]=1``) as nested mappings."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        parts = key.replace("]", "").split("[")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


@dataclass
class FakeStripe:
    secret_key: str = STRIPE_KEY
    #: requests a second before 429 (Stripe's test mode allows 25)
    rate: int = 25
    #: answer this many of the next requests 429, as when other clients of the same account
    #: used up the rate (a test's way to meet the 429 whatever the machine's speed)
    busy: int = 0
    charges: list[dict[str, Any]] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)
    replays: int = 0
    keys: dict[str, tuple[dict[str, Any], int, dict[str, Any]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._limit = RateWindow(self.rate, 1.0)
        self._lock = threading.Lock()

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/payment_intents", self.create, methods=["POST"])])

    async def create(self, request: Request) -> Response:
        response = await self._create(request)
        self.answers.append(response.status_code)
        return response

    async def _create(self, request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {self.secret_key}":
            return _stripe_error(401, "invalid_request_error", "Invalid API Key provided.")
        if self.busy > 0 or not self._limit.take()[0]:
            self.busy = max(0, self.busy - 1)
            return _stripe_error(429, "rate_limit_error", "Too many requests hit the API "
                                 "too quickly.", code="rate_limit")
        if request.headers.get("content-type", "").split(";")[0] != \
                "application/x-www-form-urlencoded":
            return _stripe_error(400, "invalid_request_error",
                                 "Stripe accepts form-encoded request bodies.")
        params = form_to_nested(parse_qsl((await request.body()).decode(), strict_parsing=False))
        key = request.headers.get("idempotency-key")
        with self._lock:
            if key and key in self.keys:
                first_params, status, body = self.keys[key]
                if first_params != params:
                    return _stripe_error(400, "idempotency_error", "Keys for idempotent "
                                         "requests can only be used with the same parameters "
                                         "they were first used with.")
                self.replays += 1
                return JSONResponse(body, status, headers={"Idempotent-Replayed": "true"})
            status, body = self._charge(params)
            if key:
                self.keys[key] = (params, status, body)
        return JSONResponse(body, status)

    def _charge(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        for name in ("amount", "currency"):
            if name not in params:
                return 400, {"error": {"type": "invalid_request_error", "code":
                                       "parameter_missing", "param": name,
                                       "message": f"Missing required param: {name}."}}
        if not str(params["amount"]).isdigit():
            return 400, {"error": {"type": "invalid_request_error", "code": "parameter_invalid_"
                                   "integer", "param": "amount", "message": "Invalid integer"}}
        intent = {"id": f"pi_{uuid.uuid4().hex[:24]}", "object": "payment_intent",
                  "amount": int(params["amount"]), "currency": params["currency"],
                  "metadata": params.get("metadata", {}),
                  "receipt_email": params.get("receipt_email"), "status": "succeeded"}
        if params.get("payment_method") == DECLINED_CARD:
            return 402, {"error": {"type": "card_error", "code": "card_declined",
                                   "decline_code": "generic_decline",
                                   "message": "Your card was declined.",
                                   "payment_intent": {**intent,
                                                      "status": "requires_payment_method"}}}
        self.charges.append(intent)
        return 200, intent


# -- ShipStation -------------------------------------------------------------------------------

@dataclass
class FakeShipStation:
    api_key: str = SHIPSTATION_KEY
    api_secret: str = SHIPSTATION_SECRET
    per_minute: int = 40
    orders: list[dict[str, Any]] = field(default_factory=list)
    refused: int = 0

    def __post_init__(self) -> None:
        self._limit = RateWindow(self.per_minute, 60.0)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/orders/createorder", self.create, methods=["POST"])])

    async def create(self, request: Request) -> Response:
        token = base64.b64encode(f"{self.api_key}:{self.api_secret}".encode()).decode()
        if request.headers.get("authorization") != f"Basic {token}":
            return JSONResponse({"Message": "Authorization has been denied for this request."},
                                401)
        allowed, remaining, reset = self._limit.take()
        headers = {"X-Rate-Limit-Limit": str(self.per_minute),
                   "X-Rate-Limit-Remaining": str(remaining),
                   "X-Rate-Limit-Reset": str(int(reset))}
        if not allowed:
            self.refused += 1
            return JSONResponse({"Message": "Too Many Requests"}, 429, headers=headers)
        try:
            order = json.loads(await request.body())
        except ValueError:
            return JSONResponse({"Message": "The request is invalid."}, 400, headers=headers)
        missing = [k for k in ("orderNumber", "orderDate", "orderStatus", "billTo", "shipTo")
                   if not order.get(k)]
        ship_to = order.get("shipTo") or {}
        missing += [f"shipTo.{k}" for k in ("name", "street1", "city", "postalCode", "country")
                    if not ship_to.get(k)]
        if missing:
            return JSONResponse({"Message": "The request is invalid.",
                                 "ModelState": {k: ["required"] for k in missing}}, 400,
                                headers=headers)
        order = {**order, "orderId": 1000 + len(self.orders)}
        self.orders.append(order)
        return JSONResponse(order, 200, headers=headers)


# -- Klaviyo -----------------------------------------------------------------------------------

@dataclass
class FakeKlaviyo:
    private_key: str = KLAVIYO_KEY
    events: list[dict[str, Any]] = field(default_factory=list)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/api/events", self.create, methods=["POST"])])

    @staticmethod
    def _errors(status: int, detail: str, pointer: str) -> JSONResponse:
        return JSONResponse({"errors": [{"id": uuid.uuid4().hex, "status": status,
                                         "code": "invalid", "title": "Invalid input.",
                                         "detail": detail, "source": {"pointer": pointer}}]},
                            status, media_type="application/vnd.api+json")

    async def create(self, request: Request) -> Response:
        if request.headers.get("authorization") != f"Klaviyo-API-Key {self.private_key}":
            return self._errors(401, "Incorrect authentication credentials.", "/")
        if not request.headers.get("revision"):
            return self._errors(400, "A revision header is required.", "/")
        try:
            doc = json.loads(await request.body())
        except ValueError:
            return self._errors(400, "The body is not JSON.", "/")
        data = doc.get("data") if isinstance(doc, dict) else None
        if not isinstance(data, dict) or data.get("type") != "event":
            return self._errors(400, "data.type must be 'event'.", "/data/type")
        attributes = data.get("attributes") or {}
        metric = (((attributes.get("metric") or {}).get("data") or {}).get("attributes") or {})
        if not metric.get("name"):
            return self._errors(400, "A metric name is required.", "/data/attributes/metric")
        profile = (((attributes.get("profile") or {}).get("data") or {}).get("attributes")
                   or {})
        if not (profile.get("email") or profile.get("phone_number")):
            return self._errors(400, "A profile needs an email or a phone number.",
                                "/data/attributes/profile")
        self.events.append(doc)
        return Response(status_code=202)


# -- the legacy ERP (SOAP) ---------------------------------------------------------------------

class InvoiceLine(ComplexModel):
    __namespace__ = ERP_NS
    Sku = Unicode(min_occurs=1)
    Quantity = Integer(min_occurs=1)
    UnitPrice = Decimal(min_occurs=1)


class Invoice(ComplexModel):
    __namespace__ = ERP_NS
    InvoiceNumber = Unicode(min_occurs=1)
    OrderNumber = Unicode(min_occurs=1)
    Customer = Unicode(min_occurs=1)
    Country = Unicode(min_occurs=1)
    Currency = Unicode(min_occurs=1)
    Total = Decimal(min_occurs=1)
    Lines = Array(InvoiceLine)


BOOKED: dict[str, list[dict[str, Any]]] = {}   # per ERP instance id, for the service below


class InvoiceService(ServiceBase):
    @rpc(Invoice, _returns=Unicode, _body_style="bare")
    def SubmitInvoice(ctx: Any, invoice: Invoice) -> str:
        booked = BOOKED[ctx.transport.req_env["erp.id"]]
        if any(b["InvoiceNumber"] == invoice.InvoiceNumber for b in booked):
            raise Fault(faultcode="Client.DuplicateInvoice",
                        faultstring=f"invoice {invoice.InvoiceNumber} is already booked")
        booked.append({"InvoiceNumber": invoice.InvoiceNumber,
                       "OrderNumber": invoice.OrderNumber, "Customer": invoice.Customer,
                       "Country": invoice.Country, "Currency": invoice.Currency,
                       "Total": str(invoice.Total),
                       "Lines": [{"Sku": x.Sku, "Quantity": x.Quantity,
                                  "UnitPrice": str(x.UnitPrice)} for x in invoice.Lines or []]})
        return f"ERP-{len(booked):06d}"


class FakeErp:
    def __init__(self) -> None:
        self.id = uuid.uuid4().hex
        self.invoices: list[dict[str, Any]] = BOOKED.setdefault(self.id, [])

    def app(self) -> Any:
        application = Application([InvoiceService], tns=ERP_NS, name="ErpInvoices",
                                  in_protocol=Soap11(validator="lxml"), out_protocol=Soap11())
        inner = WsgiApplication(application)

        def tagged(environ: dict[str, Any], start_response: Any) -> Any:
            environ["erp.id"] = self.id
            return inner(environ, start_response)

        return tagged


# -- the shop: a signed Shopify webhook --------------------------------------------------------

def shopify_headers(body: bytes, topic: str = "orders/create", secret: str = SHOPIFY_SECRET,
                    webhook_id: str | None = None) -> dict[str, str]:
    """The headers Shopify sends: HMAC-SHA256 of the raw body, base64, plus topic and ids."""
    digest = base64.b64encode(hmac.digest(secret.encode(), body, hashlib.sha256)).decode()
    return {"Content-Type": "application/json", "X-Shopify-Hmac-Sha256": digest,
            "X-Shopify-Topic": topic, "X-Shopify-Shop-Domain": "example-shop.myshopify.com",
            "X-Shopify-Webhook-Id": webhook_id or str(uuid.uuid4()),
            "X-Shopify-API-Version": "2024-10"}


def serve_all() -> None:
    stripe, shipstation, klaviyo, erp = FakeStripe(), FakeShipStation(), FakeKlaviyo(), FakeErp()
    with PeerServer(stripe.app(), PORTS["stripe"]), \
            PeerServer(shipstation.app(), PORTS["shipstation"]), \
            PeerServer(klaviyo.app(), PORTS["klaviyo"]), \
            PeerServer(erp.app(), PORTS["erp"], wsgi=True):
        print("fake Stripe :9101  ShipStation :9102  Klaviyo :9103  ERP (SOAP) :9104")
        seen = (0, 0, 0, 0)
        try:
            while True:
                time.sleep(0.5)
                now = (len(stripe.charges), len(shipstation.orders), len(klaviyo.events),
                       len(erp.invoices))
                if now != seen:
                    print(f"charges {now[0]}  fulfilment orders {now[1]}  marketing events "
                          f"{now[2]}  ERP invoices {now[3]}", flush=True)
                    seen = now
        except KeyboardInterrupt:
            pass


def send(path: Path, url: str) -> None:
    import httpx

    body = path.read_bytes()
    answer = httpx.post(url, content=body, headers=shopify_headers(body), timeout=10)
    print(answer.status_code, answer.text)


if __name__ == "__main__":
    if sys.argv[1:2] == ["send"]:
        sample = Path(sys.argv[2]) if len(sys.argv) > 2 else HERE / "samples" / "order-us.json"
        send(sample, os.environ.get("ESB_URL", "http://127.0.0.1:8080") + "/hooks/shopify")
    else:
        serve_all()
