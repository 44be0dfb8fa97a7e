"""The ``esb`` command. Commands are thin: they call library functions or the admin API."""

from __future__ import annotations

import errno
import os
import sys
from collections import Counter
from itertools import islice
from pathlib import Path
from typing import Any

import click
from click.exceptions import NoArgsIsHelpError

from esb.bus.cli.client import DEFAULT_URL, AdminClient, ask, find_token, find_url
from esb.bus.cli.deadletter_cmds import register as register_deadletter_commands
from esb.bus.cli.init_cmd import register as register_init
from esb.bus.cli.openapi_cmd import openapi as openapi_command
from esb.bus.cli.ops_cmds import register as register_ops_commands
from esb.bus.cli.output import DEFAULT_CONFIG, emit_json, fail, problems, table
from esb.bus.cli.routes_cmds import register as register_routes_commands
from esb.bus.cli.scaffold import register as register_scaffold
from esb.bus.errors import ConfigError, EsbError
from esb.bus.payload import guess_content_type


class Context:
    def __init__(self, url: str | None, token: str | None) -> None:
        self.explicit_url = url
        self.token = token

    @property
    def url(self) -> str:
        return find_url(self.explicit_url)

    def client(self) -> AdminClient:
        return AdminClient(self.url, find_token(self.token))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="esb", prog_name="esb", message="%(prog)s %(version)s")
@click.option("--url", envvar="ESB_ADMIN_URL", default=None,
              help=f"Admin API of the running daemon [default: ESB_LISTEN's address, else "
                   f"the nearest .esb/admin.url, else {DEFAULT_URL}]. Accepted anywhere on "
                   f"the command line.")
@click.option("--token", envvar="ESB_ADMIN_TOKEN", default=None,
              help="Admin token [default: ESB_ADMIN_TOKEN, else the nearest .esb/admin.token, "
                   "in this folder or above]. Accepted anywhere on the command line.")
@click.pass_context
def cli(ctx: click.Context, url: str | None, token: str | None) -> None:
    """esb — an Enterprise Service Bus."""
    ctx.obj = Context(url, token)


class WorkerCount(click.ParamType):
    """A positive number of worker processes, or ``auto`` (one per CPU)."""

    name = "N|auto"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> int:
        if isinstance(value, int):
            n = value
        elif str(value).strip().lower() == "auto":
            n = os.cpu_count() or 1
        else:
            try:
                n = int(str(value).strip())
            except ValueError:
                n = 0
        if n < 1:
            self.fail(f"{value!r} is not a positive number of workers or 'auto'", param, ctx)
        return n


@cli.command()
@click.option("--config", "config_path", type=click.Path(path_type=Path),
              envvar="ESB_CONFIG", default=DEFAULT_CONFIG, show_default=True)
@click.option("--workers", type=WorkerCount(), envvar="ESB_WORKERS", default=1,
              show_default=True,
              help="Worker processes sharing the HTTP port (auto: one per CPU); more than one "
                   "needs the RabbitMQ bus.")
@click.option("--listen", default=None, metavar="HOST:PORT",
              help="Address of the HTTP server (inbound endpoints, /admin, /metrics); "
                   "overrides http.listen.")
@click.option("--listen-fd", type=int, default=None, hidden=True)
@click.option("--worker-index", type=int, default=1, hidden=True)
@click.option("--ready-fd", type=int, default=None, hidden=True)
def run(config_path: Path, workers: int, listen: str | None, listen_fd: int | None,
        worker_index: int, ready_fd: int | None) -> None:
    """Run the daemon."""
    from esb.bus.config.loader import load_config, override_listen
    from esb.bus.runtime.http import ListenError
    from esb.bus.runtime.logs import configure_logging

    try:
        loaded = load_config(config_path)
        if listen is not None:
            override_listen(loaded, listen)
        secrets = loaded.log_secrets()
        configure_logging(loaded.config.logging.level, loaded.config.logging.format, secrets)
    except ConfigError as exc:
        problems(exc.problems)
    role = None
    if listen_fd is not None:  # one worker process started by a supervisor
        from esb.bus.runtime.worker_role import WorkerRole

        try:
            role = WorkerRole.from_cli(listen_fd, worker_index, workers, ready_fd)
        except ValueError as exc:
            fail(str(exc), 2)
    if role is not None or workers == 1:
        from esb.bus.runtime.daemon import run_daemon

        try:
            sys.exit(run_daemon(loaded, secrets, role))
        except ConfigError as exc:
            problems(exc.problems)
        except ListenError as exc:
            fail(str(exc))
    if loaded.config.bus.embedded:
        fail("--workers needs the RabbitMQ bus: the embedded bus lives inside one process "
             "(set bus.url, or ESB_BUS_URL, to an amqp:// URL, or run one worker)", 2)
    from esb.bus.runtime.supervisor import supervise

    try:
        sys.exit(supervise(loaded, config_path, workers))
    except ListenError as exc:
        fail(str(exc))


@cli.command()
@click.option("--type", "etype", required=True, help="Envelope type.")
@click.option("--source", required=True, help="A configured source name, or any source URI.")
@click.option("--content-type", default=None,
              help="Default: from the file suffix, else its first bytes.")
@click.option("--json", "as_json", is_flag=True,
              help="Machine-readable output: the envelope id and its destinations.")
@click.argument("file", type=click.File("rb"))
@click.pass_obj
def send(obj: Context, etype: str, source: str, content_type: str | None, as_json: bool,
         file: Any) -> None:
    """Send FILE (or - for stdin) into the bus through the running daemon."""
    body = file.read()
    ctype = content_type or guess_content_type(getattr(file, "name", "-"), body)
    result = ask(obj.client(), "POST", "/admin/send", params={"type": etype, "source": source},
                 content=body, headers={"Content-Type": ctype})
    if as_json:
        emit_json(result)
        return
    click.echo(f"accepted {result['id']} → {', '.join(result['destinations'])}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def status(obj: Context, as_json: bool) -> None:
    """Bus, route version, queue depths of the running daemon.

    Exit 0 when the daemon is connected to its bus, 3 when it is not, 1 when it cannot be
    reached."""
    st = ask(obj.client(), "GET", "/admin/status")
    if as_json:
        emit_json(st)
        if not st["bus"]["connected"]:
            sys.exit(3)
        return
    bus = st["bus"]
    click.echo(f"instance   {st['instance']}")
    click.echo(f"bus        {bus['kind']} ({'connected' if bus['connected'] else 'DISCONNECTED'}"
               f"{'' if bus['durable'] else ', NOT durable'})")
    routes_ = st["routes"]
    click.echo(f"routes     version {routes_['version']} ({routes_['count']} routes, "
               f"{routes_['digest'][:12]})")
    instances = st.get("instances") or []
    if instances:
        click.echo("")
        click.echo(table(["INSTANCE", "HOST", "PID", "ROUTES", "BUS", "LAST SEEN"],
                         [(i.get("instance"), i.get("host"), i.get("pid"),
                           i.get("route_version"),
                           "up" if i.get("bus_connected") else "DOWN",
                           f"{i.get('last_seen_s', 0):.1f}s") for i in instances]))
    sources = st.get("sources") or {}
    if sources:
        holder = {lease: i.get("instance") for i in instances for lease in i.get("leases") or ()}
        click.echo("")
        click.echo(table(["SOURCE", "ADAPTER", "RUNS", "HELD BY", "NEXT FIRE"],
                         [(name, s["adapter"], s.get("runs", ""),
                           holder.get(name, "") if s.get("runs") == "one-instance" else "all",
                           s.get("next_fire") or "") for name, s in sorted(sources.items())]))
    rates: dict[str, float] = {}
    breakers: dict[str, Counter[str]] = {}
    for inst in instances:
        for name, d in (inst.get("destinations") or {}).items():
            rates[name] = rates.get(name, 0.0) + float(d.get("delivered_per_s") or 0)
            if d.get("breaker"):
                breakers.setdefault(name, Counter())[d["breaker"]] += 1
    click.echo("")
    rows = [(name, d["adapter"], d["queue"], d.get("in_flight", ""),
             breaker_states(breakers.get(name)) or d.get("breaker", ""),
             f"{rates.get(name, 0.0):.1f}") for name, d in sorted(st["destinations"].items())]
    click.echo(table(["DESTINATION", "ADAPTER", "QUEUED", "IN FLIGHT", "BREAKER",
                      "DELIVERED/S"], rows))
    q = st["queues"]
    click.echo("")
    click.echo(f"dead letters {q.get('dlq', '?')}   unroutable {q.get('unroutable', '?')}   "
               f"waiting to retry {q.get('retrying', '?')}")
    if not bus["connected"]:
        fail(f"the daemon at {obj.url} is not connected to its bus ({bus['kind']}): it "
             "accepts nothing and delivers nothing until the bus is back (see its log)", 3)


def breaker_states(states: Counter[str] | None) -> str:
    """One destination's breaker over every instance: ``closed``, or ``open 1, closed 2``."""
    if not states:
        return ""
    if len(states) == 1:
        return next(iter(states))
    return ", ".join(f"{state} {n}" for state, n in sorted(states.items()))


@cli.group()
def routes() -> None:
    """Route sets: validate (and, on a running daemon, inspect)."""


@routes.command("validate")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--config", "config_path", type=click.Path(path_type=Path),
              envvar="ESB_CONFIG", default=DEFAULT_CONFIG, show_default=True,
              help="Configuration naming the sources, destinations and transformers.")
@click.option("--json", "as_json", is_flag=True,
              help='Machine-readable output: {"ok", "routes", "digest"} or {"ok": false, '
                   '"problems"} (exit 2).')
def routes_validate(path: Path, config_path: Path, as_json: bool) -> None:
    """Check route files: schema, references, patterns, transformers (file:line each)."""
    from esb.bus.config.loader import load_config
    from esb.bus.routing.from_config import load_router

    try:
        loaded = load_config(config_path)
        router = load_router(loaded, path)
    except ConfigError as exc:
        if as_json:
            emit_json({"ok": False, "problems": exc.problems})
            sys.exit(2)
        problems(exc.problems)
    if as_json:
        emit_json({"ok": True, "routes": [r.name for r in router.routes],
                   "digest": router.digest})
        return
    click.echo(f"ok: {len(router.routes)} routes, digest {router.digest[:12]}")



@cli.group()
def adapters() -> None:
    """Installed adapters (entry points in group esb.adapters)."""


@adapters.command("list")
@click.option("--json", "as_json", is_flag=True)
def adapters_list(as_json: bool) -> None:
    """Each installed adapter: package, version, directions and its one-line summary."""
    from esb.bus.plugins import adapters as registry
    from esb.bus.plugins import describe_installed

    rows = [{k: r[k] for k in ("name", "package", "version", "directions", "summary")}
            for r in describe_installed(registry())]
    if as_json:
        emit_json(rows)
    else:
        click.echo(table(["NAME", "PACKAGE", "VERSION", "DIRECTIONS", "SUMMARY"],
                         [tuple(r.values()) for r in rows]))


def _transform_config(config_path: Path | None) -> tuple[dict[str, Any], Path]:
    """The ``transformers:`` definitions of ``config_path`` (else of the default
    configuration, when there is one) and the folder relative paths in steps resolve
    against (its configuration folder; the working folder without one). Raises
    ``ConfigError`` when the file does not load."""
    if config_path is None:
        config_path = Path(DEFAULT_CONFIG)
        if not config_path.is_file():
            return {}, Path.cwd()
    from esb.bus.config.loader import load_config

    config = load_config(config_path).config
    return dict(config.transformers), config.base_dir


@cli.command()
@click.argument("args", nargs=-1, metavar="[SPEC] FILE")
@click.option("--step", "steps", multiple=True, metavar="STEP",
              help="One step, written as in a route file: 'json-to-xml: {root: order}', "
                   "'xslt: config/xslt/a.xsl', 'mypkg.enrich:add_region'. Repeat it for a "
                   "chain; then SPEC is left out.")
@click.option("--config", "config_path", type=click.Path(path_type=Path),
              envvar="ESB_CONFIG", default=None,
              help=f"Configuration whose 'transformers:' definitions SPEC (or a chain file) "
                   f"may name [default: {DEFAULT_CONFIG}, when it exists].")
@click.option("--type", "etype", default="sample", show_default=True,
              help="The envelope's 'type' attribute.")
@click.option("--source", default="cli", show_default=True,
              help="The envelope's 'source' attribute.")
@click.option("--content-type", default=None,
              help="The envelope's datacontenttype [default: from FILE's suffix: .xml, .json, "
                   "else text/plain].")
def transform(args: tuple[str, ...], steps: tuple[str, ...], config_path: Path | None,
              etype: str, source: str, content_type: str | None) -> None:
    """Run SPEC (or the --step steps) on FILE and print the result, or the error naming the
    failing step.

    SPEC is a transformer name, a definition from the configuration's 'transformers:', a
    stylesheet (.xsl, .xslt), a chain file (.yaml: a list of steps) or one step written inline
    as in a route file ('json-to-xml: {root: order}')."""
    from esb.transformers.cli_support import run_transform

    if len(args) != (1 if steps else 2):
        raise click.UsageError("give SPEC and FILE, or --step ... and FILE")
    file = Path(args[-1])
    if not file.is_file():
        raise click.UsageError(f"FILE {file} does not exist (or is not a file)")
    spec: str | list[str] = list(steps) if steps else args[0]
    try:
        named, base_dir = _transform_config(config_path)
        env = run_transform(spec, file, base_dir=base_dir, type=etype, source=source,
                            content_type=content_type, named=named)
    except ConfigError as exc:
        problems(exc.problems)
    except EsbError as exc:
        fail(str(exc))
    data = env.data
    if isinstance(data, (dict, list)):
        emit_json(data)
    elif isinstance(data, bytes):
        sys.stdout.buffer.write(data)
    else:
        click.echo(data)


register_routes_commands(routes)
register_deadletter_commands(cli)
register_scaffold(adapters)
register_ops_commands(cli)
cli.add_command(openapi_command)
register_init(cli)


#: Options of the ``esb`` group that may be written after the subcommand too.
GLOBAL_OPTIONS = ("--url", "--token")


def hoist_global_options(argv: list[str]) -> list[str]:
    """Move ``--url``/``--token`` (``--url X`` or ``--url=X``) written anywhere before a
    ``--`` to the front, where click expects the group's options."""
    front: list[str] = []
    rest: list[str] = []
    args = iter(argv)
    for arg in args:
        if arg == "--":
            rest += [arg, *args]
            break
        if arg.split("=", 1)[0] not in GLOBAL_OPTIONS:
            rest.append(arg)
        elif "=" in arg:
            front.append(arg)
        else:  # ``--url X``: X is the next argument (when there is one)
            front += [arg, *islice(args, 1)]
    return front + rest


def main(argv: list[str] | None = None) -> None:
    """The ``esb`` console script. Every error is one ``esb: ...`` line on stderr (usage
    errors after the usage text), exit 1 (2 for usage and configuration errors)."""
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    args = hoist_global_options(list(sys.argv[1:] if argv is None else argv))
    code = 0
    try:
        result = cli.main(args=args, prog_name="esb", standalone_mode=False)
        code = result if isinstance(result, int) else 0  # click's Exit (e.g. --help)
    except NoArgsIsHelpError as exc:  # a bare group (``esb routes``): its help
        click.echo(exc.format_message(), err=True)
        code = exc.exit_code
    except click.UsageError as exc:
        if exc.ctx is not None:
            click.echo(exc.ctx.get_usage(), err=True)
        fail(exc.format_message(), exc.exit_code)
    except click.Abort:
        fail("Aborted: nothing was done")
    except click.ClickException as exc:
        fail(exc.format_message(), exc.exit_code)
    except OSError as exc:
        if exc.errno != errno.EPIPE:  # a closed pipe (esb ... | head) is not an error
            raise
    sys.exit(code)


if __name__ == "__main__":
    main()
