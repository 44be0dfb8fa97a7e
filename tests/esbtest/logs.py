"""A daemon's structured log as the tests read it: one JSON object per line (other lines —
a traceback, a child's raw output — are passed over)."""

from __future__ import annotations

from typing import Any

import orjson


def log_lines(daemon: Any, *, since: int = 0) -> list[str]:
    """The lines of ``daemon``'s log file (an ``EsbDaemon``: supervisor and workers alike)
    from byte offset ``since`` on. ``daemon.log_path.stat().st_size`` before an action is its
    ``since``."""
    path = daemon.log_path
    if not path.exists():
        return []
    with path.open("rb") as f:
        f.seek(since)
        return f.read().decode(errors="replace").splitlines()


def log_events(daemon: Any, event: str | None = None, *, since: int = 0
               ) -> list[dict[str, Any]]:
    """The JSON log lines of ``daemon`` from byte offset ``since`` on (see :func:`log_lines`);
    only those whose ``event`` is ``event`` when given."""
    out = []
    for line in log_lines(daemon, since=since):
        if not line.startswith("{"):
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if event is None or record.get("event") == event:
            out.append(record)
    return out


def on_bus_link(record: dict[str, Any]) -> bool:
    """Whether a log record is about the daemon's bus link, named ``esb <instance>``: the
    links of the route store, the leases, the presence, the trace and the idempotency log
    carry one more word (``esb routes <instance>`` ...)."""
    return len(str(record.get("link", "")).split()) == 2
