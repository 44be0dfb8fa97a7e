"""``esb routes deploy | list | history | diff | rollback``: thin clients of the daemon's
``/admin/routes/...`` endpoints. :func:`register` attaches them, and ``esb routes test``
(:mod:`esb.bus.cli.routes_test_cmd`, offline), to the ``routes`` group defined in
:mod:`esb.bus.cli.main` (which keeps ``validate``).

Exit codes: 0 ok; 1 the daemon refused or was unreachable, or an instance cannot run the
version; 2 invalid route files (every problem listed with file:line).
"""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from esb.bus.cli.client import AdminError, ask, refusal
from esb.bus.cli.output import emit_json, fail, problems, table
from esb.bus.cli.routes_test_cmd import route_files, routes_test


def register(routes_group: click.Group) -> None:
    """Add the route-lifecycle commands to the ``esb routes`` group."""
    for command in (routes_test, routes_deploy, routes_list, routes_history, routes_diff,
                    routes_rollback):
        routes_group.add_command(command)


# -- helpers -------------------------------------------------------------------------------------

def _call(obj: Any, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    """One admin API request: (status, decoded body). Unreachable daemon: exit 1."""
    try:
        return obj.client().call(method, path, **kwargs)
    except AdminError as exc:
        fail(str(exc))


def _refused(method: str, path: str, status: int, body: Any,
             folder: Path | None = None, as_json: bool = False) -> NoReturn:
    if status == 422 and isinstance(body, dict) and body.get("errors"):
        located = [_located(p, folder) for p in body["errors"]]
        if as_json:
            emit_json({"deployed": False, "problems": located})
            sys.exit(2)
        click.echo(f"esb: refused: {body.get('detail', '')}", err=True)
        problems(located)
    fail(refusal(f"{method} {path}", status, body))


def _located(problem: str, folder: Path | None) -> str:
    """``orders.yaml:12: ...`` from the daemon → ``routes/orders.yaml:12: ...`` (local path)."""
    if folder is None or folder == Path("."):
        return problem
    name = problem.split(":", 1)[0]
    if name and "/" not in name and (folder / name).exists():
        return f"{folder / name}{problem[len(name):]}"
    return problem


def _when(iso: str | None) -> str:
    if not iso:
        return ""
    return iso.replace("T", " ").split(".")[0].replace("+00:00", "") + "Z"


def _default_by() -> str:
    try:
        return os.environ.get("USER") or getpass.getuser()
    except Exception:
        return "unknown"


# -- daemon commands ---------------------------------------------------------------------------

@click.command("deploy")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--note", default=None, help="Why (shown in history).")
@click.option("--by", default=None, help="Who deploys (default: $USER).")
@click.option("--force", is_flag=True,
              help="Store a new version even when the latest one has these files already.")
@click.option("--json", "as_json", is_flag=True,
              help="Machine-readable output: the version, and every instance's state.")
@click.pass_obj
def routes_deploy(obj: Any, path: Path, note: str | None, by: str | None, force: bool,
                  as_json: bool) -> None:
    """Deploy route files: validated by the daemon, stored as a new version, and switched to by
    every running instance (exit 2 with every problem when refused). Files the latest version
    has already are not stored again: "no change" (exit 0), unless --force."""
    files, folder = route_files(path)
    by = by or _default_by()
    status, body = _call(obj, "POST", "/admin/routes/deploy",
                         json={"files": files, "by": by, "note": note, "force": force})
    if status >= 400:
        _refused("POST", "/admin/routes/deploy", status, body, folder, as_json)
    if body.get("unchanged"):
        if as_json:
            emit_json({**body, "deployed": False})
            return
        click.echo(f"no change: version {body['version']} ({body['digest'][:12]}) has these "
                   f"route files already; nothing stored (--force stores a new version)")
        return
    if not as_json:
        running = "" if body.get("running") else " (stored; not yet running on this instance)"
        click.echo(f"deployed version {body['version']} ({body['digest'][:12]}), "
                   f"{len(files)} file(s), by {by}{running}")
    _every_instance(obj, body["version"], {**body, "deployed": True} if as_json else None)


@click.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def routes_list(obj: Any, as_json: bool) -> None:
    """The route version the daemon runs, and its routes."""
    info = ask(obj.client(), "GET", "/admin/routes")
    status, versions = _call(obj, "GET", "/admin/routes/versions")
    meta = None
    if status < 400 and isinstance(versions, dict):
        meta = next((v for v in versions.get("versions", [])
                     if v["version"] == info["version"]), None)
    if as_json:
        emit_json({**info, "deployed": meta})
        return
    line = f"version {info['version']} ({info['digest'][:12]})"
    if meta:
        line += f", deployed {_when(meta['deployed_at'])} by {meta['deployed_by']}"
    click.echo(line)
    click.echo("")
    rows = [(r["name"], r["priority"], "yes" if r["exclusive"] else "", ", ".join(r["to"]))
            for r in info["routes"]]
    click.echo(table(["ROUTE", "PRIORITY", "EXCLUSIVE", "TO"], rows))


@click.command("history")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def routes_history(obj: Any, as_json: bool) -> None:
    """Every deployed route version, oldest first (* marks the one running)."""
    body = ask(obj.client(), "GET", "/admin/routes/versions")
    if as_json:
        emit_json(body)
        return
    running = body.get("running")
    rows = []
    for v in body["versions"]:
        note = v.get("note") or ""
        if v.get("rollback_of") and not note:
            note = f"rollback to {v['rollback_of']}"
        rows.append(("*" if v["version"] == running else "", v["version"],
                     _when(v["deployed_at"]), v["deployed_by"], v["digest"][:12],
                     len(v["files"]), note))
    click.echo(table(["", "VERSION", "DEPLOYED", "BY", "DIGEST", "FILES", "NOTE"], rows))


@click.command("diff")
@click.argument("a", type=int)
@click.argument("b", type=int)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def routes_diff(obj: Any, a: int, b: int, as_json: bool) -> None:
    """Unified diff of the route files of versions A and B."""
    body = ask(obj.client(), "GET", "/admin/routes/diff", params={"a": a, "b": b})
    if as_json:
        emit_json(body)
        return
    if not body["files"]:
        click.echo(f"versions {a} and {b} have the same route files")
        return
    for f in body["files"]:
        click.echo(f["diff"].rstrip("\n"))


@click.command("rollback")
@click.argument("version", type=int, required=False)
@click.option("--by", default=None, help="Who rolls back (default: $USER).")
@click.option("--force", is_flag=True,
              help="Store VERSION again even when its files are the latest version's.")
@click.pass_obj
def routes_rollback(obj: Any, version: int | None, by: str | None, force: bool) -> None:
    """Deploy again the files of VERSION (default: the newest earlier version whose route
    files differ from the latest's)."""
    by = by or _default_by()
    status, body = _call(obj, "POST", "/admin/routes/rollback",
                         json={"version": version, "by": by, "force": force})
    if status >= 400:
        _refused("POST", "/admin/routes/rollback", status, body)
    running = "" if body.get("running") else " (stored; not yet running on this instance)"
    click.echo(f"deployed version {body['version']} ({body['digest'][:12]}): the route files "
               f"of version {body['rollback_of']}{running}")
    _every_instance(obj, body["version"])


#: How long a deploy waits to hear from every live instance (they switch within 2 s).
CONFIRM_TIMEOUT = 5.0


def _every_instance(obj: Any, version: int, report: dict[str, Any] | None = None) -> None:
    """Wait until every live instance runs ``version`` or reports it cannot (its own
    configuration lacks something the set needs); print one line each — or, with ``report``
    (``--json``), print it with ``"instances"`` added. Exit 1 when one cannot, so a deploy
    never silently leaves instances on different versions."""
    import time

    deadline = time.monotonic() + CONFIRM_TIMEOUT
    while True:
        status, instances = _call(obj, "GET", "/admin/instances")
        if status >= 400 or not isinstance(instances, list):
            if report is not None:  # an older daemon: nothing more to say
                emit_json(report)
            return
        pending = [i for i in instances if _state(i, version) == "pending"]
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    states = [{"instance": i.get("instance"), "state": _state(i, version),
               "route_version": i.get("route_version"),
               "problems": (i.get("route_refused") or {}).get("problems") or []}
              for i in instances]
    if report is not None:
        emit_json({**report, "instances": states})
    else:
        for inst, st in zip(instances, states, strict=True):
            name = inst.get("instance", "?")
            if st["state"] == "running":
                click.echo(f"  {name}: running version {st['route_version']}")
            elif st["state"] == "refused":
                click.echo(f"  {name}: CANNOT run version {version}; it keeps version "
                           f"{st['route_version']}: {'; '.join(st['problems'])}", err=True)
            else:
                click.echo(f"  {name}: has not confirmed it (still version "
                           f"{st['route_version']}; it may have stopped)", err=True)
    if any(st["state"] == "refused" for st in states):
        fail(f"version {version} is stored, but not every instance can run it: fix their "
             "configuration or roll back (esb routes rollback)")
    if any(st["state"] == "pending" for st in states):
        fail(f"version {version} is stored, but not every live instance confirmed it within "
              f"{CONFIRM_TIMEOUT:g} s: check them with esb instances")


def _state(instance: dict[str, Any], version: int) -> str:
    if (instance.get("route_version") or 0) >= version:
        return "running"
    if ((instance.get("route_refused") or {}).get("version") or 0) >= version:
        return "refused"
    return "pending"
