"""examples/ecommerce through a real daemon on RabbitMQ, run from a copy of the example folder
exactly as its README says, against its own fake Stripe, ShipStation, Klaviyo and SOAP ERP.

Four signed Shopify orders go in (US, DE, a declined card, Brazil), plus a forged one and a
redelivery. Every system gets what its real API expects, the declined card is dead-lettered
with the payment API's 402, a payment API that answers 429 makes esb retry without charging
twice, and the route file's own test cases pass."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl

import httpx
import pytest
from esbtest.examples import ExampleProject, example_peers, load_fakes, route_cases
from esbtest.waiting import wait_until

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ecommerce"
fakes = load_fakes(EXAMPLE)

DESTINATIONS = ("stripe", "shipstation", "klaviyo", "erp", "manual-fulfilment")


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory, rabbit_url: str,
         ) -> Iterator[tuple[ExampleProject, dict[str, object]]]:
    # The payment API answers its first two calls 429 (its rate is used up), as it does under
    # a burst: esb must retry them without charging twice.
    peers = {"stripe": fakes.FakeStripe(busy=2), "shipstation": fakes.FakeShipStation(),
             "klaviyo": fakes.FakeKlaviyo(), "erp": fakes.FakeErp()}
    with example_peers({name: (peer.app(), name == "erp") for name, peer in peers.items()}
                       ) as urls:
        env = {"STRIPE_API": urls["stripe"], "SHIPSTATION_API": urls["shipstation"],
               "KLAVIYO_API": urls["klaviyo"], "ERP_URL": urls["erp"] + "/"}
        with ExampleProject(EXAMPLE, tmp_path_factory.mktemp("ecommerce"), rabbit_url,
                            DESTINATIONS, env) as project:
            yield project, peers


def post_order(project: ExampleProject, sample: str, webhook_id: str,
               secret: str = fakes.SHOPIFY_SECRET) -> httpx.Response:
    body = (EXAMPLE / "samples" / sample).read_bytes()
    return httpx.post(project.daemon.url + "/hooks/shopify", content=body, timeout=10,
                      headers=fakes.shopify_headers(body, secret=secret, webhook_id=webhook_id))


def test_the_route_files_own_cases_pass() -> None:
    result = route_cases(EXAMPLE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 case(s): 4 passed, 0 failed" in result.stdout


def test_orders_reach_every_system_in_its_own_format(
        shop: tuple[ExampleProject, dict[str, object]]) -> None:
    project, peers = shop
    stripe, shipstation, klaviyo, erp = (peers["stripe"], peers["shipstation"],
                                         peers["klaviyo"], peers["erp"])
    assert isinstance(stripe, fakes.FakeStripe) and isinstance(erp, fakes.FakeErp)
    assert isinstance(shipstation, fakes.FakeShipStation)
    assert isinstance(klaviyo, fakes.FakeKlaviyo)

    answers = [post_order(project, f"order-{name}.json", f"wh-{name}")
               for name in ("us", "de", "declined", "br")]
    assert [a.status_code for a in answers] == [202] * 4, [a.text for a in answers]
    # A forged signature is refused; Shopify's redelivery of a webhook is acknowledged once.
    assert post_order(project, "order-us.json", "wh-forged", secret="wrong").status_code == 401
    again = post_order(project, "order-us.json", "wh-us")
    assert again.status_code == 202 and again.json().get("duplicate") is True

    assert wait_until(lambda: len(stripe.charges) == 3 and len(shipstation.orders) == 3
                      and len(klaviyo.events) == 4 and len(erp.invoices) == 1, 60), \
        (len(stripe.charges), len(shipstation.orders), len(klaviyo.events), len(erp.invoices),
         project.daemon.log())

    # Payments: form-encoded, in minor units, one charge per order although 429s were retried.
    assert 429 in stripe.answers, stripe.answers
    charged = sorted(c["metadata"]["order_number"] for c in stripe.charges)
    assert charged == ["#1001", "#1002", "#1004"]
    de = next(c for c in stripe.charges if c["metadata"]["order_number"] == "#1002")
    assert (de["amount"], de["currency"]) == (119000, "eur")
    assert len(stripe.keys) == 4  # one idempotency key per order, the declined one included

    # The declined card is a permanent failure: dead-lettered with the API's answer.
    def declined_in_dlq() -> list[dict[str, object]]:
        rows = project.daemon.admin("GET", "/admin/dlq").json()
        items = rows.get("items", rows) if isinstance(rows, dict) else rows
        return [r for r in items if r.get("destination") == "stripe"]
    assert wait_until(lambda: len(declined_in_dlq()) == 1, 30), project.daemon.log()
    assert "402" in json.dumps(declined_in_dlq()[0])

    # Fulfilment: US, DE and the declined order (fulfilment does not wait for payment here);
    # Brazil went to the manual queue instead.
    assert sorted(o["orderNumber"] for o in shipstation.orders) == ["#1001", "#1002", "#1003"]
    us = next(o for o in shipstation.orders if o["orderNumber"] == "#1001")
    assert us["shipTo"]["postalCode"] == "62701" and us["items"][0]["sku"] == "MUG-BLK"
    manual = project.root / ".esb" / "outbox" / "manual-fulfilment"
    assert wait_until(lambda: any(manual.glob("[!.]*")), 30)

    # Marketing: Klaviyo's JSON:API event for every order.
    names = {e["data"]["attributes"]["properties"]["OrderNumber"] for e in klaviyo.events}
    assert names == {"#1001", "#1002", "#1003", "#1004"}
    assert all(e["data"]["attributes"]["metric"]["data"]["attributes"]["name"]
               == "Placed Order" for e in klaviyo.events)

    # The ERP booked the EU invoice from the XSLT-made SOAP body.
    invoice = erp.invoices[0]
    assert invoice["InvoiceNumber"] == "INV-1002" and invoice["Total"] == "1190.00"
    assert invoice["Lines"] == [{"Sku": "DESK-OAK", "Quantity": 1, "UnitPrice": "1000.00"}]


def test_form_bodies_are_what_stripe_documents() -> None:
    body = fakes.form_to_nested(parse_qsl("amount=100&metadata%5Border_id%5D=7"))
    assert body == {"amount": "100", "metadata": {"order_id": "7"}}
