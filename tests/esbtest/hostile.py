"""Helpers of the hostile-input suite (``tests/security``): raw sockets, problem bodies and
the daemon's memory."""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path
from typing import Any

import orjson

from esb.adapters.testing.daemon import EsbDaemon

MiB = 1024 * 1024
#: Every envelope to destination ``out``.
ROUTES = {"r.yaml": {"routes": [{"name": "all", "match": {}, "to": ["out"]}]}}

#: The start of an XSLT 1.0 stylesheet.
XSL = '<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">'
#: A recursion that never ends but never nests deeper than libxslt's guard either.
SPIN = XSL + """<xsl:template match="/"><xsl:call-template name="spin"/></xsl:template>
  <xsl:template name="spin"><xsl:param name="n" select="0"/>
    <xsl:for-each select="(//node())[1]"><xsl:if test="$n &lt; 600">
    <xsl:call-template name="spin"><xsl:with-param name="n" select="$n + 1"/></xsl:call-template>
    <xsl:call-template name="spin"><xsl:with-param name="n" select="$n + 1"/></xsl:call-template>
    </xsl:if></xsl:for-each></xsl:template></xsl:stylesheet>"""
#: A string doubled 40 times: a terabyte asked for in well under a second.
GROW = XSL + """<xsl:template match="/"><xsl:call-template name="grow">
    <xsl:with-param name="s" select="'0123456789abcdef0123456789abcdef'"/></xsl:call-template>
  </xsl:template>
  <xsl:template name="grow"><xsl:param name="s"/><xsl:param name="n" select="0"/>
    <xsl:choose><xsl:when test="$n &lt; 40"><xsl:call-template name="grow">
      <xsl:with-param name="s" select="concat($s, $s)"/>
      <xsl:with-param name="n" select="$n + 1"/></xsl:call-template></xsl:when>
    <xsl:otherwise><xsl:value-of select="string-length($s)"/></xsl:otherwise></xsl:choose>
  </xsl:template></xsl:stylesheet>"""


def rss(daemon: EsbDaemon) -> int:
    """The daemon's resident memory in bytes."""
    assert daemon.proc is not None
    for line in Path(f"/proc/{daemon.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def read_all(s: socket.socket, timeout: float = 10) -> bytes:
    """Everything the server sends until it closes the connection."""
    s.settimeout(timeout)
    out = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return out
        out += chunk


def raw_problem(raw: bytes) -> tuple[int, dict[str, Any]]:
    """Status and problem+json body of a raw HTTP response."""
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"content-type: application/problem+json" in head.lower(), raw[:300]
    return int(head.split(b" ", 2)[1]), orjson.loads(body)


def raw_request(daemon: EsbDaemon, data: bytes) -> tuple[int, dict[str, Any]]:
    """Send ``data`` on a new connection; the problem+json the daemon answers (and closes)."""
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as s:
        with contextlib.suppress(OSError):  # refused mid-send: the answer came first
            s.sendall(data)
        return raw_problem(read_all(s))


def assert_problem(response: Any, status: int, *words: str) -> dict[str, Any]:
    """``response`` is a problem+json of ``status`` whose title or detail has ``words``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json"), \
        response.headers
    body = response.json()
    assert body["status"] == status and body["title"]
    text = f"{body['title']} {body.get('detail') or ''}".lower()
    for word in words:
        assert word.lower() in text, text
    return body
