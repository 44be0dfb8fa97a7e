"""A daemon's structured log as the tests read it: one JSON object per line (other lines —
a traceback, a child's raw output — are passed over)."""

from __future__ import annotations

from typing import Any

import orjson


def log_events(daemon: Any, event: str | None = None, *, since: int = 0
               ) -> list[dict[str, Any]]:
    """The JSON log lines of ``daemon`` (an ``EsbDaemon``: supervisor and workers alike),
    from byte offset ``since`` of its log file on; only those whose ``event`` is ``event``
    when given. ``daemon.log_path.stat().st_size`` before an action is its ``since``."""
    path = daemon.log_path
    if not path.exists():
        return []
    with path.open("rb") as f:
        f.seek(since)
        lines = f.read().splitlines()
    out = []
    for line in lines:
        if not line.startswith(b"{"):
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if event is None or record.get("event") == event:
            out.append(record)
    return out
