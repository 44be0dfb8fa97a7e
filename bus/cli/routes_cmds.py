"""``esb routes test | deploy | list | history | diff | rollback``.

``test`` runs offline (configuration + route files, no daemon, nothing delivered); the others
are thin clients of the daemon's ``/admin/routes/...`` endpoints. :func:`register` attaches
them to the ``routes`` group defined in :mod:`esb.bus.cli.main` (which keeps ``validate``).

Exit codes: 0 ok; 1 a test case failed, or the daemon refused/was unreachable; 2 invalid
configuration or route files (every problem listed with file:line).
"""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import click
import httpx

from esb.bus.cli.client import TOKEN_HINT
from esb.bus.cli.output import emit_json, table
from esb.bus.errors import ConfigError

DEFAULT_CONFIG = "config/esb.yaml"


def register(routes_group: click.Group) -> None:
    """Add the route-lifecycle commands to the ``esb routes`` group."""
    for command in (routes_test, routes_deploy, routes_list, routes_history, routes_diff,
                    routes_rollback):
        routes_group.add_command(command)


# -- helpers -------------------------------------------------------------------------------------

def _fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"esb: {message}", err=True)
    sys.exit(code)


def _problems(problems: list[str], code: int = 2) -> NoReturn:
    click.echo(f"esb: {len(problems)} problem(s):", err=True)
    for p in problems:
        click.echo(f"  {p}", err=True)
    sys.exit(code)


def _call(obj: Any, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    """One admin API request: (status, decoded body). Unreachable daemon: exit 1."""
    client = obj.client()
    headers = {"Authorization": f"Bearer {client.token}"} if client.token else {}
    try:
        with httpx.Client(base_url=client.url, timeout=client.timeout, trust_env=False) as c:
            response = c.request(method, path, headers=headers, **kwargs)
    except httpx.HTTPError as exc:
        _fail(f"cannot reach the esb daemon at {client.url}: {exc} "
              "(is `esb run` running? set --url or ESB_ADMIN_URL)")
    try:
        body = response.json() if response.content else None
    except ValueError:
        body = response.text
    return response.status_code, body


def _ok(obj: Any, method: str, path: str, **kwargs: Any) -> Any:
    status, body = _call(obj, method, path, **kwargs)
    if status >= 400:
        _refused(method, path, status, body)
    return body


def _refused(method: str, path: str, status: int, body: Any,
             folder: Path | None = None, as_json: bool = False) -> NoReturn:
    if status == 422 and isinstance(body, dict) and body.get("errors"):
        problems = [_located(p, folder) for p in body["errors"]]
        if as_json:
            emit_json({"deployed": False, "problems": problems})
            sys.exit(2)
        click.echo(f"esb: refused: {body.get('detail', '')}", err=True)
        _problems(problems)
    detail = body.get("detail") or body.get("title") if isinstance(body, dict) else body
    hint = f" ({TOKEN_HINT})" if status == 401 else ""
    _fail(f"{method} {path}: HTTP {status}: {detail}{hint}")


def _located(problem: str, folder: Path | None) -> str:
    """``orders.yaml:12: ...`` from the daemon → ``routes/orders.yaml:12: ...`` (local path)."""
    if folder is None or folder == Path("."):
        return problem
    name = problem.split(":", 1)[0]
    if name and "/" not in name and (folder / name).exists():
        return f"{folder / name}{problem[len(name):]}"
    return problem


def _route_files(path: Path) -> tuple[dict[str, str], Path]:
    from esb.bus.routing.routeset import read_route_files

    try:
        files = read_route_files(path)
    except ConfigError as exc:
        _problems(exc.problems)
    if not files:
        _fail(f"{path}: no route files (*.yaml) there", 2)
    return files, path if path.is_dir() else path.parent


def _when(iso: str | None) -> str:
    if not iso:
        return ""
    return iso.replace("T", " ").split(".")[0].replace("+00:00", "") + "Z"


def _default_by() -> str:
    try:
        return os.environ.get("USER") or getpass.getuser()
    except Exception:
        return "unknown"


# -- test (offline) --------------------------------------------------------------------------

@click.command("test")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--then", "more", type=click.Path(dir_okay=False, path_type=Path),
              multiple=True, help="With --message: more messages routed after it (repeat "
              "it); shows what the aggregates they reach would emit.")
@click.option("--message", "message", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Route this file instead of running the files' tests: cases.")
@click.option("--type", "etype", default="test", show_default=True, help="Envelope type.")
@click.option("--source", default="test", show_default=True,
              help="Envelope source; it enters through that endpoint when configured.")
@click.option("--endpoint", default=None, help="Endpoint it enters through (default: source).")
@click.option("--content-type", default=None, help="Default: from the file suffix or bytes.")
@click.option("--config", "config_path", type=click.Path(path_type=Path),
              envvar="ESB_CONFIG", default=DEFAULT_CONFIG, show_default=True,
              help="Configuration naming the sources, destinations and transformers.")
@click.option("--reply", "reply_file", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="With --message: a recorded answer of the request/reply "
              "route's destination; shows what the caller would get.")
@click.option("--reply-content-type", default=None,
              help="Content type of --reply (default: from the file suffix or bytes).")
@click.option("--answer", "answer_files", multiple=True, metavar="DEST=FILE",
              help="With --message: a recorded answer of destination DEST (or of route DEST) "
              "for an enricher that asks it (repeat it); content type from the file suffix.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def routes_test(path: Path, more: tuple[Path, ...], message: Path | None, etype: str, source: str,
                endpoint: str | None, content_type: str | None, config_path: Path,
                reply_file: Path | None, reply_content_type: str | None,
                answer_files: tuple[str, ...], as_json: bool) -> None:
    """Which routes match and what each destination would receive — nothing is delivered.

    With --message FILE: route that one message (a request/reply route: also what its
    destination would be sent, and with --reply FILE what the caller would get). Without: run
    the `tests:` cases written in the route files (exit 1 when one fails)."""
    from esb.bus.config.loader import load_config
    from esb.bus.routing.from_config import router_for
    from esb.bus.routing.routeset import parse_route_files
    from esb.bus.routing.trial import run_cases, try_message, try_reply

    files, folder = _route_files(path)
    try:
        loaded = load_config(config_path)
        cfg = loaded.config
        rs = parse_route_files(files, base=folder, limits=cfg.limits.yaml.limits)
        router = router_for(cfg, rs)
    except ConfigError as exc:
        _problems(exc.problems)
    if message is not None:
        try:
            body = sys.stdin.buffer.read() if str(message) == "-" else message.read_bytes()
        except OSError as exc:
            _fail(f"{message}: cannot read: {exc.strerror or exc}", 2)
        try:
            trial = try_message(router, body, type=etype, source=source,
                                content_type=content_type, sources=cfg.sources,
                                endpoint=endpoint, name=message.name,
                                answers=_answers(answer_files))
        except ValueError as exc:
            _fail(f"{message}: {exc}", 2)
        if more:
            _several(loaded, router, trial, message, more, etype, source, content_type,
                     endpoint, as_json)
        answer = None
        if reply_file is not None:
            try:
                answer = try_reply(trial, reply_file.read_bytes(),
                                   content_type=reply_content_type, name=reply_file.name)
            except OSError as exc:
                _fail(f"{reply_file}: cannot read: {exc.strerror or exc}", 2)
            if answer is None:
                _fail(f"--reply: no request/reply route takes {message.name}", 2)
        if as_json:
            out = trial.to_dict()
            if answer is not None:
                out["answer"] = {"status": answer.esbstatus, "error": answer.esberror,
                                 "datacontenttype": answer.datacontenttype,
                                 "data": _jsonable(answer.data)}
            emit_json(out)
        else:
            _print_trial(trial, message.name, set(cfg.sources))
            if answer is not None:
                _print_answer(answer)
        sys.exit(1 if trial.dead_letters or trial.deferred or
                 (answer is not None and answer.esberror) else 0)
    results = run_cases(router, rs, base=folder, sources=cfg.sources)
    failed = [r for r in results if not r.passed]
    if as_json:
        emit_json({"cases": [r.to_dict() for r in results], "passed": len(results) - len(failed),
                   "failed": len(failed)})
        sys.exit(1 if failed else 0)
    if not results:
        click.echo(f"no test cases in {path} (add `tests:` to a route file, or use --message)")
        return
    for r in results:
        click.echo(f"{'PASS' if r.passed else 'FAIL'}  {r.name}  ({r.where})")
        for f in r.failures:
            click.echo(f"  {f}")
    click.echo(f"{len(results)} case(s): {len(results) - len(failed)} passed, "
               f"{len(failed)} failed")
    sys.exit(1 if failed else 0)


def _answers(given: tuple[str, ...]) -> dict[str, tuple[bytes, str | None]]:
    """``--answer DEST=FILE`` options as recorded answers (exit 2 when one is unusable)."""
    from esb.bus.payload import guess_content_type

    out: dict[str, tuple[bytes, str | None]] = {}
    for item in given:
        name, sep, file = item.partition("=")
        if not sep or not name or not file:
            _fail(f"--answer {item!r}: write DEST=FILE", 2)
        try:
            body = Path(file).read_bytes()
        except OSError as exc:
            _fail(f"--answer {file}: cannot read: {exc.strerror or exc}", 2)
        out[name] = (body, guess_content_type(Path(file).name, body))
    return out


def _print_trial(trial: Any, name: str, sources: set[str]) -> None:
    env = trial.envelope
    entered = f"through {trial.endpoint}" if trial.endpoint else "through no configured source"
    click.echo(f"message  {name} (type {env.type}, source {env.source}, "
               f"{env.datacontenttype}, {entered})")
    if trial.unroutable:
        click.echo("routes   none match: it would go to the unroutable queue")
        if trial.endpoint is None:
            click.echo(f"         (routes with `from:` only match configured sources: "
                       f"{', '.join(sorted(sources)) or 'none'}; use --source)")
        return
    click.echo(f"routes   {', '.join(trial.routes)}")
    if trial.parts:
        click.echo(f"split    {trial.parts} part(s), each routed on its own (all published "
                   "together or none)")
    for call in trial.pending:
        request = call.request
        click.echo(f"\n⇢ enrich: route {call.route} would ask {call.enricher.destination} "
                   f"(waiting up to {call.enricher.timeout:g}s)  {request.datacontenttype or ''}")
        _print_data(request.data)
        click.echo(f"  (no recorded answer: give one with --answer "
                   f"{call.enricher.destination}=FILE to see the rest of the plan)")
    if trial.deferred is not None:
        d = trial.deferred
        click.echo(f"\n↻ route {d.route}{f' → {d.destination}' if d.destination else ''}: "
                   f"a step asked for a retry: nothing would be taken, the sender is told to "
                   f"retry: {d.error}")
    for d in trial.outcomes:
        dest = d.destination or "(before fan-out)"
        if d.error:
            click.echo(f"\n✗ {dest}  route {d.route}: would be dead-lettered: {d.error}")
        elif d.dropped:
            click.echo(f"\n- {dest}  route {d.route}: dropped by a transformer (filtered)")
        else:
            out = d.envelope
            waits = trial.reply is not None and out is trial.reply.request
            ext = out.extensions
            part = f"  part {ext['splitindex']}/{ext['splitsize']}" if "splitindex" in ext else ""
            click.echo(f"\n→ {dest}  route {d.route}{part}  {out.datacontenttype or ''}"
                       + ("  (request/reply: the caller waits for its answer)" if waits else ""))
            _print_data(out.data)
    reply = trial.reply
    if reply is not None:
        steps = ", ".join(reply.leg.chain.steps) or "none"
        if reply.request is None:
            click.echo(f"\n← caller of route {reply.route} would get 502 at once: {reply.error}")
        else:
            click.echo(f"\n← reply: route {reply.route} waits up to {reply.leg.timeout:g}s for "
                       f"{reply.destination}; reply steps: {steps}")


def _several(loaded: Any, router: Any, first: Any, message: Path, more: tuple[Path, ...],
             etype: str, source: str, content_type: str | None, endpoint: str | None,
             as_json: bool) -> NoReturn:
    """``--message A --then B --then C``: route each, then preview the aggregates."""
    from esb.bus.routing.trial import try_message

    trials, names = [first], [message.name]
    for path in more:
        try:
            trials.append(try_message(router, path.read_bytes(), type=etype, source=source,
                                      content_type=content_type,
                                      sources=loaded.config.sources, endpoint=endpoint,
                                      name=path.name))
        except (OSError, ValueError) as exc:
            _fail(f"{path}: {exc}", 2)
        names.append(path.name)
    groups = aggregate_previews(loaded, router, trials)
    if as_json:
        emit_json({"messages": [t.to_dict() for t in trials],
                   "aggregates": [_preview_dict(*g) for g in groups]})
    else:
        for name, trial in zip(names, trials, strict=True):
            _print_trial(trial, name, set(loaded.config.sources))
            click.echo("")
        _print_aggregates(groups)
    sys.exit(1 if any(t.dead_letters or t.deferred for t in trials) else 0)


def aggregate_previews(loaded: Any, router: Any, trials: list[Any]) -> list[tuple[str, Any, Any]]:
    """For each aggregate the trials' copies reach: its groups, and the plan of each envelope
    it would emit, routed again."""
    from esb.adapters.spec import OutboundContext
    from esb.bus.routing.trial import route_envelope
    from esb.bus.runtime.aggregate_spec import SPEC, AggregateSettings

    out = []
    for name, settings in loaded.destination_settings.items():
        if not isinstance(settings, AggregateSettings):
            continue
        routed = [env for t in trials for env in t.outputs(name)]
        if not routed or SPEC.outbound is None:
            continue
        aggregate = SPEC.outbound(settings, OutboundContext(
            name=name, config_dir=loaded.config.base_dir, http=lambda: None))
        for group in aggregate.preview(routed):
            emitted = group.emitted
            out.append((name, group, route_envelope(router, emitted, name) if emitted else None))
    return out


def _preview_dict(name: str, group: Any, plan: Any) -> dict[str, Any]:
    emitted = group.emitted
    return {"aggregate": name, "key": group.key, "members": [e.id for e in group.members],
            "when": group.when,
            "emitted": None if emitted is None else {
                "type": emitted.type, "datacontenttype": emitted.datacontenttype,
                "data": _jsonable(emitted.data)},
            "routes": None if plan is None else plan.to_dict()}


def _print_aggregates(groups: list[tuple[str, Any, Any]]) -> None:
    if not groups:
        click.echo("aggregates  none of these messages reaches an aggregate")
        return
    for name, group, plan in groups:
        emitted = group.emitted
        click.echo(f"⇒ aggregate {name}  group {group.key or '(none)'}: "
                   f"{len(group.members)} member(s), emitted {group.when}")
        if emitted is not None:
            click.echo(f"  emits {emitted.type} ({emitted.datacontenttype}), routed again:")
            _print_trial(plan, f"{name} (emitted)", set())
        click.echo("")


def _print_answer(answer: Any) -> None:
    if answer.esberror:
        click.echo(f"\n← caller gets {answer.esbstatus} problem+json: {answer.esberror}")
        return
    click.echo(f"\n← caller gets {answer.esbstatus or 200}  {answer.datacontenttype or ''}")
    _print_data(answer.data)


def _print_data(data: Any) -> None:
    if isinstance(data, bytes):
        text = data.decode("utf-8", "replace")
    elif isinstance(data, str):
        text = data
    else:
        import orjson

        text = orjson.dumps(data, option=orjson.OPT_INDENT_2).decode()
    for line in text.rstrip("\n").splitlines():
        click.echo(f"  {line}")


def _jsonable(data: Any) -> Any:
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else data


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
    files, folder = _route_files(path)
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
    info = _ok(obj, "GET", "/admin/routes")
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
    body = _ok(obj, "GET", "/admin/routes/versions")
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
    body = _ok(obj, "GET", "/admin/routes/diff", params={"a": a, "b": b})
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
    refused = pending = False
    if report is not None:
        states = [{"instance": i.get("instance"), "state": _state(i, version),
                   "route_version": i.get("route_version"),
                   "problems": (i.get("route_refused") or {}).get("problems") or []}
                  for i in instances]
        emit_json({**report, "instances": states})
        refused = any(st["state"] == "refused" for st in states)
        pending = any(st["state"] == "pending" for st in states)
        instances = []
    for inst in instances:
        state = _state(inst, version)
        name = inst.get("instance", "?")
        if state == "running":
            click.echo(f"  {name}: running version {inst.get('route_version')}")
        elif state == "refused":
            refused = True
            problems = (inst.get("route_refused") or {}).get("problems") or []
            click.echo(f"  {name}: CANNOT run version {version}; it keeps version "
                       f"{inst.get('route_version')}: {'; '.join(problems)}", err=True)
        else:
            pending = True
            click.echo(f"  {name}: has not confirmed it (still version "
                       f"{inst.get('route_version')}; it may have stopped)", err=True)
    if refused:
        _fail(f"version {version} is stored, but not every instance can run it: fix their "
              "configuration or roll back (esb routes rollback)")
    if pending:
        _fail(f"version {version} is stored, but not every live instance confirmed it within "
              f"{CONFIRM_TIMEOUT:g} s: check them with esb instances")


def _state(instance: dict[str, Any], version: int) -> str:
    if (instance.get("route_version") or 0) >= version:
        return "running"
    if ((instance.get("route_refused") or {}).get("version") or 0) >= version:
        return "refused"
    return "pending"
