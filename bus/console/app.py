"""The web console (``/console``): server-sent page shells, data from the admin API.

Each page is a static shell (``pages/<name>.html`` inside the base layout) plus a script of
its own; the script reads and acts through the admin API (``/admin/...``) with the session
cookie and the CSRF token the shell carries in a ``<meta>`` tag. There is no second data
path: what a page shows is what the admin API answered, and every action is an admin call.
Scripts put data into the page with ``textContent`` (never as markup), and every page is
served with a Content-Security-Policy that forbids inline script, so text from an envelope,
an error or a route file cannot run as code.

The pages and the login answer only where the admin API does (loopback unless
``admin.remote``), and ask for a session: without one, a page redirects to the login form.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from urllib.parse import parse_qsl, quote

from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from esb.bus.console.session import COOKIE, LOGIN_COOKIE, Sessions, token_matches
from esb.bus.httpbody import BodyTooLarge, read_body
from esb.bus.payload import media_type
from esb.bus.runtime.admin import is_loopback

STATIC = Path(str(files("esb.bus.console") / "static"))
PAGES = Path(str(files("esb.bus.console") / "pages"))

#: Page name → (title, script). The order is the navigation's.
NAV: dict[str, tuple[str, tuple[str, ...]]] = {
    "overview": ("Overview", ("chart.js", "overview.js")),
    "routes": ("Routes", ("routes.js",)),
    "deadletters": ("Dead letters", ("deadletters.js",)),
    "trace": ("Trace", ("trace.js",)),
    "plugins": ("Adapters & transformers", ("plugins.js",)),
}

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "no-referrer", "Cache-Control": "no-store",
                    "X-Frame-Options": "DENY"}

Refusal = Callable[[Request], Response | None]
FORM_TYPE = "application/x-www-form-urlencoded"
MAX_FORM = 4096


def _layout(title: str, body: str, *, csrf: str = "", scripts: tuple[str, ...] = (),
            nav: str | None = None) -> str:
    links = "".join(
        f'<a href="/console/{name}"{" class=active" if name == nav else ""}>'
        f"{html.escape(label)}</a>" for name, (label, _) in NAV.items())
    header = "" if nav is None else (
        f'<nav><span class="brand">esb</span>{links}<a href="/docs">API docs</a>'
        '<form method="post" action="/console/logout" class="logout">'
        f'<input type="hidden" name="csrf" value="{html.escape(csrf)}">'
        '<button type="submit" id="logout">Log out</button></form></nav>')
    tags = "".join(f'<script src="/console/static/{s}"></script>' for s in scripts)
    return ("<!doctype html><html lang=en><head><meta charset=utf-8>"
            f'<meta name="csrf-token" content="{html.escape(csrf)}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)} · esb console</title>"
            '<link rel="stylesheet" href="/console/static/console.css">'
            '<script src="/console/static/console.js"></script>'
            f"{tags}</head><body>{header}<main>{body}</main></body></html>")


def _html(text: str, status: int = 200, headers: dict[str, str] | None = None) -> HTMLResponse:
    return HTMLResponse(text, status, headers={**SECURITY_HEADERS, **(headers or {})})


class Console:
    """The console's routes. ``refusal`` is the admin binding check (loopback unless
    ``admin.remote``): the console answers exactly where the admin API does."""

    def __init__(self, token: str, sessions: Sessions, binding: Refusal) -> None:
        self.token = token
        self.sessions = sessions
        self.binding = binding

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/console", self.home, methods=["GET"]),
            Route("/console/", self.home, methods=["GET"]),
            Route("/console/login", self.login_form, methods=["GET"]),
            Route("/console/login", self.login, methods=["POST"]),
            Route("/console/logout", self.logout, methods=["POST"]),
            Mount("/console/static", StaticFiles(directory=STATIC), name="console-static"),
            *(Route(f"/console/{name}", self._page(name), methods=["GET"]) for name in NAV),
        ]

    async def home(self, request: Request) -> Response:
        return RedirectResponse("/console/overview", 303)

    def _page(self, name: str) -> Callable[[Request], object]:
        title, scripts = NAV[name]
        body = (PAGES / f"{name}.html").read_text(encoding="utf-8")

        async def page(request: Request) -> Response:
            if (refused := self.binding(request)) is not None:
                return refused
            cookie = request.cookies.get(COOKIE)
            session = self.sessions.check(cookie)
            if session is None:
                why = "?expired=1" if cookie else ""
                return RedirectResponse(f"/console/login{why}", 303,
                                        headers={"Cache-Control": "no-store"})
            return _html(_layout(title, body, csrf=session.csrf, scripts=scripts, nav=name))

        return page

    # -- login / logout ------------------------------------------------------------------------

    def _login_page(self, error: str | None = None, status: int = 200,
                    notice: str | None = None) -> Response:
        nonce = self.sessions.login_nonce()
        message = ""
        if error:
            message = f'<p class="error" id="login-error" role="alert">{html.escape(error)}</p>'
        elif notice:
            message = f'<p class="notice" id="login-notice">{html.escape(notice)}</p>'
        body = ('<section class="login"><h1>esb console</h1>'
                f"{message}"
                '<form method="post" action="/console/login">'
                f'<input type="hidden" name="csrf" value="{self.sessions.login_csrf(nonce)}">'
                '<label>Admin token <input type="password" name="token" id="token" '
                'autocomplete="current-password" required autofocus></label>'
                '<button type="submit" id="login">Log in</button></form>'
                '<p class="hint">The token is <code>admin.token</code> of the daemon '
                "(<code>$ESB_ADMIN_TOKEN</code>), or the one it wrote to "
                "<code>.esb/admin.token</code>.</p></section>")
        response = _html(_layout("Log in", body), status)
        response.set_cookie(LOGIN_COOKIE, nonce, max_age=3600, path="/console/login",
                            secure=True, httponly=True, samesite="strict")
        return response

    async def login_form(self, request: Request) -> Response:
        if (refused := self.binding(request)) is not None:
            return refused
        if self.sessions.check(request.cookies.get(COOKIE)) is not None:
            return RedirectResponse("/console/overview", 303)
        notice = None
        if request.query_params.get("expired"):
            notice = "Your session has expired or is no longer valid: log in again."
        elif request.query_params.get("out"):
            notice = "You are logged out."
        return self._login_page(notice=notice)

    async def login(self, request: Request) -> Response:
        if (refused := self.binding(request)) is not None:
            return refused
        form = await _form(request)
        if form is None:
            return self._login_page("The login form could not be read.", 400)
        token, csrf = form.get("token"), form.get("csrf")
        if not self.sessions.login_csrf_ok(request.cookies.get(LOGIN_COOKIE),
                                           csrf if isinstance(csrf, str) else None):
            return self._login_page("The login form expired or came from another site: "
                                    "try again.", 403)
        if not isinstance(token, str) or not token_matches(token, self.token):
            return self._login_page("Wrong admin token.", 401)
        if request.url.scheme != "https" and not is_loopback(request):
            return self._login_page("The console keeps its session in a Secure cookie, which "
                                    "browsers only keep over HTTPS: serve it behind TLS to use "
                                    "it from another machine.", 400)
        value, _ = self.sessions.issue()
        response = RedirectResponse(_next(request), 303)
        response.set_cookie(COOKIE, value, max_age=int(self.sessions.ttl), path="/",
                            secure=True, httponly=True, samesite="strict")
        response.delete_cookie(LOGIN_COOKIE, path="/console/login")
        return response

    async def logout(self, request: Request) -> Response:
        if (refused := self.binding(request)) is not None:
            return refused
        session = self.sessions.check(request.cookies.get(COOKIE))
        csrf = (await _form(request) or {}).get("csrf")
        if session is not None and not self.sessions.csrf_ok(
                session, csrf if isinstance(csrf, str) else None):
            return _html(_layout("Refused", '<p class="error" role="alert">Log-out refused: the '
                                 "form carried no valid CSRF token.</p>"), 403)
        response = RedirectResponse("/console/login?out=1", 303)
        response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="strict")
        return response


async def _form(request: Request) -> dict[str, str] | None:
    """A small urlencoded form (the login and logout forms), or None when it is anything
    else or larger than :data:`MAX_FORM` bytes."""
    if media_type(request.headers.get("content-type", ""))[0] != FORM_TYPE:
        return None
    try:
        body = await read_body(request, MAX_FORM)
        pairs = parse_qsl(body.decode("ascii"), max_num_fields=10, strict_parsing=False)
    except (BodyTooLarge, UnicodeDecodeError, ValueError, ClientDisconnect):
        return None
    return dict(pairs)


def _next(request: Request) -> str:
    """Where to go after login: a console page named in ``?next=``, else the overview."""
    target = request.query_params.get("next", "")
    if target.startswith("/console/") and "//" not in target and "\\" not in target:
        return quote(target, safe="/?=&")
    return "/console/overview"
