"""A deployed stylesheet that runs away (multiplying output, looping) is stopped by its time
limit in the sandbox process whose memory is capped: the envelope is dead-lettered, the daemon
does not grow, and other clients are served meanwhile."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from esbtest.daemon import DaemonProcess
from esbtest.hostile import GROW, SPIN, XSL, MiB, rss
from esbtest.waiting import wait_until

from esb.bus.envelope import Envelope
from esb.bus.errors import TransformError
from esb.transformers.chain import build_chain

#: Every node times every node times every node: 10^9 result elements for 1,000 nodes.
MULTIPLY = XSL + """<xsl:variable name="all" select="//node()|//@*"/>
  <xsl:template match="/"><o><xsl:for-each select="$all"><xsl:for-each select="$all">
    <xsl:for-each select="$all"><x a="aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa">
    <xsl:value-of select="name()"/></x></xsl:for-each></xsl:for-each></xsl:for-each></o>
  </xsl:template></xsl:stylesheet>"""
OK = XSL + '<xsl:template match="/"><ok><xsl:value-of select="/r/@n"/></ok></xsl:template>' \
    "</xsl:stylesheet>"
INPUT = "<r>" + "<i a='1'/>" * 500 + "</r>"


def env(data: str = INPUT) -> Envelope:
    return Envelope(source="s", type="t", datacontenttype="application/xml", data=data)


@pytest.mark.parametrize("sheet", [MULTIPLY, SPIN], ids=["multiply", "spin"])
def test_a_runaway_transform_is_stopped_and_the_next_one_runs(tmp_path: Path,
                                                              sheet: str) -> None:
    (tmp_path / "bad.xsl").write_text(sheet)
    (tmp_path / "ok.xsl").write_text(OK)
    bad = build_chain([{"xslt": {"stylesheet": "bad.xsl", "timeout": "1s",
                                 "max_memory": "64MiB"}}], base_dir=tmp_path)
    good = build_chain([{"xslt": "ok.xsl"}], base_dir=tmp_path)
    started = time.monotonic()
    with pytest.raises(TransformError, match="stopped: ") as info:
        bad(env())
    assert time.monotonic() - started < 10
    assert "timeout (1 s)" in str(info.value) or "max_memory" in str(info.value)
    assert good(env("<r n='7'/>")).data.endswith("<ok>7</ok>\n")


def test_memory_of_the_sandbox_process_is_capped(tmp_path: Path) -> None:
    from esb.transformers.xslt_process import shared_process

    (tmp_path / "bad.xsl").write_text(GROW)
    (tmp_path / "ok.xsl").write_text(OK)
    # The time limit is far away: the memory limit is what stops it.
    bad = build_chain([{"xslt": {"stylesheet": "bad.xsl", "timeout": "60s",
                                 "max_memory": "32MiB"}}], base_dir=tmp_path)
    good = build_chain([{"xslt": "ok.xsl"}], base_dir=tmp_path)
    peak = [0]

    def watch() -> None:
        while not done.is_set():
            proc = shared_process()._proc
            if proc is not None:
                try:
                    status = Path(f"/proc/{proc.pid}/status").read_text()
                except OSError:
                    continue
                for line in status.splitlines():
                    if line.startswith("VmRSS:"):
                        peak[0] = max(peak[0], int(line.split()[1]) * 1024)
            time.sleep(0.05)

    done = threading.Event()
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for _ in range(2):  # and again, in the fresh process that replaced the first
            with pytest.raises(TransformError, match=r"stopped: .*max_memory \(33554432"):
                bad(env())
            # libxml2 failed an allocation: the next transform runs in a fresh process, under
            # its own (larger) limit
            assert good(env("<r n='7'/>")).data.endswith("<ok>7</ok>\n")
    finally:
        done.set()
        watcher.join()
    assert 0 < peak[0] < 200 * MiB  # interpreter + lxml + the 32 MiB allowed


ROUTES = {"r.yaml": {"routes": [
    {"name": "runaway", "from": ["bad"], "to": [{"destination": "out", "transform": [
        {"xslt": {"stylesheet": "config/xslt/bad.xsl", "timeout": "3s"}}]}]},
    {"name": "plain", "from": ["shop"], "to": ["out"]}]}}


@pytest.fixture(scope="module")
def daemon(module_daemons: Callable[..., DaemonProcess], module_sink: Any) -> DaemonProcess:
    return module_daemons({"sources": {"bad": {"adapter": "rest", "path": "/in/bad"},
                                       "shop": {"adapter": "rest", "path": "/in/shop"}},
                           "destinations": {"out": {"adapter": "rest",
                                                    "url": module_sink.url + "/in"}}},
                          ROUTES, files={"config/xslt/bad.xsl": MULTIPLY}).start()


def test_a_runaway_stylesheet_dead_letters_and_others_are_served(daemon: DaemonProcess,
                                                                 module_sink: Any) -> None:
    before = rss(daemon)
    answers: list[httpx.Response] = []
    runaway = threading.Thread(target=lambda: answers.append(httpx.post(
        daemon.url + "/in/bad", content=INPUT, headers={"Content-Type": "application/xml"},
        timeout=60)))
    runaway.start()
    time.sleep(0.5)  # the transform is running now
    served = []
    for i in range(5):
        started = time.monotonic()
        r = httpx.post(daemon.url + "/in/shop", json={"n": i}, timeout=30)
        served.append((r.status_code, time.monotonic() - started))
    runaway.join(60)
    assert [s for s, _ in served] == [202] * 5
    assert answers and answers[0].status_code == 202  # accepted: safe in the DLQ
    items = wait_until(lambda: daemon.admin("GET", "/admin/dlq").json()["items"],
                       "the runaway's dead letter", daemon=daemon)
    assert "xslt': stopped: " in str(items[0]), items[0]
    assert rss(daemon) - before < 50 * MiB
