"""Copies of the WSDL/XSD documents a SOAP outbound fetched over HTTP.

Every document loaded from a URL is written here (one file per URL); when the URL cannot be
fetched at a later start, the copy is used instead, so a restart does not depend on the
service's WSDL server being up. Documents loaded from local files are never cached.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import structlog

from esb.bus.atomicfile import write_atomically

log = structlog.get_logger("esb.soap.outbound")

#: Where the cache lives, relative to the daemon's configuration folder.
CACHE_FOLDER = Path(".esb") / "wsdl-cache"


class WsdlCache:
    """One file per URL in ``folder``, named by the URL's SHA-256 (URLs may hold characters,
    or credentials, that do not belong in a file name)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path(self, url: str) -> Path:
        return self.folder / f"{hashlib.sha256(url.encode()).hexdigest()}.xml"

    def get(self, url: str) -> tuple[bytes, datetime] | None:
        """The cached document for ``url`` and when it was stored, or None."""
        path = self.path(url)
        try:
            content = path.read_bytes()
            stored = datetime.fromtimestamp(path.stat().st_mtime, UTC)
        except OSError:
            return None
        return content, stored

    def put(self, url: str, content: bytes) -> None:
        """Store ``content`` for ``url``. Written to a temporary file and renamed, so a reader
        (another worker starting at the same time) never sees half a document. A cache that
        cannot be written is logged, not raised: the document itself was loaded."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            write_atomically(self.path(url), content)
        except OSError as exc:
            log.warning("wsdl cache not written", folder=str(self.folder), error=str(exc))
