"""``esb init DIR [--example NAME]``: a new project folder that runs with ``esb run``.

Without ``--example`` the folder holds a configuration on the embedded bus (one REST source, one
folder destination), a route file whose test case passes under ``esb routes test routes/``, and
a README saying what to change first. With ``--example`` it is a copy of one of the worked
integrations shipped in the package (``esb.examples``: the repository's ``examples/``).
"""

from __future__ import annotations

import shutil
from importlib.resources import as_file, files
from pathlib import Path

import click

from esb.bus.cli.output import fail

#: What a copied example leaves out (caches and state of earlier runs).
_IGNORE = shutil.ignore_patterns("__pycache__", ".esb", "*.pyc", ".pytest_cache")


def examples() -> dict[str, str]:
    """``{name: one-line summary}`` of the shipped project examples (folders with a
    ``config/esb.yaml``), the summary being the first heading of the example's README."""
    found: dict[str, str] = {}
    for entry in sorted(files("esb.examples").iterdir(), key=lambda e: e.name):
        if not entry.is_dir() or not entry.joinpath("config", "esb.yaml").is_file():
            continue
        readme = entry.joinpath("README.md")
        title = ""
        if readme.is_file():
            title = next((line.lstrip("# ").strip() for line in
                          readme.read_text(encoding="utf-8").splitlines()
                          if line.startswith("# ")), "")
        found[entry.name] = title
    return found


def init_project(target: Path, example: str | None = None) -> list[str]:
    """Make the project in ``target`` (absent or empty); returns the files written, relative
    to it. Raises :class:`ValueError` with a message for the user when it cannot."""
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ValueError(f"{target} already exists and is not an empty folder; "
                                   "name a new one")
    if example is None:
        target.mkdir(parents=True, exist_ok=True)
        for name, text in _STARTER.items():
            path = target / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    else:
        known = examples()
        if example not in known:
            raise ValueError(
                f"no example named {example!r}; `esb init --list` names them "
                f"({', '.join(known) or 'none is installed'})")
        with as_file(files("esb.examples").joinpath(example)) as source:
            if target.exists():
                target.rmdir()
            shutil.copytree(source, target, ignore=_IGNORE)
    return sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())


def register(cli: click.Group) -> None:
    @cli.command("init")
    @click.argument("directory", required=False, type=click.Path(path_type=Path))
    @click.option("--example", "example", metavar="NAME",
                  help="Copy a worked integration instead of the starter project.")
    @click.option("--list", "list_examples", is_flag=True,
                  help="Name the examples --example can copy.")
    def init(directory: Path | None, example: str | None, list_examples: bool) -> None:
        """Make a new project folder (config, routes with a test case, README)."""
        if list_examples:
            rows = examples()
            width = max((len(n) for n in rows), default=0)
            for name, title in rows.items():
                click.echo(f"{name.ljust(width)}  {title}")
            return
        if directory is None:
            raise click.UsageError("name the folder to create: esb init DIR")
        try:
            written = init_project(directory, example)
        except ValueError as exc:
            fail(str(exc))
        click.echo(f"made {directory} ({len(written)} files)")
        click.echo(f"next: cd {directory} && esb routes test routes/ && esb run")


_STARTER: dict[str, str] = {
    "README.md": """\
# My integration

Made by `esb init`. It runs as it is, on the embedded bus (in-process, not durable):

```sh
esb routes test routes/     # the route file's own test cases
esb run                     # the daemon, at http://127.0.0.1:8080
```

Send it a message, then look in the outbox:

```sh
curl -i -X POST http://127.0.0.1:8080/in/app/order.created \\
  -H 'Content-Type: application/json' -d '{"orderId": "A-1", "total": 250}'
ls .esb/outbox/orders
```

What to change first:

- `config/esb.yaml`: your sources (how systems send to esb) and destinations (where esb
  delivers); `ESB_BUS_URL=amqp://user:pass@host:5672/` runs it on RabbitMQ, which is what makes
  the delivery guarantee durable.
- `routes/main.yaml`: which messages go where, with test cases beside the routes; deploy a
  changed set to running daemons with `esb routes deploy routes/`.

`esb init --list` names the worked integrations (`esb init DIR --example NAME` copies one).
""",
    ".gitignore": ".esb/\n__pycache__/\n",
    "config/esb.yaml": """\
# Reference: docs/configuration.md of esb. Relative paths resolve against this project folder.
bus: {url: "${ESB_BUS_URL:-embedded}"}     # "embedded" (not durable) or amqp://user:pass@host/vhost
http: {listen: "${ESB_LISTEN:-127.0.0.1:8080}"}
admin: {token: "${ESB_ADMIN_TOKEN:-}"}     # empty: one is made in .esb/admin.token

sources:
  app: {adapter: rest, path: /in/app}      # POST /in/app/<type>

destinations:
  orders:
    adapter: file
    directory: .esb/outbox/orders
    delivery: {concurrency: 4, max_attempts: 8}

routes: routes/
""",
    "routes/main.yaml": """\
routes:
  - name: orders
    from: [app]
    match:
      type: [{prefix: order.}]
    to: [orders]

tests:
  - name: an-order-reaches-the-outbox
    source: app
    type: order.created
    message: {orderId: A-1, total: 250}
    expect:
      routes: [orders]
      outputs:
        orders: {orderId: A-1, total: 250}
  - name: other-types-are-unroutable
    source: app
    type: customer.created
    message: {id: 1}
    expect: {unroutable: true}
""",
}
