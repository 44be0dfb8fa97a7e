"""Small helpers shared by the harness processes."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path


def new_loop() -> asyncio.AbstractEventLoop:
    """A uvloop event loop when uvloop is installed (esb runs on uvloop too)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kib(pid: int) -> int | None:
    """VmRSS of a process in KiB (None when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time of a process and its reaped children (None when it is gone)."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # fields[0] is the state (field 3 of proc(5)); utime, stime are fields 14 and 15
    return (int(fields[11]) + int(fields[12])) / _TICK


def broker_pid() -> int | None:
    """The pid of a RabbitMQ node on this host (its Erlang VM), if there is one we can see."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if b"beam" in cmd.split(b"\0", 1)[0] and b"rabbit" in cmd:
            return int(proc.name)
    return None
