"""Settings of the fixedwidth adapter's two sides (checked when esb.yaml is loaded)."""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Literal

from esb.adapters.spec import AdapterSettings
from pydantic import Field, field_validator


def _known_encoding(value: str) -> str:
    try:
        codecs.lookup(value)
    except LookupError:
        raise ValueError(f"unknown encoding {value!r} (e.g. ascii, latin-1, cp037)") from None
    return value


class FixedWidthInboundSettings(AdapterSettings):
    #: The inbox folder the legacy system drops record files into (relative: to the config
    #: folder). Taken files move to ``done/`` below it, refused ones to ``error/``.
    directory: Path
    #: The record layout file (YAML: fields with start column, length and type).
    layout: Path
    #: Envelope ``type`` of every record.
    type: str = Field(min_length=1)
    #: CloudEvents ``source``; the endpoint name when not given.
    source: str | None = None
    #: Which files to take (glob); names starting with ``.`` are never taken.
    pattern: str = "*"
    #: Text encoding of the files: ``cp037`` for EBCDIC from the mainframe.
    encoding: str = "ascii"
    #: Seconds between two looks at the inbox.
    poll_interval: float = Field(1.0, gt=0)
    #: Seconds a file must be unchanged before it is taken (for writers that do not rename).
    min_age: float = Field(0.0, ge=0)

    _encoding = field_validator("encoding")(_known_encoding)


class FixedWidthOutboundSettings(AdapterSettings):
    #: The pickup folder the legacy system reads (often a mounted share). It must exist: a
    #: missing folder is a transient failure, retried.
    directory: Path
    #: The record layout file (YAML).
    layout: Path
    #: File name per envelope; ``{key}`` (idempotency key), ``{id}``, ``{type}``.
    filename: str = "{key}.dat"
    encoding: str = "ascii"
    #: Record separator.
    newline: Literal["lf", "crlf"] = "lf"

    _encoding = field_validator("encoding")(_known_encoding)

    @field_validator("filename")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        if "/" in v or "\\" in v or v.startswith("."):
            raise ValueError("filename is a plain file name (no folders, not hidden)")
        return v
