"""Admin API endpoints of the route lifecycle (``/admin/routes/...``), for ``esb routes``.

* ``GET  /admin/routes/versions``        every version, oldest first, without file texts
* ``GET  /admin/routes/versions/{n}``    one version with its files
* ``POST /admin/routes/deploy``          ``{"files": {name: text}, "by": str, "note": str?,
  "force": bool?}`` → 201 with the stored version; 200 with the latest version and
  ``"unchanged": true`` when it has these files already (unless ``force``); 422 problem+json
  with every problem in ``errors`` on refusal
* ``POST /admin/routes/rollback``        ``{"version": n | null, "by": str, "force": bool?}``
  → 201 (default version: the newest earlier one whose files differ from the latest's)
* ``GET  /admin/routes/diff?a=N&b=M``    unified diff of each changed file
* ``POST /admin/routes/test``            ``{"files": {name: text}}`` or ``{"version": n}``: run
  the files' ``tests:`` cases (nothing is sent) → ``{"cases", "passed", "failed"}``; 422 when
  the files do not compile
"""

from __future__ import annotations

import difflib
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from esb.bus.errors import BusError, ConfigError
from esb.bus.problem import json_object, json_response, problem
from esb.bus.routing.store import RouteVersion, UnknownVersion
from esb.bus.runtime.admin_ops import Guard
from esb.bus.runtime.deploy import RollbackError, RouteDeployer, Unchanged
from esb.bus.runtime.route_tests import RouteTester

MAX_FILES = 1000


def route_admin_routes(deployer: RouteDeployer, guard: Guard,
                       tester: RouteTester | None = None) -> list[Route]:
    """The route-lifecycle endpoints, each wrapped in ``guard`` (the admin token check);
    ``/admin/routes/test`` only with a ``tester``."""

    async def versions(request: Request) -> Response:
        history = await deployer.store.history()
        running = deployer.running
        return json_response({"running": running.version if running else None,
                              "instance": deployer.instance,
                              "versions": [v.summary() for v in history]})

    async def version(request: Request) -> Response:
        n = request.path_params["n"]
        try:
            v = await deployer.store.get(n)
        except UnknownVersion as exc:
            return problem(404, "Unknown route version", str(exc))
        return json_response(v.to_dict())

    async def deploy(request: Request) -> Response:
        body = await json_object(request)
        if isinstance(body, Response):
            return body
        files = _files(body, "Bad deploy request")
        if isinstance(files, Response):
            return files
        by, note, force = body.get("by") or "unknown", body.get("note"), body.get("force")
        if not isinstance(by, str) or (note is not None and not isinstance(note, str)) \
                or not isinstance(force, bool | None):
            return problem(400, "Bad deploy request",
                           '"by" and "note" are strings, "force" a boolean')
        try:
            v = await deployer.deploy(files, by=by, note=note, force=bool(force))
        except Unchanged as exc:
            return _stored(exc.latest, unchanged=True)
        except ConfigError as exc:
            return _refused(exc)
        except BusError as exc:
            return problem(503, "Route store unavailable", str(exc))
        return _stored(v)

    async def rollback(request: Request) -> Response:
        body = await json_object(request)
        if isinstance(body, Response):
            return body
        target, by = body.get("version"), body.get("by") or "unknown"
        force = body.get("force")
        if (target is not None and (not isinstance(target, int) or isinstance(target, bool))) \
                or not isinstance(by, str) or not isinstance(force, bool | None):
            return problem(400, "Bad rollback request",
                           '"version" is a version number or null, "by" a string, "force" a '
                           "boolean")
        try:
            v = await deployer.rollback(target, by=by, force=bool(force))
        except UnknownVersion as exc:
            return problem(404, "Unknown route version", str(exc))
        except RollbackError as exc:
            return problem(409, "Nothing to roll back", str(exc))
        except ConfigError as exc:
            return _refused(exc)
        except BusError as exc:
            return problem(503, "Route store unavailable", str(exc))
        return _stored(v)

    async def diff(request: Request) -> Response:
        q = request.query_params
        try:
            a, b = int(q.get("a", "")), int(q.get("b", ""))
        except ValueError:
            return problem(400, "Bad diff request", "diff needs ?a=N&b=M (version numbers)")
        try:
            va, vb = await deployer.store.get(a), await deployer.store.get(b)
        except UnknownVersion as exc:
            return problem(404, "Unknown route version", str(exc))
        return json_response({"a": va.summary(), "b": vb.summary(), "files": diff_versions(va, vb)})

    async def test(request: Request) -> Response:
        body = await json_object(request)
        if isinstance(body, Response):
            return body
        if "version" in body and "files" not in body:
            n = body["version"]
            if not isinstance(n, int) or isinstance(n, bool):
                return problem(400, "Bad test request", '"version" is a version number')
            try:
                files: dict[str, str] | Response = (await deployer.store.get(n)).files
            except UnknownVersion as exc:
                return problem(404, "Unknown route version", str(exc))
            except BusError as exc:
                return problem(503, "Route store unavailable", str(exc))
        else:
            files = _files(body, "Bad test request")
        if isinstance(files, Response):
            return files
        assert tester is not None  # only served with one
        try:
            result = await tester.run(files)
        except ConfigError as exc:
            return problem(422, "Route set does not compile",
                           f"{len(exc.problems)} problem(s); no test was run",
                           errors=exc.problems)
        return json_response({"version": body.get("version"), **result})

    def _stored(v: RouteVersion, unchanged: bool = False) -> Response:
        """The version stored (201), or the latest one that has the files already (200),
        and whether this instance runs it yet."""
        running = deployer.running
        body = {**v.summary(), "running": running is not None and running.version >= v.version}
        return json_response({**body, "unchanged": True} if unchanged else body,
                             200 if unchanged else 201)

    return [
        Route("/admin/routes/versions", guard(versions), methods=["GET"]),
        Route("/admin/routes/versions/{n:int}", guard(version), methods=["GET"]),
        Route("/admin/routes/deploy", guard(deploy), methods=["POST"]),
        Route("/admin/routes/rollback", guard(rollback), methods=["POST"]),
        Route("/admin/routes/diff", guard(diff), methods=["GET"]),
        *([Route("/admin/routes/test", guard(test), methods=["POST"])] if tester else []),
    ]


def _files(body: dict[str, Any], title: str) -> dict[str, str] | Response:
    """The ``files`` of a deploy or test request, or the 400 answer saying what is wrong."""
    files = body.get("files")
    if (not isinstance(files, dict) or not files or len(files) > MAX_FILES
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items())):
        return problem(400, title,
                       '"files" must map route file names to their texts (at least one)')
    bad = [name for name in files if not _plain_name(name)]
    if bad:
        return problem(400, title, f"route file names must be plain names, not paths: {bad}")
    return files


def diff_versions(a: RouteVersion, b: RouteVersion) -> list[dict[str, str]]:
    """Per changed file: name, status (added/removed/modified) and a unified diff a → b."""
    out = []
    for name in sorted(set(a.files) | set(b.files)):
        old, new = a.files.get(name), b.files.get(name)
        if old == new:
            continue
        status = "added" if old is None else "removed" if new is None else "modified"
        text = "".join(difflib.unified_diff(
            _lines(old), _lines(new),
            fromfile=f"v{a.version}/{name}" if old is not None else "/dev/null",
            tofile=f"v{b.version}/{name}" if new is not None else "/dev/null"))
        out.append({"name": name, "status": status, "diff": text})
    return out


def _lines(text: str | None) -> list[str]:
    if text is None:
        return []
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n\\ No newline at end of file\n"
    return lines


def _plain_name(name: str) -> bool:
    return bool(name) and "/" not in name and "\\" not in name and name not in (".", "..") \
        and "\0" not in name


def _refused(exc: ConfigError) -> Response:
    return problem(422, "Route set refused",
                   f"{len(exc.problems)} problem(s); nothing was deployed and the running "
                   "route set stays", errors=exc.problems)
