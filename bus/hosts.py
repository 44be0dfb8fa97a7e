"""The outbound host allow-list (``http.allowed_hosts``): what an entry may say, and whether a
URL is on the list.

An entry is one of

* ``api.example.com`` — that host, any scheme, any port;
* ``*.example.com`` — any subdomain of ``example.com`` (not ``example.com`` itself);
* ``api.example.com:8443`` / ``[::1]:8080`` — that host on that port only (the port a URL
  uses is its explicit one, else 80 for ``http`` and 443 for ``https``);
* ``https://api.example.com`` / ``http://127.0.0.1:19201`` — that scheme only, and the port
  when one is given.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443, "amqp": 5672, "amqps": 5671}


@dataclass(frozen=True)
class AllowEntry:
    host: str  # lower-case; "*.x" for subdomains
    port: int | None = None
    scheme: str | None = None

    def admits(self, scheme: str, host: str, port: int | None) -> bool:
        if self.scheme is not None and scheme != self.scheme:
            return False
        if self.port is not None and port != self.port:
            return False
        if self.host.startswith("*."):
            return host.endswith(self.host[1:])
        return host == self.host


@lru_cache(maxsize=1024)
def parse_entry(entry: str) -> AllowEntry:
    """``entry`` read as an :class:`AllowEntry`; ValueError when it is none."""
    text = entry.strip()
    if not text:
        raise ValueError("empty entry")
    scheme = None
    if "://" in text:
        parts = urlsplit(text)
        scheme = parts.scheme.lower()
        if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
            raise ValueError("only a scheme, a host and a port: no path, query or user")
        netloc = parts.netloc
    else:
        netloc = text
    host, port = _split(netloc)
    if not host or any(c in host for c in "/@?# "):
        raise ValueError("not a host name")
    if "*" in host and not (host.startswith("*.") and "*" not in host[2:]):
        raise ValueError("a wildcard is only allowed as a leading '*.'")
    return AllowEntry(host.lower(), port, scheme)


def allow_entry_problem(entry: str) -> str | None:
    """Why ``entry`` is not a valid allow-list entry, or None."""
    try:
        parse_entry(entry)
    except ValueError as exc:
        return str(exc)
    return None


def host_allowed(url: str, allowed: tuple[str, ...] | list[str]) -> bool:
    """Whether ``url`` may be called under the allow-list (an empty list allows any URL)."""
    if not allowed:
        return True
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:
        return False
    for entry in allowed:
        try:
            if parse_entry(entry).admits(scheme, host, port):
                return True
        except ValueError:
            continue
    return False


def _split(netloc: str) -> tuple[str, int | None]:
    if netloc.startswith("["):  # [v6]:port
        host, _, rest = netloc[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
        if rest and not rest.startswith(":"):
            raise ValueError("not a host name")
    elif netloc.count(":") == 1:
        host, _, port_text = netloc.partition(":")
    else:
        host, port_text = netloc, ""  # a bare IPv6 address, or no port
    if not port_text:
        return host, None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"port {port_text!r} is not a number from 1 to 65535")
    return host, int(port_text)
