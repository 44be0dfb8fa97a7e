"""fixedwidth outbound: an envelope's JSON data → fixed-width records in a file of its own.

``data`` is one object (one record) or a list of objects (one record each). The file appears
atomically (written under a hidden name, fsynced, renamed) and is named after the idempotency
key by default, so a redelivery rewrites the same file instead of adding a second one.

Errors: data the layout cannot hold (missing field, value too long, not a number) is permanent;
a missing pickup folder (an unmounted share) or another I/O failure is transient; a refused
permission is permanent.
"""

from __future__ import annotations

import asyncio
import os
import re

from esb.adapters.spec import OutboundContext
from esb.bus.envelope import Envelope
from esb.bus.errors import ConfigError, PermanentError, TransientError

from esb_adapter_fixedwidth.layout import RecordError, load_layout
from esb_adapter_fixedwidth.settings import FixedWidthOutboundSettings

_FIELD = re.compile(r"\{(key|id|type)\}")


class FixedWidthOutbound:
    def __init__(self, settings: FixedWidthOutboundSettings, ctx: OutboundContext) -> None:
        self.settings = settings
        d = settings.directory
        self.directory = d if d.is_absolute() else ctx.config_dir / d
        layout = settings.layout if settings.layout.is_absolute() else \
            ctx.config_dir / settings.layout
        try:
            self.layout = load_layout(layout)
        except ValueError as exc:
            raise ConfigError([f"destinations.{ctx.name}.layout: {exc}"]) from exc
        self.newline = "\r\n" if settings.newline == "crlf" else "\n"

    async def start(self) -> None:
        return None  # the pickup folder belongs to the legacy system: never created here

    async def stop(self) -> None:
        return None

    async def send(self, envelope: Envelope) -> None:
        body = self.render(envelope)
        await asyncio.to_thread(self._write, self._name(envelope), body)

    def render(self, envelope: Envelope) -> bytes:
        """The file's bytes; PermanentError when the data does not fit the layout."""
        data = envelope.data
        rows = data if isinstance(data, list) else [data]
        if not envelope.is_json or not rows or not all(isinstance(r, dict) for r in rows):
            raise PermanentError("fixedwidth: data must be a JSON object or a list of objects")
        try:
            lines = [self.layout.format(row) for row in rows]
            return "".join(line + self.newline for line in lines).encode(self.settings.encoding)
        except RecordError as exc:
            raise PermanentError(f"fixedwidth: the data does not fit the layout: {exc}") from exc
        except UnicodeEncodeError as exc:
            raise PermanentError(f"fixedwidth: not representable in "
                                 f"{self.settings.encoding}: {exc}") from exc

    def _name(self, envelope: Envelope) -> str:
        values = {"key": envelope.key, "id": envelope.id, "type": envelope.type}
        return _FIELD.sub(lambda m: re.sub(r"[^A-Za-z0-9_.@-]", "_", values[m.group(1)])[:200],
                          self.settings.filename)

    def _write(self, name: str, body: bytes) -> None:
        path = self.directory / name
        tmp = self.directory / f".{name}.tmp"
        try:
            with open(tmp, "wb") as f:
                f.write(body)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except FileNotFoundError as exc:
            raise TransientError(f"fixedwidth: pickup folder {self.directory} is not there "
                                 "(share not mounted?)") from exc
        except PermissionError as exc:
            raise PermanentError(f"fixedwidth: cannot write {path}: {exc}") from exc
        except OSError as exc:
            raise TransientError(f"fixedwidth: cannot write {path}: {exc}") from exc
        finally:
            if tmp.exists():
                tmp.unlink()

