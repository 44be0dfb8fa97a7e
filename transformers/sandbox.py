"""The XSLT/XSD sandbox: what a stylesheet or schema may read, and nothing else.

libxslt checks its security preferences *before* calling the document loader, so
``read_file=False`` would forbid ``document()`` of a stylesheet's own sibling files too. esb
therefore allows file reads in the :data:`ACCESS_CONTROL` and makes a :class:`FolderResolver`
the only loader: it answers every request itself (own folder, subfolders) or refuses it, so
libxml2's default loader never opens a file. Writes, directory creation and all network access
stay denied by the access control as a second line.
"""

from __future__ import annotations

import os
from collections import deque
from pathlib import Path
from urllib.parse import unquote, urlsplit

from lxml import etree

from esb.bus.errors import ConfigError
from esb.bus.xmlsafe import DEFAULT_MAX_BYTES, hardened_parser

ACCESS_CONTROL = etree.XSLTAccessControl(
    read_file=True,  # gated by FolderResolver, see the module docstring
    write_file=False,
    create_dir=False,
    read_network=False,
    write_network=False,
)
#: How many refusals a :class:`FolderResolver` remembers (more than one load ever needs).
KEPT_REFUSALS = 32


class SandboxViolation(Exception):
    """A stylesheet or schema asked for something outside its folder."""


class FolderResolver(etree.Resolver):
    """Serves files inside ``root`` (after resolving symlinks) and refuses everything else.

    The latest refusals are kept in :attr:`refused` so compile errors can name them: lxml does
    not always surface a resolver's exception text. A stylesheet's resolver also answers
    ``document()`` for every message it transforms, so only the last :data:`KEPT_REFUSALS` are
    kept: hostile messages cannot grow it.
    """

    def __init__(self, root: Path, *, owner: str = "stylesheet") -> None:
        super().__init__()
        self.root = Path(os.path.realpath(root))
        self.owner = owner
        self.refused: deque[str] = deque(maxlen=KEPT_REFUSALS)

    def resolve(self, system_url: str | None, public_id: str | None, context: object) -> object:
        path = self.allowed_path(system_url or "")
        if path.stat().st_size > DEFAULT_MAX_BYTES:
            self._refuse(f"{path.name} is larger than {DEFAULT_MAX_BYTES} bytes")
        return self.resolve_string(path.read_bytes(), context, base_url=str(path))

    def allowed_path(self, url: str) -> Path:
        """The local file ``url`` names, if it lies inside :attr:`root`; else refuse."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme == "file":
            raw = unquote(parts.path)
        elif scheme == "" or (len(scheme) == 1 and os.name == "nt"):
            raw = unquote(url)
        else:
            self._refuse(f"{_short(url)}: {scheme}: URLs are not allowed (no network access)")
        path = Path(os.path.realpath(raw if os.path.isabs(raw) else self.root / raw))
        if not path.is_relative_to(self.root):
            self._refuse(f"{_short(url)}: outside the {self.owner}'s folder {self.root}")
        if not path.is_file():
            self._refuse(f"{_short(url)}: no such file")
        return path

    def _refuse(self, message: str) -> None:
        self.refused.append(message)
        raise SandboxViolation(message)


def confined(base: Path, name: str | Path, what: str) -> Path:
    """The file ``name`` (relative to ``base``, or absolute) names, after resolving symlinks;
    a ConfigError when it lies outside ``base`` (the configuration folder). The answer is the
    same whether such a file exists or not, so a deployer learns nothing about files outside."""
    root = Path(os.path.realpath(base))
    path = Path(os.path.realpath(root / name))
    if not path.is_relative_to(root):
        raise ConfigError([f"{what} {_short(str(name))!r} lies outside the configuration "
                           f"folder; {what}s must be inside {root}"])
    return path


def sandboxed_parser(root: Path, *, owner: str = "stylesheet"
                     ) -> tuple[etree.XMLParser, FolderResolver]:
    """A hardened parser whose only loader is a :class:`FolderResolver` on ``root``."""
    parser = hardened_parser()
    resolver = FolderResolver(root, owner=owner)
    parser.resolvers.add(resolver)
    return parser, resolver


def _short(url: str) -> str:
    return url if len(url) <= 120 else url[:117] + "..."
