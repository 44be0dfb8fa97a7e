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


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (a supervisor and its workers)."""
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(proc.name))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(children.get(p, ()))
    return tree


def _rss_one(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def rss_kib(pid: int) -> int | None:
    """VmRSS of a process and its descendants in KiB (None when it is gone)."""
    own = _rss_one(pid)
    if own is None:
        return None
    return own + sum(_rss_one(p) or 0 for p in process_tree(pid)[1:])


_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_one(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # fields[0] is the state (field 3 of proc(5)); utime, stime are fields 14 and 15
    return (int(fields[11]) + int(fields[12])) / _TICK


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time of a process and its live descendants (None when it is gone)."""
    if pid is None:
        return None
    own = _cpu_one(pid)
    if own is None:
        return None
    return own + sum(_cpu_one(p) or 0.0 for p in process_tree(pid)[1:])


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
