"""Replacing a file atomically: a reader sees the old file or the whole new one, never a part,
and the new one is on disk once :func:`write_atomically` returns (source state documents, the
file adapter's output, the WSDL cache, worker readiness posts, the daemon's address)."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path


def write_atomically(path: Path, data: bytes, *, mode: int = 0o666) -> None:
    """Write ``data`` to a new dot-file beside ``path`` (``mode`` less the umask, as ``open``
    makes it), flush it to disk and rename it over ``path``. The new file is removed when
    anything fails. ``path``'s folder must exist."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
