"""Record layouts: which columns hold which field, as a COBOL copybook would say.

A layout file (YAML) lists fields with a 1-based ``start`` column, a ``length`` and a ``type``::

    length: 52                     # optional: the record length (default: the last column)
    fields:
      - {name: customer_id, start: 3, length: 8, type: int}        # PIC 9(8)
      - {name: balance, start: 33, length: 11, type: decimal, scale: 2}  # PIC S9(8)V99
      - {name: opened, start: 44, length: 8, type: date}           # YYYYMMDD

Types: ``str`` (left-aligned, space-padded; trailing spaces dropped), ``int`` (right-aligned,
zero-padded, optional leading sign), ``decimal`` (an ``int`` with ``scale`` implied decimal
places, as ``PIC 9(n)V99``), ``date`` (``YYYYMMDD``; blank or all zeros is null, and null is
written as zeros, the mainframe's "no date"). A blank ``int``/``decimal`` field is null, and
null is written blank.
"""

from __future__ import annotations

import datetime as dt
import itertools
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class RecordError(ValueError):
    """A record does not match the layout (parsing) or data does not fit it (formatting)."""


class LayoutField(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    start: int = Field(ge=1)
    length: int = Field(ge=1)
    type: Literal["str", "int", "decimal", "date"] = "str"
    scale: int = Field(0, ge=0, le=18)
    #: Used when formatting data that lacks the field (else the data is refused).
    default: str | int | float | None = None

    @property
    def end(self) -> int:
        return self.start - 1 + self.length


class Layout(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    fields: list[LayoutField] = Field(min_length=1)
    length: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _consistent(self) -> Layout:
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            raise ValueError("field names must be unique")
        ordered = sorted(self.fields, key=lambda f: f.start)
        for a, b in itertools.pairwise(ordered):
            if b.start <= a.end:
                raise ValueError(f"fields {a.name!r} and {b.name!r} overlap")
        if self.length is not None and ordered[-1].end > self.length:
            raise ValueError(f"field {ordered[-1].name!r} ends after column {self.length}")
        return self

    @property
    def record_length(self) -> int:
        return self.length or max(f.end for f in self.fields)

    def parse(self, line: str) -> dict[str, Any]:
        """One record → a JSON-ready dict. Short lines are padded (trailing blanks are often
        stripped in transfer); long ones are refused."""
        if len(line) > self.record_length:
            raise RecordError(f"record is {len(line)} characters; the layout has "
                              f"{self.record_length}")
        line = line.ljust(self.record_length)
        return {f.name: _parse_value(f, line[f.start - 1:f.end]) for f in self.fields}

    def format(self, data: dict[str, Any]) -> str:
        """A dict → one record of exactly ``record_length`` characters."""
        out = [" "] * self.record_length
        for f in self.fields:
            value = data.get(f.name, f.default)
            if f.name not in data and f.default is None:
                raise RecordError(f"field {f.name!r} is missing")
            out[f.start - 1:f.end] = _format_value(f, value)
        return "".join(out)


def load_layout(path: Path) -> Layout:
    """Read and check a layout file; problems raise ``ValueError`` naming the file."""
    try:
        doc = yaml.safe_load(path.read_text())
        return Layout.model_validate(doc)
    except OSError as exc:
        raise ValueError(f"layout {path}: cannot read: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise ValueError(f"layout {path}: not YAML: {exc}") from exc
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'layout'}: {e['msg']}"
                             for e in exc.errors())
        raise ValueError(f"layout {path}: {problems}") from exc


def _parse_value(f: LayoutField, raw: str) -> Any:
    if f.type == "str":
        return raw.rstrip()
    text = raw.strip()
    if not text or (f.type == "date" and set(text) == {"0"}):
        return None
    if f.type == "date":
        try:
            return dt.datetime.strptime(text, "%Y%m%d").date().isoformat()
        except ValueError:
            raise RecordError(f"{f.name} (columns {f.start}-{f.end}): {raw!r} is not a "
                              "YYYYMMDD date") from None
    digits = text[1:] if text[0] in "+-" else text
    if not digits.isdigit() or not digits.isascii():
        raise RecordError(f"{f.name} (columns {f.start}-{f.end}): {raw!r} is not a number")
    number = int(text)
    if f.type == "decimal" and f.scale:
        return float(Decimal(number).scaleb(-f.scale))
    return number


def _format_value(f: LayoutField, value: Any) -> str:
    where = f"{f.name} ({f.length} columns)"
    if value is None:
        return ("0" if f.type == "date" else " ") * f.length
    if f.type == "str":
        text = str(value)
        if len(text) > f.length:
            raise RecordError(f"{where}: {text!r} is too long")
        return text.ljust(f.length)
    if f.type == "date":
        try:
            day = value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))
        except ValueError:
            raise RecordError(f"{where}: {value!r} is not an ISO date") from None
        return day.strftime("%Y%m%d")
    if isinstance(value, bool):
        raise RecordError(f"{where}: {value!r} is not a number")
    try:
        number = Decimal(str(value)).scaleb(f.scale if f.type == "decimal" else 0)
    except InvalidOperation:
        raise RecordError(f"{where}: {value!r} is not a number") from None
    if number != number.to_integral_value():
        raise RecordError(f"{where}: {value!r} has more than {f.scale} decimal places")
    digits = str(abs(int(number)))
    text = ("-" + digits.zfill(f.length - 1)) if number < 0 else digits.zfill(f.length)
    if len(text) > f.length:
        raise RecordError(f"{where}: {value!r} does not fit")
    return text
