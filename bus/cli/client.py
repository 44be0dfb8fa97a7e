"""A small client of the daemon's admin API, used by the CLI."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

DEFAULT_URL = "http://127.0.0.1:8080"


class AdminError(Exception):
    """The daemon could not be reached, or refused the request (message is for the user)."""


def find_token(explicit: str | None, state_dir: Path = Path(".esb")) -> str | None:
    if explicit:
        return explicit
    if env := os.environ.get("ESB_ADMIN_TOKEN"):
        return env
    path = state_dir / "admin.token"
    return path.read_text().strip() if path.exists() else None


@dataclass
class AdminClient:
    url: str
    token: str | None
    timeout: float = 30.0

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = kwargs.pop("headers", {})
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            with httpx.Client(base_url=self.url, timeout=self.timeout, trust_env=False) as c:
                response = c.request(method, path, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            raise AdminError(f"cannot reach the esb daemon at {self.url}: {exc} "
                             "(is `esb run` running? set --url or ESB_ADMIN_URL)") from exc
        if response.status_code >= 400:
            try:
                body = response.json()
                detail = body.get("detail") or body.get("title") or response.text
            except ValueError:
                detail = response.text
            hint = " (set ESB_ADMIN_TOKEN or --token)" if response.status_code == 401 else ""
            raise AdminError(f"{method} {path}: HTTP {response.status_code}: {detail}{hint}")
        return response.json() if response.content else None
