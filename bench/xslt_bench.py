"""µs per message: esb's compiled ``xslt`` transformer vs bare lxml, same stylesheet.

esb's figure is the full ``__call__`` (hardened parse, sandboxed transform, serialize, envelope
copy); bare lxml is parse + transform + serialize with a default parser and no access control.
Each size's ratio is held to the target (esb at most 1.2 x bare lxml) and printed with PASS or
MISS; a miss is reported, never an error (the exit status is 0 unless the bench broke).

    python bench/xslt_bench.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import timeit
from collections.abc import Callable
from pathlib import Path

from lxml import etree

from esb.bus.envelope import Envelope
from esb.transformers.chain import build_chain
from esb.transformers.xslt_process import shared_process

STYLESHEET = """<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:output method="xml" encoding="UTF-8"/>
  <xsl:param name="type" select="'unknown'"/>
  <xsl:template match="/order">
    <PurchaseOrder number="{@id}" kind="{$type}">
      <xsl:for-each select="line">
        <Item sku="{@sku}" qty="{qty}" price="{format-number(price, '0.00')}"/>
      </xsl:for-each>
      <Total><xsl:value-of select="sum(line/price)"/></Total>
    </PurchaseOrder>
  </xsl:template>
</xsl:stylesheet>"""


def message(size: int) -> str:
    """An order document of roughly ``size`` bytes."""
    line = '<line sku="SKU-{0:05d}"><qty>{1}</qty><price>{2}.50</price></line>'
    lines, i = [], 0
    while sum(map(len, lines)) + 40 < size:
        lines.append(line.format(i, i % 7 + 1, i % 90 + 10))
        i += 1
    return f'<order id="PO-1">{"".join(lines)}</order>'


#: esb's µs per message may be at most this many times bare lxml's.
TARGET_RATIO = 1.2
SIZES = (1024, 10 * 1024)


def verdict(ratio: float) -> str:
    """``PASS`` when ``ratio`` meets :data:`TARGET_RATIO`, else ``MISS``."""
    return "PASS" if ratio <= TARGET_RATIO else "MISS"


def per_call_us(fn: Callable[[], object], quick: bool) -> float:
    number = 200 if quick else 2000
    repeat = 3 if quick else 7
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


def cpu_us(fn: Callable[[], object], quick: bool) -> tuple[float, float]:
    """CPU µs per call of this process, and of the XSLT sandbox process."""
    number = 500 if quick else 5000
    child = shared_process().pid
    mine, theirs = time.process_time(), _cpu_of(child)
    for _ in range(number):
        fn()
    return ((time.process_time() - mine) / number * 1e6,
            (_cpu_of(child) - theirs) / number * 1e6)


def _cpu_of(pid: int | None) -> float:
    """Seconds of CPU (user + system) process ``pid`` has used."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "order.xsl").write_text(STYLESHEET, encoding="utf-8")
        esb = build_chain([{"xslt": "order.xsl"}], base_dir=folder)
        bare = etree.XSLT(etree.parse(str(folder / "order.xsl")))
        print(f"{'size':>8} {'esb µs':>10} {'lxml µs':>10} {'ratio':>7}  target")
        for size in SIZES:
            text = message(size)
            env = Envelope(source="bench", type="order.placed",
                           datacontenttype="application/xml", data=text)
            assert esb(env).data == str(bare(etree.fromstring(text.encode()),
                                             type=etree.XSLT.strparam("order.placed")))
            ours = per_call_us(lambda env=env: esb(env), args.quick)
            theirs = per_call_us(lambda text=text: str(bare(
                etree.fromstring(text.encode()), type=etree.XSLT.strparam("order.placed"))),
                args.quick)
            ratio = ours / theirs
            here, sandbox = cpu_us(lambda env=env: esb(env), args.quick)
            print(f"{len(text):>8} {ours:>10.1f} {theirs:>10.1f} {ratio:>6.2f}x  "
                  f"<= {TARGET_RATIO:g} x lxml  {verdict(ratio)}   cpu: caller {here:.1f} µs, "
                  f"sandbox {sandbox:.1f} µs")


if __name__ == "__main__":
    main()
