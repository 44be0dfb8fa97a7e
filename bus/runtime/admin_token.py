"""The admin API's bearer token (configured, or made once per state folder) and its address,
both written to the state folder where the CLI finds them."""

from __future__ import annotations

import secrets
from pathlib import Path

from esb.bus.atomicfile import write_atomically
from esb.bus.config.loader import Loaded


def admin_token(loaded: Loaded) -> str:
    """The configured token, or one made for this state folder (written 0600 for the CLI).

    ``esb run --workers N`` calls this once in the supervisor before any worker starts, so the
    workers all read the one file instead of racing to create different tokens."""
    cfg = loaded.config
    if cfg.admin.token:
        return cfg.admin.token
    path = cfg.resolve(cfg.bus.state_dir) / "admin.token"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(24)
    write_atomically(path, (token + "\n").encode(), mode=0o600)
    return token


#: Listen hosts that mean "every interface": the CLI reaches those over loopback.
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def admin_url(host: str, port: int) -> str:
    """The URL the CLI on this host reaches a daemon listening on ``host:port`` at."""
    host = _WILDCARDS.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def write_admin_url(loaded: Loaded) -> Path:
    """Write ``<state_dir>/admin.url`` (the daemon's own address), so the CLI follows
    ``esb run --listen`` and ``http.listen`` without being told."""
    cfg = loaded.config
    path = cfg.resolve(cfg.bus.state_dir) / "admin.url"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, (admin_url(cfg.http.host, cfg.http.port) + "\n").encode())
    return path
