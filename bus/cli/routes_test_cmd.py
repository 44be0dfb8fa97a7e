"""``esb routes test``: what a route set would do to messages, offline — configuration and
route files, no daemon, nothing delivered. The plans come from :mod:`esb.bus.routing.trial`;
this module prints them.

Exit codes: 0 ok; 1 a test case failed (or, for ``--message``, a copy would be dead-lettered
or the message deferred); 2 invalid configuration, route files or input files (every problem
listed with file:line).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from esb.bus.cli.output import DEFAULT_CONFIG, emit_json, fail, problems
from esb.bus.errors import ConfigError


def route_files(path: Path) -> tuple[dict[str, str], Path]:
    """The route files at ``path`` (a folder or one file) and their folder; exit 2 when
    there are none or they cannot be read."""
    from esb.bus.routing.routeset import read_route_files

    try:
        files = read_route_files(path)
    except ConfigError as exc:
        problems(exc.problems)
    if not files:
        fail(f"{path}: no route files (*.yaml) there", 2)
    return files, path if path.is_dir() else path.parent


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
    from esb.bus.routing.plan import jsonable
    from esb.bus.routing.routeset import parse_route_files
    from esb.bus.routing.trial import run_cases, try_message, try_reply

    files, folder = route_files(path)
    try:
        loaded = load_config(config_path)
        cfg = loaded.config
        rs = parse_route_files(files, base=folder, limits=cfg.limits.yaml.limits)
        router = router_for(cfg, rs)
    except ConfigError as exc:
        problems(exc.problems)
    if message is not None:
        try:
            body = sys.stdin.buffer.read() if str(message) == "-" else message.read_bytes()
        except OSError as exc:
            fail(f"{message}: cannot read: {exc.strerror or exc}", 2)
        try:
            trial = try_message(router, body, type=etype, source=source,
                                content_type=content_type, sources=cfg.sources,
                                endpoint=endpoint, name=message.name,
                                answers=_answers(answer_files))
        except ValueError as exc:
            fail(f"{message}: {exc}", 2)
        if more:
            _several(loaded, router, trial, message, more, etype, source, content_type,
                     endpoint, as_json)
        answer = None
        if reply_file is not None:
            try:
                answer = try_reply(trial, reply_file.read_bytes(),
                                   content_type=reply_content_type, name=reply_file.name)
            except OSError as exc:
                fail(f"{reply_file}: cannot read: {exc.strerror or exc}", 2)
            if answer is None:
                fail(f"--reply: no request/reply route takes {message.name}", 2)
        if as_json:
            out = trial.to_dict()
            if answer is not None:
                out["answer"] = {"status": answer.esbstatus, "error": answer.esberror,
                                 "datacontenttype": answer.datacontenttype,
                                 "data": jsonable(answer.data)}
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
            fail(f"--answer {item!r}: write DEST=FILE", 2)
        try:
            body = Path(file).read_bytes()
        except OSError as exc:
            fail(f"--answer {file}: cannot read: {exc.strerror or exc}", 2)
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
            fail(f"{path}: {exc}", 2)
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
    from esb.bus.routing.plan import jsonable

    emitted = group.emitted
    return {"aggregate": name, "key": group.key, "members": [e.id for e in group.members],
            "when": group.when,
            "emitted": None if emitted is None else {
                "type": emitted.type, "datacontenttype": emitted.datacontenttype,
                "data": jsonable(emitted.data)},
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
