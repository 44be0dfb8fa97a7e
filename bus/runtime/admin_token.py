"""The admin API's bearer token: configured, or made once per state folder for the CLI."""

from __future__ import annotations

import os
import secrets

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
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token
