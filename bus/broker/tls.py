"""TLS for AMQP connections, read from the URL: RabbitMQ's URI query parameters
``cacertfile``, ``certfile``, ``keyfile``, ``server_name_indication`` and ``verify``
(``verify_peer``/``verify_none``), as in ``amqps://user:pass@host:5671/vhost?cacertfile=/ca.pem``.

Every part that connects to the broker (the bus, the route store, trace, presence, the
idempotency log, the queue tools, the ``amqp`` adapter) is handed a URL and nothing else, so
the URL carries its TLS settings; ``bus.tls`` in the configuration is written into it with
:func:`with_tls`. pika connections get an ``ssl.SSLContext`` (:func:`pika_parameters`), kombu
connections py-amqp's TLS options (:func:`kombu_ssl`) — one reading of the parameters for
both. A URL naming several nodes (comma-separated) carries the settings on each.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pika

#: The query parameters this module takes out of an AMQP URL (RabbitMQ's names).
TLS_PARAMS = ("cacertfile", "certfile", "keyfile", "server_name_indication", "verify")


def split_url(url: str) -> tuple[str, dict[str, str]]:
    """``url`` without the TLS query parameters, and those parameters."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    tls = {k: v for k, v in query if k in TLS_PARAMS}
    rest = [(k, v) for k, v in query if k not in TLS_PARAMS]
    return urlunsplit(parts._replace(query=urlencode(rest))), tls


def with_tls(url: str, *, ca_file: Path | None = None, cert_file: Path | None = None,
             key_file: Path | None = None, server_name: str | None = None,
             verify: bool = True) -> str:
    """``url`` carrying these TLS settings as query parameters (set ones replace the URL's)."""
    plain, tls = split_url(url)
    for key, value in (("cacertfile", ca_file), ("certfile", cert_file),
                       ("keyfile", key_file), ("server_name_indication", server_name)):
        if value is not None:
            tls[key] = str(value)
    if not verify:
        tls["verify"] = "verify_none"
    if not tls:
        return plain
    parts = urlsplit(plain)
    query = "&".join(q for q in (parts.query, urlencode(tls)) if q)
    return urlunsplit(parts._replace(query=query))


def _verify(tls: Mapping[str, str]) -> bool:
    return tls.get("verify", "verify_peer") != "verify_none"


def client_context(ca_file: str | Path | None = None, cert_file: str | Path | None = None,
                   key_file: str | Path | None = None, *, verify: bool = True
                   ) -> ssl.SSLContext:
    """A client TLS context: the system's trust store or ``ca_file``, a client certificate
    when ``cert_file`` is given. Raises ValueError naming a file that cannot be used."""
    try:
        ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        if cert_file:
            ctx.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"TLS files ({ca_file or '-'}, {cert_file or '-'}, "
                         f"{key_file or '-'}): {exc}") from None
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def pika_parameters(url: str) -> pika.URLParameters:
    """pika's parameters for ``url``, with an ``ssl.SSLContext`` built from its TLS
    parameters for ``amqps://``."""
    plain, tls = split_url(url)
    params = pika.URLParameters(plain)
    if plain.lower().startswith("amqps://"):
        ctx = client_context(tls.get("cacertfile"), tls.get("certfile"), tls.get("keyfile"),
                             verify=_verify(tls))
        params.ssl_options = pika.SSLOptions(
            ctx, tls.get("server_name_indication") or params.host)
    return params


def kombu_ssl(url: str) -> bool | dict[str, Any]:
    """py-amqp's TLS options for ``url`` (kombu's ``ssl=``): False for ``amqp://``, else the
    same settings :func:`pika_parameters` reads."""
    plain, tls = split_url(url)
    if not plain.lower().startswith("amqps://"):
        return False
    verify = _verify(tls)
    opts: dict[str, Any] = {
        "cert_reqs": ssl.CERT_REQUIRED if verify else ssl.CERT_NONE,
        # (no name check without verification)
        "server_hostname": (tls.get("server_name_indication") or urlsplit(plain).hostname)
        if verify else None}
    for ours, theirs in (("cacertfile", "ca_certs"), ("certfile", "certfile"),
                         ("keyfile", "keyfile")):
        if tls.get(ours):
            opts[theirs] = tls[ours]
    return opts
