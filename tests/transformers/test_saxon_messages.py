"""Saxon's xsl:message output and error reports go through the logger (JSON, redacted),
never raw to file descriptor 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SECRET = "4111-1111-1111-1111"
SHEET = """<xsl:stylesheet version="3.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:template match="/order">
    <xsl:message>checking card <xsl:value-of select="card"/></xsl:message>
    <xsl:if test="stop"><xsl:message terminate="yes">refused card <xsl:value-of
      select="card"/></xsl:message></xsl:if>
    <xsl:if test="bad"><xsl:sequence select="xs:integer(bad)"
      xmlns:xs="http://www.w3.org/2001/XMLSchema"/></xsl:if>
    <ok/>
  </xsl:template>
</xsl:stylesheet>
"""


SCRIPT = """
import sys
from pathlib import Path
from esb.bus.envelope import Envelope
from esb.bus.errors import TransformError
from esb.bus.runtime.logs import configure_logging
from esb.transformers.chain import build_chain

configure_logging("info", "json", secrets=[sys.argv[2]])
chain = build_chain([{"xslt": "card.xsl"}], base_dir=Path(sys.argv[1]))
for body in sys.argv[3:]:
    env = Envelope(source="s", type="t", datacontenttype="application/xml",
                   data=f"<order><card>{sys.argv[2]}</card>{body}</order>")
    try:
        print("ok", chain(env).data.count("<ok/>"))
    except TransformError as exc:
        print("failed", exc)
"""


def run(tmp_path: Path, *bodies: str) -> tuple[list[str], str]:
    """Each body in one process with the daemon's logging: (stdout lines, stderr)."""
    pytest.importorskip("saxonche")  # a test extra: always installed by '.[test]'
    (tmp_path / "card.xsl").write_text(SHEET)
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path), SECRET, *bodies],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines(), r.stderr


def lines(err: str) -> list[dict[str, object]]:
    out = []
    for line in err.splitlines():
        assert line.startswith("{"), f"a raw line reached stderr: {line!r}"
        out.append(json.loads(line))
    return out


def test_messages_are_log_lines_with_secrets_redacted(tmp_path: Path) -> None:
    out, err = run(tmp_path, "")
    assert out == ["ok 1"]
    assert SECRET not in err
    messages = [line for line in lines(err) if line["event"] == "xsl:message"]
    assert [(m["step"], m["message"]) for m in messages] == [("xslt", "checking card ***")]


def test_a_terminating_message_is_the_error_and_saxons_report_is_logged(
        tmp_path: Path) -> None:
    out, err = run(tmp_path, "<stop/>", "<bad>twelve</bad>")
    assert out[0].startswith("failed transformer 'xslt': stylesheet failed: xsl:message "
                             "terminated the transform: refused card")
    assert "stylesheet failed" in out[1]
    assert SECRET not in err
    logged = lines(err)
    assert [m["message"] for m in logged if m["event"] == "xsl:message"] == [
        "checking card ***", "refused card ***", "checking card ***"]
    reports = [m["report"] for m in logged if m["event"] == "saxon reported"]
    assert any("FORG0001" in str(r) for r in reports), reports
