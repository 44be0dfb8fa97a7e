"""A small client of the daemon's admin API, used by the CLI, and where the CLI finds the
daemon: its URL and admin token."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from esb.bus.cli.output import fail

DEFAULT_URL = "http://127.0.0.1:8080"
TOKEN_HINT = ("set --token or ESB_ADMIN_TOKEN, or run esb where the daemon's "
              ".esb/admin.token is (in this folder or above it)")


class AdminError(Exception):
    """The daemon could not be reached, or refused the request (message is for the user)."""


def state_dirs(start: Path | None = None) -> Iterator[Path]:
    """Where a daemon's state folder (``.esb``, holding ``admin.token`` and ``admin.url``)
    may be, nearest first: in the working folder or any folder above it (as git finds
    ``.git``), then beside the configuration ``ESB_CONFIG`` names."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        yield folder / ".esb"
    if config := os.environ.get("ESB_CONFIG"):
        from esb.bus.config.model import project_dir

        yield project_dir(Path(config).resolve()) / ".esb"


def _state_file(name: str, start: Path | None = None) -> str | None:
    for folder in state_dirs(start):
        path = folder / name
        try:
            return path.read_text().strip() or None
        except OSError:
            continue
    return None


def find_token(explicit: str | None, start: Path | None = None) -> str | None:
    """``--token``, else ``ESB_ADMIN_TOKEN``, else the nearest ``.esb/admin.token``."""
    if explicit:
        return explicit
    if env := os.environ.get("ESB_ADMIN_TOKEN"):
        return env
    return _state_file("admin.token", start)


def find_url(explicit: str | None, start: Path | None = None) -> str:
    """``--url``/``ESB_ADMIN_URL``, else ``ESB_LISTEN`` (what the daemon was told to listen
    on), else the address the nearest daemon wrote to ``.esb/admin.url``, else the default."""
    if explicit:
        return explicit
    if listen := os.environ.get("ESB_LISTEN", "").strip():
        from esb.bus.runtime.admin_token import admin_url

        host, _, port = listen.rpartition(":")
        if port.isdigit():
            return admin_url(host.strip("[]"), int(port))
    return _state_file("admin.url", start) or DEFAULT_URL


def body_of(response: httpx.Response) -> Any:
    """An admin API answer's body: its JSON, else its text (None when empty)."""
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return response.text


def refusal(what: str, status: int, body: Any) -> str:
    """The user's line for a refused admin request: ``what`` (``POST /admin/...``), the
    status, the problem's detail (or title), and where a token comes from on a 401."""
    detail = (body.get("detail") or body.get("title")) if isinstance(body, dict) else body
    hint = f" ({TOKEN_HINT})" if status == 401 else ""
    return f"{what}: HTTP {status}: {detail}{hint}"


@dataclass
class AdminClient:
    url: str
    token: str | None
    timeout: float = 30.0

    @property
    def auth(self) -> dict[str, str]:
        """The ``Authorization`` header carrying the admin token (none without a token)."""
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def unreachable(self, exc: Exception) -> AdminError:
        return AdminError(f"cannot reach the esb daemon at {self.url}: {exc} "
                          "(is `esb run` running? set --url or ESB_ADMIN_URL)")

    def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        """One request: its status and :func:`body_of`; AdminError when the daemon cannot
        be reached."""
        headers = {**kwargs.pop("headers", {}), **self.auth}
        try:
            with httpx.Client(base_url=self.url, timeout=self.timeout, trust_env=False) as c:
                response = c.request(method, path, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            raise self.unreachable(exc) from exc
        return response.status_code, body_of(response)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """:meth:`call`'s body; AdminError (:func:`refusal`) for an answer of 400 or more."""
        status, body = self.call(method, path, **kwargs)
        if status >= 400:
            raise AdminError(refusal(f"{method} {path}", status, body))
        return body


def ask(client: AdminClient, method: str, path: str, **kwargs: Any) -> Any:
    """:meth:`AdminClient.request`, or exit 1 with the reason (the CLI's commands)."""
    try:
        return client.request(method, path, **kwargs)
    except AdminError as exc:
        fail(str(exc))
