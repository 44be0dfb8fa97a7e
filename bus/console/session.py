"""Console sessions: a signed cookie instead of the admin token in the browser.

The login form takes the admin token once; the daemon answers with a session cookie
(``Secure``, ``HttpOnly``, ``SameSite=Strict``, ``Path=/``) holding a random session id, its
expiry and an HMAC over both. The key is derived from the admin token, so every worker of
``esb run --workers N`` (and every instance sharing the token) accepts a session any of them
issued, with no shared session store; changing the admin token ends every session.

Every action (any method but GET/HEAD) authenticated by the cookie must also carry the
session's CSRF token (``X-CSRF-Token`` header, or a ``csrf`` form field): an HMAC of the
session id, which a page of the console can read and another site cannot. Logging out
clears the cookie; a copy of it taken before stays valid until it expires (``session_ttl``,
8 h by default) — the price of needing no session store.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

import orjson

COOKIE = "esb_console"
CSRF_HEADER = "x-csrf-token"
#: Before login: binds the login form's CSRF token to this browser.
LOGIN_COOKIE = "esb_console_login"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Session:
    sid: str
    expires: float
    csrf: str


class Sessions:
    """Issues and checks session cookies and CSRF tokens for one admin token."""

    def __init__(self, admin_token: str, ttl: float) -> None:
        self._key = hmac.new(admin_token.encode(), b"esb console session v1",
                             hashlib.sha256).digest()
        self.ttl = ttl

    def _sign(self, payload: bytes) -> str:
        return _b64(hmac.new(self._key, payload, hashlib.sha256).digest())

    def csrf_for(self, sid: str) -> str:
        return self._sign(b"csrf\0" + sid.encode())

    def issue(self, now: float | None = None) -> tuple[str, Session]:
        """A new session: the cookie value and the session it stands for."""
        sid = secrets.token_urlsafe(18)
        expires = (now or time.time()) + self.ttl
        payload = orjson.dumps({"sid": sid, "exp": round(expires, 3)})
        value = f"{_b64(payload)}.{self._sign(payload)}"
        return value, Session(sid, round(expires, 3), self.csrf_for(sid))

    def check(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The session of a cookie value, or None (missing, forged, malformed or expired)."""
        if not cookie or len(cookie) > 512 or cookie.count(".") != 1:
            return None
        body, signature = cookie.split(".")
        try:
            payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except ValueError:  # not base64
            return None
        if not hmac.compare_digest(signature, self._sign(payload)):
            return None
        try:
            data = orjson.loads(payload)
            sid, expires = str(data["sid"]), float(data["exp"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None
        if expires <= (now or time.time()):
            return None
        return Session(sid, expires, self.csrf_for(sid))

    def csrf_ok(self, session: Session, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(given.encode(), session.csrf.encode())

    # -- the login form's own CSRF token (login CSRF: a site logging you in as someone else) --

    def login_nonce(self) -> str:
        return secrets.token_urlsafe(18)

    def login_csrf(self, nonce: str) -> str:
        return self._sign(b"login\0" + nonce.encode())

    def login_csrf_ok(self, nonce: str | None, given: str | None) -> bool:
        return bool(nonce) and bool(given) and hmac.compare_digest(
            str(given).encode(), self.login_csrf(str(nonce)).encode())


def token_matches(given: str, token: str) -> bool:
    """Constant-time comparison of a presented admin token."""
    return hmac.compare_digest(hashlib.sha256(given.encode()).digest(),
                               hashlib.sha256(token.encode()).digest())


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
