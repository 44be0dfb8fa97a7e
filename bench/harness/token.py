"""The latency token every benchmark payload carries: ``bts:<seq>:<send time in ns>``.

The load generator writes it into the body (a JSON field, an XML element, a SOAP parameter),
esb carries it through routing and transforms, and the sink reads it back to compute
end-to-end latency (send → destination received) and to detect lost or duplicated messages.
Both ends use ``time.time_ns()``; they run on one machine, so the clocks agree.
"""

from __future__ import annotations

import re

PLACEHOLDER = b"__BTS__"
PREFIX = b"bts:"
_TOKEN = re.compile(rb"bts:(\d+):(\d+)")


def make(seq: int, sent_ns: int) -> bytes:
    return b"bts:%d:%d" % (seq, sent_ns)


def parse(body: bytes) -> tuple[int, int] | None:
    """(seq, sent_ns) from a body, or None when it carries no token."""
    m = _TOKEN.search(body)
    return (int(m.group(1)), int(m.group(2))) if m else None
