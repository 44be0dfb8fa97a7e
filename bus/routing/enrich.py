"""The content enricher: a route's ``enrich:`` — what the destination is asked, and how its
answer is merged into the envelope (pure: the asking itself happens at the edge).

The dispatch plan (:mod:`esb.bus.routing.dispatch`) reaches a route with ``enrich:`` and needs
its answer. Without one it stops and names the request it needs (an :class:`EnrichCall`); the
ingress asks the destination through the bus, request/reply, exactly as a request/reply
route's caller would (same queue, bulkhead, breaker, trace), and plans again with the answer.
``esb routes test`` answers from recorded files instead. With the answer:

* a successful one (after the enricher's ``reply`` steps) is combined with the envelope's
  payload — JSON: ``{"message": <payload>, "reply": <answer>}``; XML:
  ``<enrichment><message>…</message><reply>…</reply></enrichment>`` — and the ``merge`` steps
  (jmespath, XSLT, Python …) turn that into the envelope's new payload;
* a failure follows ``on_failure``: ``continue`` goes on with the envelope as it was;
  ``fail`` asks the sender to retry when the failure may pass (:data:`TRANSIENT`: the
  destination failing, no answer in time, its breaker open, its caller instance lost) and
  dead-letters the envelope for the route otherwise (404, a refused request, a reply too
  large or one the ``reply`` steps cannot read).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lxml import etree

from esb.bus.envelope import Envelope
from esb.bus.errors import TransformError, TransientTransformError
from esb.bus.reply import Problem
from esb.bus.routing.model import CacheSpec
from esb.bus.xmlsafe import DEFAULT_LIMITS, XmlError, XmlLimits, parse_xml
from esb.transformers.chain import Chain

#: Failure kinds after which asking again may succeed: the sender is told to retry.
TRANSIENT = frozenset({"backend", "timeout", "unavailable", "interrupted"})
JSON = "application/json"
XML = "application/xml"


@dataclass(frozen=True)
class Enricher:
    """A compiled ``enrich:``."""

    destination: str
    request: Chain
    reply: Chain
    merge: Chain
    timeout: float
    on_failure: str
    cache: CacheSpec | None = None
    xml_limits: XmlLimits = DEFAULT_LIMITS

    def step(self) -> str:
        """The step name failures carry (trace, dead letters, metrics)."""
        return f"enrich {self.destination}"


@dataclass(frozen=True)
class EnrichCall:
    """A request the plan needs answered before it can go on: ``request`` (its id is the key
    the answer is given back under) for ``route``'s enricher."""

    route: str
    enricher: Enricher
    request: Envelope

    @property
    def key(self) -> str:
        return self.request.id


def call_id(envelope_id: str, route: str) -> str:
    """The id of the enrichment request ``route`` makes for envelope ``envelope_id``: stable,
    so a re-plan finds its answer and a backend can drop repeats by it."""
    return f"{envelope_id}.enrich.{route}"


def request_for(route: str, enricher: Enricher, envelope: Envelope) -> EnrichCall:
    """The request ``route``'s enricher sends for ``envelope`` (its ``request`` steps run; they
    see the route and the destination). Chain errors pass through."""
    env = envelope.model_copy(update={"esbroute": route, "esbdestination": enricher.destination})
    out = enricher.request(env)
    key = envelope.idempotencykey
    return EnrichCall(route, enricher, out.model_copy(update={
        "id": call_id(envelope.id, route), "type": f"{envelope.type}.enrich",
        "idempotencykey": f"{key}.enrich.{route}" if key else None,
        "correlationid": envelope.correlationid or envelope.id, "causationid": envelope.id,
        "esbroute": route, "esbdestination": enricher.destination,
        "esbreplyto": None, "esbdeadline": None}))


def failed(enricher: Enricher, problem: Problem) -> TransformError | TransientTransformError:
    """The step error a failed answer is under ``on_failure: fail``."""
    text = f"{enricher.destination!r} answered {problem.status} ({problem.kind}): " \
           f"{problem.detail}"
    if problem.kind in TRANSIENT:
        return TransientTransformError(enricher.step(), text, retry_after=problem.retry_after)
    return TransformError(enricher.step(), text)


def merged(enricher: Enricher, envelope: Envelope, answer: Envelope) -> Envelope:
    """``envelope`` with the payload the ``merge`` steps make of it and ``answer``.
    TransformError (named ``enrich <destination>``) when the two cannot be combined; the merge
    steps' own errors pass through, naming their step."""
    combined = _combine(enricher, envelope, answer)
    out = enricher.merge(combined)
    return envelope.model_copy(update={"data": out.data,
                                       "datacontenttype": out.datacontenttype})


def _combine(enricher: Enricher, envelope: Envelope, answer: Envelope) -> Envelope:
    if envelope.is_json:
        if answer.data is not None and not answer.is_json:
            raise TransformError(enricher.step(), f"the answer is {answer.datacontenttype}, "
                                 "the message JSON: convert the answer first (reply: "
                                 "[xml-to-json], say)")
        return envelope.model_copy(update={"data": {"message": envelope.data,
                                                    "reply": answer.data},
                                           "datacontenttype": JSON})
    if envelope.is_xml:
        if answer.data is not None and not answer.is_xml:
            raise TransformError(enricher.step(), f"the answer is {answer.datacontenttype}, "
                                 "the message XML: convert the answer first (reply: "
                                 "[json-to-xml], say)")
        root = etree.Element("enrichment")
        for name, env in (("message", envelope), ("reply", answer)):
            holder = etree.SubElement(root, name)
            if env.data is not None:
                holder.append(_xml_root(enricher, env, name))
        return envelope.model_copy(update={
            "data": etree.tostring(root, encoding="unicode"), "datacontenttype": XML})
    raise TransformError(enricher.step(), f"a {envelope.datacontenttype or 'untyped'} payload "
                         "cannot be enriched: JSON and XML can")


def _xml_root(enricher: Enricher, env: Envelope, what: str) -> Any:
    # Not parse_xml's ``shared`` tree: the caller moves this root into another document.
    try:
        return parse_xml(env.data, limits=enricher.xml_limits)
    except XmlError as exc:
        raise TransformError(enricher.step(), f"the {what} is not well-formed XML: {exc}"
                             ) from None
