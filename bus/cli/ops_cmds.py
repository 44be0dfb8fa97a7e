"""``esb trace ID`` and ``esb instances``: thin clients of ``/admin/trace/{id}`` and
``/admin/instances``. :func:`register` attaches them to the top-level ``esb`` group.

Exit codes: 0 ok; 1 nothing traced for that id, or the daemon refused/was unreachable.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import quote

import click

from esb.bus.cli.client import ask
from esb.bus.cli.output import emit_json, table

#: Detail keys shown first, in this order; any others follow alphabetically.
_DETAIL_ORDER = ("endpoint", "route", "version", "destination", "transform", "outcome",
                 "status", "latency_ms", "duration_ms", "attempt", "attempts", "retry_in",
                 "error", "reason")
_ERROR_WIDTH = 100


def register(cli: click.Group) -> None:
    """Add ``trace`` and ``instances`` to the ``esb`` group."""
    cli.add_command(trace)
    cli.add_command(instances)


# -- esb trace ---------------------------------------------------------------------------------

@click.command("trace")
@click.argument("envelope_id", metavar="ID|PREFIX|KEY")
@click.option("--since", default="1h", show_default=True,
              help="How far back to look (30m, 6h, 1d ...; trace is kept 24h by default).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def trace(obj: Any, envelope_id: str, since: str, as_json: bool) -> None:
    """Every step of one message, on every instance: accepted, each transform step with its
    duration, routed, each delivery attempt with status and latency, retries, delivered (with
    the destination's status) or dead-lettered, replays. A request/reply call also gets its
    legs: the request, the call to the destination, the reply and how long the caller
    waited. The message is named by its id, a unique prefix of it, or its idempotency key."""
    body = ask(obj.client(), "GET", f"/admin/trace/{quote(envelope_id, safe='')}",
               params={"since": since})
    if as_json:
        emit_json(body)
        return
    events = body.get("events", [])
    first = _parse(events[0]["at"]) if events else None
    rows = []
    for e in events:
        at = _parse(e["at"])
        offset = f"+{_ms((at - first).total_seconds() * 1000)}" if at and first else ""
        rows.append((_clock(e["at"]), offset, e.get("instance", ""), e.get("step", ""),
                     details(e.get("detail") or {})))
    click.echo(f"envelope {body.get('id', envelope_id)}: {len(events)} event(s) in the last "
               f"{body.get('since', since)}")
    click.echo("")
    click.echo(table(["TIME (UTC)", "ELAPSED", "INSTANCE", "STEP", "DETAILS"], rows))
    if body.get("legs"):
        click.echo("")
        click.echo("\n".join(leg_lines(body["legs"])))


def leg_lines(legs: dict[str, Any]) -> list[str]:
    """A request/reply call's legs (:func:`esb.bus.runtime.trace_legs.request_legs`) as
    ``esb trace`` prints them under its table: one line per leg, with when it happened."""
    dest = legs.get("destination") or "?"
    timeout = f", timeout {legs['timeout']:g}s" if isinstance(legs.get("timeout"),
                                                               int | float) else ""
    out = [f"request/reply: route {legs.get('route') or '?'} → {dest}{timeout}"]

    def line(name: str, leg: dict[str, Any] | None, text: str) -> None:
        at = leg.get("offset_ms") if leg else None
        when = f"+{_ms(at)}" if isinstance(at, int | float) else ""
        where = f" (on {leg['instance']})" if leg and leg.get("instance") else ""
        out.append(f"  {name:<8} {when:<9} {text}{where}")

    request, call = legs.get("request"), legs.get("call")
    reply, answer, dropped = legs.get("reply"), legs.get("answer"), legs.get("dropped")
    line("request", request, f"sent to {dest}" if request else "not recorded")
    if call:
        line("call", call, f"{dest} answered status={call.get('status', '-')} in "
             f"{_ms(call.get('latency_ms') or 0)} ({call.get('outcome')}, "
             f"attempt {call.get('attempts')})")
    else:
        line("call", None, f"no call to {dest} recorded")
    if reply:
        line("reply", reply, f"sent back status={reply.get('status', '-')} "
             f"outcome={reply.get('outcome')}, {_ms(reply.get('latency_ms') or 0)} after "
             "the request was taken" + (f" ({reply['error']})" if reply.get("error") else ""))
    else:
        line("reply", None, "no reply sent")
    if answer:
        line("answer", answer, f"caller answered status={answer.get('status', '-')} "
             f"outcome={answer.get('outcome')} after waiting "
             f"{_ms(answer.get('latency_ms') or 0)}")
    else:
        line("answer", None, "the caller's answer is not recorded")
    if dropped:
        line("dropped", dropped, "the reply came after the caller had stopped waiting")
    return out


def details(detail: dict[str, Any]) -> str:
    """``route=r1 version=3 destination=erp status=503 latency=12.3ms error="..."``; a
    transform step's duration as ``took=42µs``."""
    keys = [k for k in _DETAIL_ORDER if k in detail]
    keys += sorted(k for k in detail if k not in _DETAIL_ORDER)
    parts = []
    for key in keys:
        value = detail[key]
        if value is None or value == "":
            continue
        if key == "latency_ms" and isinstance(value, int | float):
            parts.append(f"latency={_ms(value)}")
        elif key == "duration_ms" and isinstance(value, int | float):
            parts.append(f"took={_duration(value)}")
        elif key == "retry_in" and isinstance(value, int | float):
            parts.append(f"retry_in={value:g}s")
        elif isinstance(value, str):
            text = " ".join(value.split())
            if len(text) > _ERROR_WIDTH:
                text = text[:_ERROR_WIDTH - 1] + "…"
            parts.append(f'{key}="{text}"' if (" " in text or not text) else f"{key}={text}")
        else:
            parts.append(f"{key}={value}")
    return " ".join(parts)


def _parse(iso: str) -> datetime | None:
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return None


def _clock(iso: str) -> str:
    """``2024-05-01 12:03:04.123`` (milliseconds, UTC)."""
    at = _parse(iso)
    if at is None:
        return str(iso)
    return at.strftime("%Y-%m-%d %H:%M:%S.") + f"{at.microsecond // 1000:03d}"


def _ms(ms: float) -> str:
    if ms >= 10_000:
        return f"{ms / 1000:.1f}s"
    if ms >= 100:
        return f"{ms:.0f}ms"
    return f"{ms:.1f}ms"


def _duration(ms: float) -> str:
    """A transform step's time: most take microseconds, which ``_ms`` would show as 0.0ms."""
    return f"{ms * 1000:.0f}µs" if ms < 1 else _ms(ms)


# -- esb instances -----------------------------------------------------------------------------

@click.command("instances")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def instances(obj: Any, as_json: bool) -> None:
    """Every live daemon instance on the bus, and per instance its destinations."""
    items = ask(obj.client(), "GET", "/admin/instances")
    if as_json:
        emit_json(items)
        return
    rows = []
    for i in items:
        connected = i.get("bus_connected")
        rows.append(("*" if i.get("self") else "", i.get("instance", ""), i.get("host", ""),
                     i.get("pid", ""), _clock(i["started_at"]) if i.get("started_at") else "",
                     i.get("route_version", ""),
                     "" if connected is None else "yes" if connected else "NO",
                     f"{i.get('last_seen_s', 0):.1f}s"))
    click.echo(table(["", "INSTANCE", "HOST", "PID", "STARTED (UTC)", "ROUTES", "BUS",
                      "SEEN"], rows))
    dest_rows = []
    for i in items:
        for name, d in sorted((i.get("destinations") or {}).items()):
            if not isinstance(d, dict):
                continue
            dest_rows.append((i.get("instance", ""), name, _rate(d.get("delivered_per_s")),
                              _rate(d.get("failed_per_s")), _count(d.get("delivered")),
                              _count(d.get("failed")), _count(d.get("dead_lettered")),
                              d.get("in_flight", ""), d.get("breaker", "")))
    if dest_rows:
        click.echo("")
        click.echo(table(["INSTANCE", "DESTINATION", "DELIVERED/S", "FAILED/S", "DELIVERED",
                          "FAILED", "DEAD", "IN FLIGHT", "BREAKER"], dest_rows))
    click.echo(f"\n{len(items)} instance(s)")


def _rate(value: Any) -> str:
    return "-" if value is None else f"{value:.1f}"


def _count(value: Any) -> str:
    """A counter (prometheus keeps them as floats) as the whole number it is."""
    return "" if value is None else f"{int(value)}"
