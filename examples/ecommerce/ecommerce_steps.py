"""Python steps of the e-commerce example (the project folder is on the import path)."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from urllib.parse import urlencode

from esb.bus.envelope import Envelope
from esb.bus.errors import PermanentError

FORM = "application/x-www-form-urlencoded"


def _note(order: dict[str, Any], name: str) -> str | None:
    for attribute in order.get("note_attributes") or []:
        if attribute.get("name") == name:
            return str(attribute.get("value"))
    return None


def stripe_payment_intent(envelope: Envelope) -> Envelope:
    """A Shopify order → the form body of Stripe's ``POST /v1/payment_intents``: the amount in
    the currency's minor unit, confirmed at once with the payment method the checkout saved
    (note attribute ``stripe_payment_method``), the order in ``metadata``."""
    order = envelope.data
    method = _note(order, "stripe_payment_method")
    if not method:
        raise PermanentError(f"order {order.get('name')} has no stripe_payment_method")
    amount = (Decimal(str(order["total_price"])) * 100).quantize(Decimal(1), ROUND_HALF_UP)
    form = {
        "amount": str(amount),
        "currency": str(order["currency"]).lower(),
        "payment_method": method,
        "confirm": "true",
        "receipt_email": order.get("email") or "",
        "description": f"Order {order.get('name')}",
        "metadata[order_id]": str(order["id"]),
        "metadata[order_number]": str(order.get("name")),
    }
    return envelope.model_copy(update={"data": urlencode(form), "datacontenttype": FORM})
