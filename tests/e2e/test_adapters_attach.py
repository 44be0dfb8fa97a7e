"""A legacy SOAP service, a GraphQL API, a webhook producer and an AMQP-speaking system attach
to one daemon on RabbitMQ through esb.yaml and a route file alone, in both directions, each
with its own authentication:

* the legacy CRM calls ``RegisterCustomer`` over SOAP (zeep, HTTP basic auth) → the customer
  is upserted at the CRM's GraphQL API (graphql-core, bearer token);
* a partner posts a ``shipOrder`` mutation (httpx, HS256 JWT) → a Standard Webhooks-signed
  delivery reaches the partner's receiver, which verifies it with ``standardwebhooks``;
* the billing provider posts a Standard Webhooks delivery (signed with ``standardwebhooks``)
  → it is published to an exchange of the legacy broker (a vhost of its own);
* the legacy system's queue on that vhost is consumed → the envelope reaches the REST archive.

Every secret is a ``${VAR}`` reference in esb.yaml: the file holds none of their values, and
the same file with the values written in is refused by the config loader.
"""

from __future__ import annotations

import base64
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import jwt
import orjson
import pytest
import requests
import zeep
from esbtest.asgi import serve_in_thread
from esbtest.legacy_broker import Legacy, legacy_broker
from esbtest.sink import Received, Sink
from esbtest.waiting import wait_until
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from esb.bus.config.loader import load_config
from esb.bus.config.secrets import LITERAL_SECRET
from esb.bus.errors import ConfigError

ADAPTER_TESTS = Path(__file__).parents[1] / "adapters"
for _folder in ("graphql",):  # the CRM lives with those tests
    if str(ADAPTER_TESTS / _folder) not in sys.path:
        sys.path.insert(0, str(ADAPTER_TESTS / _folder))

from test_graphql_outbound import crm_app  # noqa: E402

pytestmark = pytest.mark.rabbitmq



@pytest.fixture(scope="module")
def legacy() -> Iterator[Legacy]:
    """The legacy system's broker: a vhost of its own, made and deleted with the module."""
    with legacy_broker() as scope:
        yield scope

DATA = Path(__file__).parent / "data" / "attach"
SOAP_USER = "legacy-crm"
AUDIENCE = "esb-partners"
SOAP_PASSWORD = "crm-basic-passw0rd-5813"
JWT_SECRET = "partner-jwt-hs256-secret-0123456789abcdef"
CRM_TOKEN = "crm-graphql-bearer-token-2468"
INBOUND_WHSEC = "whsec_" + base64.b64encode(b"billing-provider-signing-key-01").decode()
OUTBOUND_WHSEC = "whsec_" + base64.b64encode(b"partner-receiver-signing-key-02").decode()
#: What the daemon's environment holds (the legacy broker's URL is added per run).
SECRETS = {"ATTACH_SOAP_PASSWORD": SOAP_PASSWORD, "ATTACH_JWT_SECRET": JWT_SECRET,
           "ATTACH_CRM_TOKEN": CRM_TOKEN, "ATTACH_INBOUND_WHSEC": INBOUND_WHSEC,
           "ATTACH_OUTBOUND_WHSEC": OUTBOUND_WHSEC}
DESTINATIONS = ("crm-graphql", "partner-hook", "legacy-exchange", "archive")
#: Where each secret sits in esb.yaml.
SECRET_KEYS = {"admin.token", f"sources.legacy-crm.auth.users.{SOAP_USER}",
               "sources.partner-graphql.auth.secret", "sources.billing-hooks.secrets.0",
               "sources.legacy-queue.url", "destinations.crm-graphql.auth.token",
               "destinations.partner-hook.secrets.0", "destinations.legacy-exchange.url"}
FILES = {"wsdl/customers.wsdl": (DATA / "customers.wsdl").read_text(),
         "graphql/shipping.graphql": (DATA / "shipping.graphql").read_text(),
         "graphql/upsert-customer.graphql": (DATA / "upsert-customer.graphql").read_text()}
ROUTES = {"attach.yaml": (DATA / "attach.yaml").read_text()}
INVOICE = {"type": "invoice.paid", "data": {"invoice": "INV-77", "amount": 120.5}}


def attach_config(bus: dict[str, Any], crm_url: str, hooks_url: str, archive_url: str,
                  legacy_names: dict[str, str]) -> dict[str, Any]:
    """esb.yaml: four sources and four destinations, every secret a ``${VAR}``."""
    delivery = {"max_attempts": 5, "timeout": "5s", "backoff": {"initial": "200ms", "max": "1s"}}
    return {
        "bus": bus,
        "sources": {
            "legacy-crm": {"adapter": "soap", "path": "/soap/customers",
                           "wsdl": "wsdl/customers.wsdl",
                           "auth": {"type": "basic",
                                    "users": {SOAP_USER: "${ATTACH_SOAP_PASSWORD}"}}},
            "partner-graphql": {"adapter": "graphql", "path": "/graphql/shipping",
                                "sdl": "graphql/shipping.graphql",
                                "auth": {"type": "jwt", "algorithms": ["HS256"],
                                         "secret": "${ATTACH_JWT_SECRET}",
                                         "audience": AUDIENCE}},
            "billing-hooks": {"adapter": "webhook", "path": "/hooks/billing",
                              "secrets": ["${ATTACH_INBOUND_WHSEC}"]},
            "legacy-queue": {"adapter": "amqp", "url": "${ATTACH_LEGACY_URL}",
                             "queue": legacy_names["queue"], "retry_delay": "200ms",
                             "reconnect_max": "1s"},
        },
        "destinations": {
            "crm-graphql": {"adapter": "graphql", "url": crm_url + "/graphql",
                            "document": "graphql/upsert-customer.graphql",
                            "variables": {"input": "data", "source": "source"},
                            "auth": {"type": "bearer", "token": "${ATTACH_CRM_TOKEN}"},
                            "delivery": delivery},
            "partner-hook": {"adapter": "webhook", "url": hooks_url + "/shipments",
                             "secrets": ["${ATTACH_OUTBOUND_WHSEC}"], "delivery": delivery},
            "legacy-exchange": {"adapter": "amqp", "url": "${ATTACH_LEGACY_URL}",
                                "exchange": legacy_names["exchange"],
                                "routing_key": "billing.{type}", "delivery": delivery},
            "archive": {"adapter": "rest", "url": archive_url + "/archive",
                        "cloudevents": "binary", "delivery": delivery},
        },
    }


# -- the outside systems ------------------------------------------------------------------------


@pytest.fixture
def crm() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """The CRM's GraphQL API: (base URL, the requests it took)."""
    received: list[dict[str, Any]] = []
    with serve_in_thread(crm_app(received)) as url:
        yield url, received


def verified_only(rec: Received) -> tuple[int, dict[str, str]]:
    """The partner's receiver: 200 for a valid Standard Webhooks signature, else 401."""
    try:
        Webhook(OUTBOUND_WHSEC).verify(rec.body, rec.headers)
    except WebhookVerificationError:
        return 401, {}
    return 200, {}


@pytest.fixture
def partner_hooks() -> Iterator[Sink]:
    receiver = Sink(status_for=verified_only)
    yield receiver
    receiver.close()


def legacy_topology(legacy: Legacy) -> dict[str, str]:
    """On the legacy vhost: a topic exchange and two queues bound to ``billing.#`` — the
    legacy system's own (consumed by the daemon again) and an audit copy the test reads."""
    names = {"exchange": legacy.exchange("billing", "topic"),
             "queue": legacy.queue("billing-in"), "audit": legacy.queue("billing-audit")}
    for queue in (names["queue"], names["audit"]):
        legacy.bind(queue, names["exchange"], "billing.#")
    return names


# -- the inbound calls ------------------------------------------------------------------------


def register_customer(url: str) -> str:
    """The legacy CRM calls RegisterCustomer with zeep over basic auth; the tracking id."""
    assert httpx.get(url + "?wsdl").status_code == 401  # not even the WSDL without credentials
    session = requests.Session()
    session.trust_env = False
    session.auth = (SOAP_USER, SOAP_PASSWORD)
    client = zeep.Client(url + "?wsdl", transport=zeep.Transport(session=session))
    ack = client.service.RegisterCustomer(customerId="C-7", name="Ada Lovelace")
    assert ack.status == "ACCEPTED"
    return str(ack.trackingId)


def ship_order(url: str) -> str:
    """The partner posts a shipOrder mutation with an HS256 bearer JWT; the receipt id."""
    request = {"query": "mutation Ship($o: ID!, $c: String!) "
                        "{ shipOrder(orderId: $o, carrier: $c) { id status } }",
               "variables": {"o": "O-9", "c": "DHL"}}
    refused = httpx.post(url, json=request)
    assert refused.status_code == 401
    assert refused.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    token = jwt.encode({"sub": "partner-7", "aud": AUDIENCE, "exp": int(time.time()) + 300},
                       JWT_SECRET, algorithm="HS256")
    response = httpx.post(url, json=request, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    receipt = response.json()["data"]["shipOrder"]
    assert receipt["status"] == "ACCEPTED"
    return str(receipt["id"])


def signed(secret: str, msg_id: str, body: bytes) -> dict[str, str]:
    now = datetime.now(tz=UTC)
    return {"content-type": "application/json", "webhook-id": msg_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(secret).sign(msg_id, now, body.decode())}


def post_invoice(url: str) -> str:
    """The billing provider posts a signed Standard Webhooks delivery; its webhook-id."""
    msg_id = f"msg_{uuid.uuid4().hex}"
    body = orjson.dumps(INVOICE)
    forged = signed(OUTBOUND_WHSEC, msg_id, body)  # a key the source does not hold
    assert httpx.post(url, content=body, headers=forged).status_code == 401
    response = httpx.post(url, content=body, headers=signed(INBOUND_WHSEC, msg_id, body))
    assert response.status_code == 202, response.text
    assert response.json() == {"id": msg_id, "duplicate": False}
    return msg_id


# -- secrets ------------------------------------------------------------------------------------


def assert_secrets_are_references(root: Path, env: dict[str, str]) -> None:
    """esb.yaml names every secret as ``${VAR}``; written in as values, the loader refuses."""
    path = root / "config" / "esb.yaml"
    text = path.read_text()
    values = [env[name] for name in (*SECRETS, "ATTACH_LEGACY_URL", "ESB_ADMIN_TOKEN")]
    assert not [v for v in values if v in text], "a secret value is written in esb.yaml"
    load_config(path, env, base_dir=root)  # the references resolve
    literal = text
    for name, value in env.items():
        literal = literal.replace(f"${{{name}}}", value)
    literal_path = root / "literal" / "esb.yaml"
    literal_path.parent.mkdir()
    literal_path.write_text(literal)
    with pytest.raises(ConfigError) as refused:
        load_config(literal_path, env, base_dir=root)
    keys = {p.removesuffix(f": {LITERAL_SECRET}").rsplit(": ", 1)[1]
            for p in refused.value.problems if p.endswith(LITERAL_SECRET)}
    assert keys == SECRET_KEYS, refused.value.problems


# -- the test -----------------------------------------------------------------------------------


def test_soap_graphql_webhook_and_amqp_attach_by_configuration(
        rabbit: Any, sink: Sink, daemon_factory: Any, legacy: Legacy,
        crm: tuple[str, list[dict[str, Any]]], partner_hooks: Sink) -> None:
    crm_url, crm_received = crm
    names = legacy_topology(legacy)
    env = {**SECRETS, "ATTACH_LEGACY_URL": legacy.url}
    d = daemon_factory(attach_config(rabbit.bus(*DESTINATIONS), crm_url, partner_hooks.url,
                                     sink.url, names), ROUTES, env=env, files=FILES)
    assert_secrets_are_references(d.root, d.env)
    d.start()

    tracking = register_customer(f"{d.url}/soap/customers")
    receipt = ship_order(f"{d.url}/graphql/shipping")
    delivery = post_invoice(f"{d.url}/hooks/billing")

    # Delivery is at least once: a hop may repeat, always under the same key.
    # SOAP in → GraphQL out: the customer, reshaped from the SOAP body, with the CRM's token
    upsert = wait_until(lambda: crm_received, "the upsert at the CRM", daemon=d)[0]
    assert upsert["body"]["variables"] == {"input": {"id": "C-7", "name": "Ada Lovelace"},
                                           "source": "legacy-crm"}
    assert upsert["headers"]["authorization"] == f"Bearer {CRM_TOKEN}"
    assert {r["headers"]["idempotency-key"] for r in crm_received} == {tracking}

    # GraphQL in → webhook out: verified by the receiver (only verified requests are recorded)
    shipment = wait_until(lambda: partner_hooks.received, "the partner's webhook", daemon=d)[0]
    assert shipment.path == "/shipments"
    assert {r.headers["webhook-id"] for r in partner_hooks.received} == {receipt}
    event = orjson.loads(shipment.body)
    assert (event["type"], event["data"]) == ("shipOrder", {"orderId": "O-9", "carrier": "DHL"})

    # webhook in → AMQP out, on the legacy vhost (the audit queue's copy)
    published = wait_until(lambda: legacy.get_all(names["audit"]),
                           "the message on the legacy broker", daemon=d)
    method, props, body = published[0]
    assert method.routing_key == "billing.invoice.paid"
    assert (props.message_id, props.type, props.app_id) == (delivery, "invoice.paid",
                                                            "billing-hooks")
    assert props.content_type == "application/json"
    assert {p.headers["idempotency-key"] for _, p, _ in published} == {delivery}
    assert orjson.loads(body) == INVOICE

    # AMQP in (the legacy queue on that vhost) → REST out: identity and type kept end to end
    archived = wait_until(lambda: sink.received, "the archived invoice", daemon=d)[0]
    assert archived.path == "/archive" and sink.unique() == {delivery}
    assert (archived.headers["ce-type"], archived.headers["ce-source"]) == ("invoice.paid",
                                                                            "billing-hooks")
    assert orjson.loads(archived.body) == INVOICE
    assert d.stop() == 0
    assert legacy.count(names["queue"]) == 0  # consumed and acked, none left behind
