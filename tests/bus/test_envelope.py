"""The canonical envelope: CloudEvents structured JSON, AMQP mapping, payload fidelity."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from esb.bus.envelope import Attempt, Envelope, Hop, bookkeeping, new_id

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20)


@settings(max_examples=200, deadline=None)
@given(data=json_values, subject=st.none() | st.text(
    st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=20))
def test_json_data_round_trips(data: object, subject: str | None) -> None:
    env = Envelope(source="shop", type="order.created", subject=subject, data=data,
                   datacontenttype="application/json", idempotencykey="k1")
    back = Envelope.from_json(env.to_json())
    assert back == env
    assert back.data == data


@settings(max_examples=100, deadline=None)
@given(payload=st.binary(max_size=200))
def test_binary_data_travels_as_base64(payload: bytes) -> None:
    env = Envelope(source="s", type="t", data=payload, datacontenttype="application/pdf")
    event = orjson.loads(env.to_json())
    assert "data" not in event
    assert base64.b64decode(event["data_base64"]) == payload
    assert Envelope.from_json(env.to_json()).data == payload


@settings(max_examples=100, deadline=None)
@given(text=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=100))
def test_xml_and_text_stay_text_byte_for_byte(text: str) -> None:
    xml = f'<?xml version="1.0"?>\n<order  a="1" >\r\n  <x>{text!r}</x><!-- c --></order>'
    env = Envelope(source="s", type="t", data=xml, datacontenttype="application/xml")
    back = Envelope.from_json(env.to_json())
    assert back.data == xml
    assert back.data_bytes() == xml.encode("utf-8")


def test_structured_form_is_a_cloudevent_with_extensions() -> None:
    t = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    env = Envelope(id="e1", source="urn:shop", type="order.created", time=t, data={"a": 1},
                   datacontenttype="application/json", correlationid="c1",
                   traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                   esbendpoint="shop", esbheaders={"soapaction": "urn:Submit"},
                   extensions={"tenant": "acme"},
                   esbhops=[Hop(at=t, step="accepted", instance="i1")],
                   esbattempts=[Attempt(at=t, destination="erp", outcome="transient",
                                        status=503, latency_ms=1.5)])
    event = orjson.loads(env.to_json())
    assert event["specversion"] == "1.0"
    assert event["time"] == "2026-01-02T03:04:05Z"
    assert event["tenant"] == "acme"
    assert event["correlationid"] == "c1"
    # CloudEvents attributes are scalars: the structured bookkeeping travels as JSON text
    assert all(isinstance(v, str | int | bool) for k, v in event.items() if k != "data")
    assert orjson.loads(event["esbheaders"]) == {"soapaction": "urn:Submit"}
    readable = bookkeeping(event)
    assert readable["esbattempts"][0]["status"] == 503
    assert readable["esbhops"][0]["step"] == "accepted"
    assert Envelope.from_cloudevent(event) == env
    # events written before (arrays and objects in place) are still read
    assert Envelope.from_cloudevent(readable) == env


def test_extension_values_must_be_cloudevents_scalars() -> None:
    base = {"specversion": "1.0", "id": "1", "source": "s", "type": "t"}
    for bad in ({"x": 1}, [1, 2], 1.5, None):
        with pytest.raises(ValueError, match="tenant"):
            Envelope.from_cloudevent({**base, "tenant": bad})
    with pytest.raises(ValueError, match="esbhops"):
        Envelope.from_cloudevent({**base, "esbhops": "[not json"})
    ok = Envelope.from_cloudevent({**base, "tenant": "acme", "n": 3, "flag": True})
    assert ok.extensions == {"tenant": "acme", "n": 3, "flag": True}


def test_amqp_properties_show_the_envelope() -> None:
    env = Envelope(id="e1", source="shop", type="order.created", correlationid="c1",
                   idempotencykey="k1")
    props = env.amqp_properties()
    assert props["message_id"] == "e1"
    assert props["correlation_id"] == "c1"
    assert props["type"] == "order.created"
    assert props["content_type"] == "application/cloudevents+json"
    assert props["delivery_mode"] == 2
    assert "headers" not in props  # the body says it all (structured mode)
    assert isinstance(props["timestamp"], int)


def test_key_defaults_to_id() -> None:
    env = Envelope(source="s", type="t")
    assert env.key == env.id
    assert Envelope(source="s", type="t", idempotencykey="k").key == "k"


@pytest.mark.parametrize("event", [
    {"id": "1", "source": "s", "type": "t"},                       # no specversion
    {"specversion": "0.3", "id": "1", "source": "s", "type": "t"},
    {"specversion": "1.0", "id": "", "source": "s", "type": "t"},
    {"specversion": "1.0", "id": "1", "source": "s"},
    {"specversion": "1.0", "id": "1", "source": "s", "type": "t", "Bad-Name": 1},
    {"specversion": "1.0", "id": "1", "source": "s", "type": "t", "data": 1,
     "data_base64": "AA=="},
    {"specversion": "1.0", "id": "1", "source": "s", "type": "t", "data_base64": "!!"},
])
def test_invalid_cloudevents_are_refused(event: dict[str, object]) -> None:
    with pytest.raises((ValidationError, ValueError)):
        Envelope.from_cloudevent(event)


def test_new_ids_are_distinct_version_4_uuids() -> None:
    ids = [new_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for text in ids[:200]:
        u = uuid.UUID(text)
        assert str(u) == text and u.version == 4 and u.variant == uuid.RFC_4122


def test_amqp_properties_always_encode() -> None:
    """A CloudEvent from the year 335, a 300-character type or a long non-ASCII correlation
    id cannot go into AMQP properties (short strings, unsigned timestamps): they are left out
    (the body carries them) and the message id becomes a digest, so the publish never fails
    on them (found by fuzzing the REST source with schemathesis)."""
    from datetime import UTC, datetime

    import pika

    env = Envelope(source="s", type="t" * 300, id="i" * 300,
                   time=datetime(335, 10, 31, tzinfo=UTC), correlationid="é" * 200)
    props = env.amqp_properties()
    pika.BasicProperties(**props).encode()  # raises on anything AMQP cannot carry
    assert props["type"] is None and props["correlation_id"] is None
    assert props["timestamp"] is None
    assert len(props["message_id"]) == 64
    ok = Envelope(source="s", type="order.created", correlationid="c-1").amqp_properties()
    assert ok["type"] == "order.created" and ok["correlation_id"] == "c-1"
    assert ok["message_id"] and ok["timestamp"] > 0
