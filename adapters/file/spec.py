"""The file adapter (outbound): each envelope becomes one file in a folder, written atomically.

Legacy systems often take their input as files dropped in a directory; it is also how the
shipped sample shows a message leaving the bus. The file name defaults to the envelope id, so
a redelivered envelope overwrites its own file instead of making a duplicate.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from pydantic import ValidationInfo, field_validator

from esb.adapters.spec import AdapterSettings, AdapterSpec, OutboundContext
from esb.bus.atomicfile import write_atomically
from esb.bus.envelope import Envelope
from esb.bus.errors import ConfigError, PermanentError, TransientError

_FIELD = re.compile(r"\{(id|type|source|key|ext)\}")
_SUFFIX = {"application/json": "json", "application/xml": "xml", "text/xml": "xml",
           "text/plain": "txt", "text/csv": "csv", "text/html": "html"}


class FileOutboundSettings(AdapterSettings):
    #: Folder the files are written to (relative: to the configuration folder), made at start
    #: when missing. A path that is a file, or lies inside one, is refused when the
    #: configuration loads.
    directory: Path
    #: Fields: {id} {key} {type} {source} {ext} (ext from the content type).
    filename: str = "{key}.{ext}"
    #: Also write the whole envelope (CloudEvents JSON) next to the payload as NAME.event.json.
    with_envelope: bool = False

    @field_validator("directory")
    @classmethod
    def _folder(cls, v: Path, info: ValidationInfo) -> Path:
        """The folder, or the nearest part of its path that exists, must be a folder."""
        config_dir = (info.context or {}).get("config_dir")
        path = v if v.is_absolute() or config_dir is None else Path(config_dir) / v
        for part in (path, *path.parents):
            if part.is_dir():
                break
            if part.exists():
                what = "is" if part == path else f"is inside {part}, which is"
                raise ValueError(f"{path} {what} a file, not a folder")
        return v

    @field_validator("filename")
    @classmethod
    def _name(cls, v: str) -> str:
        if "/" in v or "\\" in v or v.startswith("."):
            raise ValueError("filename is a plain file name (no folders)")
        return v


class FileOutbound:
    def __init__(self, settings: FileOutboundSettings, ctx: OutboundContext) -> None:
        self.directory = ctx.config_dir / settings.directory
        self.settings = settings

    async def start(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # made a file since the configuration was checked ...
            raise ConfigError([f"file destination {self.directory}: cannot make the folder: "
                               f"{exc.strerror or exc}"]) from None

    async def stop(self) -> None:
        return None

    async def send(self, envelope: Envelope) -> None:
        await asyncio.to_thread(self._write, envelope)

    def _write(self, envelope: Envelope) -> None:
        ctype = (envelope.datacontenttype or "application/json").split(";")[0].strip()
        values = {"id": envelope.id, "key": envelope.key, "type": envelope.type,
                  "source": envelope.source, "ext": _SUFFIX.get(ctype, "bin")}
        name = _FIELD.sub(lambda m: _safe(values[m.group(1)]), self.settings.filename)
        try:
            write_atomically(self.directory / name, envelope.data_bytes())
            if self.settings.with_envelope:
                write_atomically(self.directory / f"{name}.event.json", envelope.to_json())
        except PermissionError as exc:
            raise PermanentError(f"cannot write {self.directory}: {exc}") from exc
        except OSError as exc:  # disk full, folder gone for a moment ...
            raise TransientError(f"cannot write {self.directory}: {exc}") from exc


def _safe(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.@-]", "_", value)[:200]


SPEC = AdapterSpec(
    name="file",
    summary="Each envelope written as a file in a folder (atomic, idempotent by key)",
    outbound_settings=FileOutboundSettings,
    outbound=FileOutbound,
)
