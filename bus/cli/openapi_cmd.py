"""``esb openapi [--admin] [-o FILE] [--config FILE]``: write an OpenAPI 3.1 document.

By default the running daemon's: ``/openapi.json`` (its inbound sources under the route set in
force) or, with ``--admin``, ``/admin/openapi.json``. With ``--config`` the inbound document is
built offline from that configuration and its routes folder (no daemon needed; the route set
is the local files, not a deployed version).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import orjson

from esb.bus.cli.client import ask
from esb.bus.cli.output import fail, problems
from esb.bus.errors import ConfigError


@click.command("openapi")
@click.option("--admin", is_flag=True, help="The admin API's document instead.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to FILE (default: standard output).")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
              help="Build offline from this configuration instead of asking the daemon.")
@click.pass_obj
def openapi(obj: Any, admin: bool, output: Path | None, config_path: Path | None) -> None:
    """Write the OpenAPI 3.1 document of the inbound REST sources (or the admin API), for
    Postman, Swagger tooling or client generators."""
    if config_path is not None:
        doc = _offline(config_path, admin)
    else:
        doc = ask(obj.client(), "GET", "/admin/openapi.json" if admin else "/openapi.json")
    text = orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n"
    if output is None:
        click.echo(text.decode(), nl=False)
        return
    try:
        output.write_bytes(text)
    except OSError as exc:
        fail(f"{output}: cannot write: {exc.strerror or exc}")
    click.echo(f"wrote {output} ({len(doc.get('paths', {}))} paths)", err=True)


def _offline(config_path: Path, admin: bool) -> dict[str, Any]:
    from esb.bus.apidocs.admin import admin_document

    if admin:
        return admin_document()
    from esb.bus.apidocs.inbound import inbound_document
    from esb.bus.config.loader import load_config
    from esb.bus.plugins import adapters
    from esb.bus.routing.routeset import read_route_files

    try:
        loaded = load_config(config_path)
        cfg = loaded.config
        files = read_route_files(cfg.resolve(cfg.routes))
    except ConfigError as exc:
        problems(exc.problems)
    return inbound_document(loaded, adapters(), files, route_version=0,
                            server=f"http://{cfg.http.listen}")
