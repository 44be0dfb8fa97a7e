"""Secret settings: where they sit in a validated configuration, the rule that they are written
as ``${VAR}`` references, and the values no log line may show.

A secret setting is any :class:`~pydantic.SecretStr` (or ``SecretBytes``) field, in the core
models or in any adapter's settings model, built in or a plugin's: the walk below finds them by
type, wherever they are nested, so a new adapter needs nothing but the type.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from functools import reduce
from operator import getitem
from typing import Any

from pydantic import BaseModel, SecretBytes, SecretStr

from esb.bus.config.yamlsource import Document, Loc

LITERAL_SECRET = "secrets come from ${VAR} references, not literal values"

#: Keys whose *interpolated* values are treated as secrets even when the field is not typed as
#: one (``headers: {Authorization: "Bearer ${TOKEN}"}``): the fallback of :func:`log_secrets`.
SECRET_NAME = re.compile(r"token|passw|secret|key|credential|auth|users", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"://[^:/@\s]+:([^@/\s]+)@")

Secret = SecretStr | SecretBytes


def find_secrets(value: Any, loc: Loc = ()) -> Iterator[tuple[Loc, Secret]]:
    """Every secret in ``value`` (a model, mapping or list, at any depth) with its key path,
    spelled as in the configuration file (field aliases, mapping keys, list indexes)."""
    if isinstance(value, (SecretStr, SecretBytes)):
        yield loc, value
    elif isinstance(value, BaseModel):
        for name, info in type(value).model_fields.items():
            key = info.validation_alias if isinstance(info.validation_alias, str) else None
            yield from find_secrets(getattr(value, name), (*loc, key or info.alias or name))
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from find_secrets(item, (*loc, key))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from find_secrets(item, (*loc, i))


def secret_text(secret: Secret) -> str:
    value = secret.get_secret_value()
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def literal_secret_problems(doc: Document | None,
                            secrets: Iterable[tuple[Loc, Secret]]) -> list[str]:
    """``file:line: key: message`` for each secret written in ``doc`` as a literal value.

    A value holding a ``${VAR}`` or ``${VAR:-default}`` reference is fine (the default, too,
    is the operator's choice); an empty value means "not set" and is left to the field's own
    rules (an empty ``admin.token`` makes the daemon generate one). A default the model filled
    in (the key is not in the file) is not the file's literal."""
    if doc is None:
        return []
    out = []
    for loc, secret in secrets:
        if loc not in doc.lines or not secret_text(secret):
            continue
        if any(loc[:i] in doc.references for i in range(1, len(loc) + 1)):
            continue
        out.append(f"{doc.where(loc)}: {'.'.join(map(str, loc))}: {LITERAL_SECRET}")
    return out


def log_secrets(models: Iterable[tuple[Loc, Any]], doc: Document | None) -> list[str]:
    """The values to replace by ``***`` in every log line: each secret of the validated
    ``models`` (``(key path, model)`` pairs) and the password of a URL among them; then, as a
    fallback for settings not typed as secrets, every interpolated value under a secret-looking
    key (``headers.Authorization``: the whole value and what each reference in it resolved to)
    and the password of any interpolated URL."""
    out: list[str] = []
    for prefix, model in models:
        for _, secret in find_secrets(model, prefix):
            out.extend(_with_url_password(secret_text(secret)))
    if doc is not None:
        for path in doc.secret_paths:
            text = str(reduce(getitem, path, doc.value))
            if any(SECRET_NAME.search(str(p)) for p in path):
                out += [text, *doc.substituted.get(path, ())]
            elif (m := _URL_PASSWORD.search(text)) is not None:
                out.append(m.group(1))
    return sorted({s for s in out if s}, key=len, reverse=True)


def _with_url_password(text: str) -> list[str]:
    m = _URL_PASSWORD.search(text)
    return [text, m.group(1)] if m else [text]
