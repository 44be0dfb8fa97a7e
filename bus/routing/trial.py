"""The route trial (``esb routes test``): which routes fire for a message, and what each
destination would receive after its transforms — the ingress's own dispatch plan
(:mod:`esb.bus.routing.dispatch`), with nothing published and no bus.

Two ways in:

* one message: :func:`try_message` (file bytes + type + source + content type);
* the ``tests:`` cases carried in route files (:class:`~esb.bus.routing.model.RouteCase`):
  :func:`run_cases` gives pass/fail per case, each failure with ``file:line`` and a diff.

Both return plain dataclasses (a plan, case results); the CLI prints them.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from lxml import etree

from esb.bus.envelope import Envelope
from esb.bus.payload import JSON, decode, guess_content_type, is_json, read_file
from esb.bus.reply import Reply, reply_envelope
from esb.bus.routing.dispatch import plan, reply_answer
from esb.bus.routing.enrich import EnrichCall
from esb.bus.routing.model import RouteCase
from esb.bus.routing.plan import Plan, ReplyPlan, jsonable
from esb.bus.routing.router import ReplyLeg, Router
from esb.bus.routing.routeset import RouteSet
from esb.bus.xmlsafe import parse_xml

EXPECT_KEYS = ("destinations", "unroutable", "outputs", "routes", "dead_letters")


@dataclass
class CaseResult:
    """One ``tests:`` case: passed, or every failure (each starting with ``file:line``)."""

    name: str
    where: str
    failures: list[str] = field(default_factory=list)
    trial: Plan | None = None

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "where": self.where, "passed": self.passed,
                "failures": self.failures,
                "trial": self.trial.to_dict() if self.trial else None}


#: A recorded answer of a destination an enricher asks: (body, content type), by destination
#: (or route) name.
Answers = Mapping[str, tuple[bytes, str | None]]


# -- one envelope ------------------------------------------------------------------------------

def route_envelope(router: Router, envelope: Envelope, endpoint: str | None,
                   answers: Answers | None = None) -> Plan:
    """The dispatch plan of ``envelope`` entering through ``endpoint``; delivers nothing. An
    enricher is answered from ``answers`` (its route's name, else its destination's); without
    one the plan stops there, naming the request (:attr:`Plan.pending`)."""
    known: dict[str, Envelope] = {}
    while True:
        trial = plan(router, envelope, endpoint, answers=known)
        recorded = {c.key: recorded_answer(c, *answers[name]) for c in trial.pending
                    if answers and (name := _answered_by(c, answers)) is not None}
        if not trial.pending or len(recorded) < len(trial.pending):
            return trial
        known.update(recorded)


def _answered_by(call: EnrichCall, answers: Answers) -> str | None:
    return next((n for n in (call.route, call.enricher.destination) if n in answers), None)


def recorded_answer(call: EnrichCall, body: bytes, content_type: str | None = None,
                    status: int = 200) -> Envelope:
    """What an enricher gets when its destination answers ``body``: the answer through the
    enricher's ``reply`` steps (a failure reply when they fail)."""
    enricher = call.enricher
    got = reply_envelope(call.request, Reply(status, {}, body, content_type),
                         enricher.destination)
    leg = ReplyLeg(enricher.timeout, enricher.reply)
    return reply_answer(ReplyPlan(call.route, enricher.destination, leg, call.request),
                        call.request, got)


def message_envelope(body: bytes, *, type: str, source: str, content_type: str | None = None,
                     name: str | None = None) -> Envelope:
    """An envelope carrying file bytes the way an inbound adapter would
    (:func:`esb.bus.payload.decode`). ValueError when they do not decode."""
    ctype = content_type or guess_content_type(name or "", body)
    return Envelope(source=source, type=type, datacontenttype=ctype,
                    data=decode(body, ctype), subject=name)


def try_message(router: Router, body: bytes, *, type: str, source: str,
                content_type: str | None = None, sources: Collection[str] | None = None,
                endpoint: str | None = None, name: str | None = None,
                answers: Answers | None = None) -> Plan:
    """Route one message (file bytes) offline. It enters through ``endpoint``, else through
    ``source`` when that is a configured source (or ``sources`` is not given)."""
    env = message_envelope(body, type=type, source=source, content_type=content_type,
                           name=name)
    return route_envelope(router, env, _endpoint(endpoint, source, sources), answers)


def try_reply(trial: Plan, body: bytes, *, content_type: str | None = None,
              name: str | None = None, status: int = 200) -> Envelope | None:
    """What the caller would get if the request/reply route's destination answered ``body``
    (a recorded reply): the plan's reply leg run on it. None when no request/reply route
    fired or its request was refused."""
    reply = trial.reply
    if reply is None or reply.request is None:
        return None
    ctype = content_type or guess_content_type(name or "", body)
    got = reply_envelope(reply.request, Reply(status, {}, body, ctype), reply.destination)
    return reply_answer(reply, reply.request, got)


def test_routes(router: Router, *, message: bytes | None = None,
                route_set: RouteSet | None = None, base: Path | None = None,
                type: str = "test", source: str = "test", content_type: str | None = None,
                sources: Collection[str] | None = None) -> Plan | list[CaseResult]:
    """``esb routes test`` as a function: one ``message`` (its plan), else the cases carried
    in ``route_set`` (a :class:`CaseResult` each)."""
    if message is not None:
        return try_message(router, message, type=type, source=source,
                           content_type=content_type, sources=sources)
    if route_set is None:
        raise ValueError("test_routes needs a message or a route set with tests")
    return run_cases(router, route_set, base=base or Path("."), sources=sources)


test_routes.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


# -- cases carried in route files --------------------------------------------------------------

def run_cases(router: Router, route_set: RouteSet, *, base: Path,
              sources: Collection[str] | None = None) -> list[CaseResult]:
    """Run every ``tests:`` case of every file (file order). ``base`` is the folder the route
    files were read from: ``message_file`` and output ``file:`` paths resolve against it."""
    return [run_case(router, case, _locator(route_set.documents[name], i), base=base,
                     sources=sources)
            for name in sorted(route_set.parsed)
            for i, case in enumerate(route_set.parsed[name].tests)]


def _locator(doc: Any, index: int) -> Callable[..., str]:
    def where(*loc: str | int) -> str:
        return str(doc.where(("tests", index, *loc)))

    return where


def run_case(router: Router, case: RouteCase, where: Callable[..., str], *, base: Path,
             sources: Collection[str] | None = None) -> CaseResult:
    """One case; ``where(*key_path)`` gives ``file:line`` of a key inside it."""
    result = CaseResult(case.name, where())
    fail = result.failures.append
    unknown = sorted(set(case.expect) - set(EXPECT_KEYS))
    for key in unknown:
        fail(f"{where('expect', key)}: {case.name}: unknown expect key {key!r} "
             f"(known: {', '.join(EXPECT_KEYS)})")
    if case.endpoint is not None and sources is not None and case.endpoint not in sources:
        fail(f"{where('endpoint')}: {case.name}: unknown endpoint {case.endpoint!r} "
             f"(configured sources: {', '.join(sorted(sources)) or 'none'})")
    try:
        env = _case_envelope(case, base)
    except (OSError, ValueError) as exc:
        key = "message_file" if case.message_file else "message"
        fail(f"{where(key)}: {case.name}: {exc}")
        return result
    answers: dict[str, tuple[bytes, str | None]] = {}
    for name, value in case.answers.items():
        try:
            answers[name] = _recorded(value, base)
        except (OSError, ValueError) as exc:
            fail(f"{where('answers', name)}: {case.name}: {exc}")
    if result.failures:
        return result
    trial = route_envelope(router, env, _endpoint(case.endpoint, case.source, sources),
                           answers)
    result.trial = trial
    expect = case.expect
    label = f"{case.name}:"
    for call in trial.pending:
        fail(f"{where()}: {label} route {call.route} would ask {call.enricher.destination} "
             f"(enrich); give its answer under answers: {call.enricher.destination}")
    if trial.deferred is not None:
        fail(f"{where()}: {label} route {trial.deferred.route} would make the sender retry "
             f"(nothing taken): {trial.deferred.error}")
    # ``dead_letters`` names the routes (``route`` or ``route/destination``) whose copies a
    # step is expected to dead-letter; any other dead letter fails the case.
    expected_dead = _names(expect.get("dead_letters") or [])
    dead_seen: list[str] = []
    for d in trial.dead_letters:
        name = f"{d.route}/{d.destination}" if d.destination else d.route
        if name in expected_dead or d.route in expected_dead:
            dead_seen.append(name if name in expected_dead else d.route)
            continue
        fail(f"{where()}: {label} route {d.route}"
             f"{f' → {d.destination}' if d.destination else ''} would dead-letter: {d.error}")
    for name in expected_dead:
        if name not in dead_seen:
            fail(f"{where('expect', 'dead_letters')}: {label} expected {name} to dead-letter "
                 "a copy; nothing was dead-lettered there")
    if "unroutable" in expect and bool(expect["unroutable"]) != trial.unroutable:
        fail(f"{where('expect', 'unroutable')}: {label} expected "
             f"{'unroutable' if expect['unroutable'] else 'at least one route to match'}, "
             f"got {'no route' if trial.unroutable else 'routes ' + ', '.join(trial.routes)}")
    if "routes" in expect:
        want = _names(expect["routes"])
        if sorted(want) != sorted(trial.routes):
            fail(f"{where('expect', 'routes')}: {label} expected routes {want}, "
                 f"got {trial.routes}")
    if "destinations" in expect:
        want = sorted(_names(expect["destinations"]))
        if want != trial.destinations:
            fail(f"{where('expect', 'destinations')}: {label} expected destinations {want}, "
                 f"got {trial.destinations}")
    outputs = expect.get("outputs") or {}
    if not isinstance(outputs, Mapping):
        fail(f"{where('expect', 'outputs')}: {label} outputs maps destination → expected data")
        outputs = {}
    for dest, expected in outputs.items():
        loc = where("expect", "outputs", dest)
        got = trial.outputs(str(dest))
        if not got:
            fail(f"{loc}: {label} {dest} would receive nothing")
            continue
        try:
            want = _expected_data(expected, base)
        except (OSError, ValueError) as exc:
            fail(f"{loc}: {label} {exc}")
            continue
        for out in got:
            if not same_data(out.data, want):
                fail(f"{loc}: {label} {dest} would receive different data "
                     f"(route {out.esbroute}):\n{data_diff(want, out.data, dest)}")
    return result


def _case_envelope(case: RouteCase, base: Path) -> Envelope:
    if case.message is not None and case.message_file:
        raise ValueError("give message or message_file, not both")
    if case.message_file:
        path = _resolve(case.message_file, base)
        return message_envelope(path.read_bytes(), type=case.type, source=case.source,
                                content_type=case.datacontenttype, name=path.name)
    data = case.message
    ctype = case.datacontenttype
    if ctype is None and isinstance(data, str):
        ctype = guess_content_type("", data.encode())
    ctype = ctype or JSON
    if isinstance(data, str) and is_json(ctype):
        data = decode(data.encode(), ctype)
    return Envelope(source=case.source, type=case.type, datacontenttype=ctype, data=data,
                    subject=case.name)


def _recorded(value: Any, base: Path) -> tuple[bytes, str | None]:
    """A case's recorded answer: ``{file: PATH}``, XML text, other text, or a JSON value."""
    if isinstance(value, Mapping) and set(value) == {"file"}:
        path = _resolve(str(value["file"]), base)
        body = path.read_bytes()
        return body, guess_content_type(path.name, body)
    if isinstance(value, str):
        return value.encode(), guess_content_type("", value.encode())
    return orjson.dumps(value), JSON


def _expected_data(expected: Any, base: Path) -> Any:
    if isinstance(expected, Mapping) and set(expected) == {"file"}:
        return read_file(_resolve(str(expected["file"]), base))[1]
    return expected


def _resolve(name: str, base: Path) -> Path:
    path = Path(name)
    path = path if path.is_absolute() else base / path
    if not path.is_file():
        raise ValueError(f"no such file: {path}")
    return path


def _endpoint(endpoint: str | None, source: str,
              sources: Collection[str] | None) -> str | None:
    if endpoint is not None:
        return endpoint
    if sources is None or source in sources:
        return source
    return None


def _names(value: Any) -> list[str]:
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return [str(value)]


# -- comparing ---------------------------------------------------------------------------------

def same_data(actual: Any, expected: Any) -> bool:
    """Equal payloads: JSON values structurally; text ignoring surrounding whitespace; XML by
    canonical form (whitespace between elements and the declaration ignored)."""
    if actual == expected:
        return True
    if isinstance(actual, bytes):
        try:
            actual = actual.decode("utf-8")
        except UnicodeDecodeError:
            return False
    if isinstance(actual, str) and isinstance(expected, str):
        if actual.strip() == expected.strip():
            return True
        a, e = _xml_text(actual, method="c14n"), _xml_text(expected, method="c14n")
        return a is not None and a == e
    if isinstance(actual, str):
        try:  # JSON text compared with a YAML value
            return bool(orjson.loads(actual) == expected)
        except orjson.JSONDecodeError:
            return False
    return False


def data_diff(expected: Any, actual: Any, label: str = "output") -> str:
    """A unified diff, expected → actual, of the two payloads rendered readably."""
    diff = difflib.unified_diff(_render(expected).splitlines(), _render(actual).splitlines(),
                                fromfile=f"expected {label}", tofile=f"actual {label}",
                                lineterm="")
    return "\n".join(f"    {line}" for line in diff)


def _render(data: Any) -> str:
    data = jsonable(data)  # bytes as text, else as their repr
    if isinstance(data, str):
        pretty = _xml_text(data, pretty_print=True, encoding="unicode")
        return pretty if isinstance(pretty, str) else data
    return orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()


def _xml_text(text: str, **serialize: Any) -> str | bytes | None:
    """``text`` parsed as XML, whitespace between elements dropped, and serialized again
    (``etree.tostring(root, **serialize)``); None when it is not XML."""
    if not text.lstrip().startswith("<"):
        return None
    try:
        root = parse_xml(text, max_bytes=10 * 1024 * 1024, max_depth=1000)
    except Exception:
        return None
    for el in root.iter():
        if el.text is not None and not el.text.strip() and len(el):
            el.text = None
        if el.tail is not None and not el.tail.strip():
            el.tail = None
    return etree.tostring(root, **serialize)

