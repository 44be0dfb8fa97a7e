"""Console session cookies and CSRF tokens: signed, expiring, bound to the admin token."""

from __future__ import annotations

import time

from esb.bus.console.session import Sessions


def test_a_session_is_accepted_until_it_expires() -> None:
    s = Sessions("admin-token", ttl=60)
    cookie, session = s.issue(now=1000.0)
    assert s.check(cookie, now=1059.0) == session
    assert s.check(cookie, now=1061.0) is None


def test_forged_tampered_and_foreign_cookies_are_refused() -> None:
    s = Sessions("admin-token", ttl=60)
    cookie, _ = s.issue()
    body, sig = cookie.split(".")
    assert s.check(body + "." + sig[:-2] + ("AA" if sig[-2:] != "AA" else "BB")) is None
    later = body[:-1] + ("A" if body[-1] != "A" else "B")
    assert s.check(later + "." + sig) is None
    assert s.check("") is None and s.check(None) is None and s.check("x" * 600) is None
    assert s.check("no-dot") is None and s.check("a.b.c") is None
    # another admin token (another deployment, or the token was changed): every session ends
    assert Sessions("other-token", ttl=60).check(cookie) is None


def test_csrf_token_is_bound_to_the_session() -> None:
    s = Sessions("admin-token", ttl=60)
    _, one = s.issue()
    _, two = s.issue()
    assert one.csrf != two.csrf
    assert s.csrf_ok(one, one.csrf)
    assert not s.csrf_ok(one, two.csrf)
    assert not s.csrf_ok(one, None) and not s.csrf_ok(one, "")


def test_login_form_token_is_bound_to_its_nonce() -> None:
    s = Sessions("admin-token", ttl=60)
    nonce = s.login_nonce()
    token = s.login_csrf(nonce)
    assert s.login_csrf_ok(nonce, token)
    assert not s.login_csrf_ok(s.login_nonce(), token)
    assert not s.login_csrf_ok(None, token) and not s.login_csrf_ok(nonce, None)


def test_expiry_uses_the_clock() -> None:
    s = Sessions("admin-token", ttl=0.5)
    cookie, _ = s.issue()
    assert s.check(cookie) is not None
    time.sleep(0.7)
    assert s.check(cookie) is None
