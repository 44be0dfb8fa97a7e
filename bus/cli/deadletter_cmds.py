"""``esb dlq ...`` and ``esb unroutable ...``: browse, show, replay (with progress), purge."""

from __future__ import annotations

import sys
from contextlib import ExitStack
from typing import Any
from urllib.parse import quote

import click
import httpx
import orjson

from esb.bus.cli.client import AdminClient, ask, body_of, refusal
from esb.bus.cli.output import emit_json, table
from esb.bus.envelope import bookkeeping


def _group(name: str, help_text: str) -> click.Group:
    @click.group(name=name, help=help_text)
    def group() -> None:
        pass

    @group.command("list")
    @click.option("--limit", default=100, show_default=True)
    @click.option("--json", "as_json", is_flag=True)
    @click.pass_obj
    def list_(obj: Any, limit: int, as_json: bool) -> None:
        """Envelopes waiting in the queue (oldest first)."""
        body = ask(obj.client(), "GET", f"/admin/{name}", params={"limit": limit})
        items = body["items"]
        if as_json:
            emit_json(items)
            return
        rows = [(i["id"], i["type"], i["destination"] or "-", i["attempts"],
                 (i["error"] or "")[:70]) for i in items]
        click.echo(table(["ID", "TYPE", "DESTINATION", "ATTEMPTS", "ERROR"], rows))
        click.echo(f"\n{len(items)} shown" + (f" (limit {limit})" if len(items) == limit
                                                else ""))

    @group.command("show")
    @click.argument("envelope_id", metavar="ID|PREFIX|KEY")
    @click.option("--json", "as_json", is_flag=True)
    @click.pass_obj
    def show(obj: Any, envelope_id: str, as_json: bool) -> None:
        """One envelope whole: attributes, error, every attempt, the payload. Named by its
        id, a unique prefix of it, or its idempotency key."""
        event = ask(obj.client(), "GET", f"/admin/{name}/{quote(envelope_id, safe='')}")
        if as_json:
            emit_json(event)
            return
        for key in ("id", "type", "source", "esbendpoint", "esbroute", "esbdestination",
                    "esbrouteversion", "esberror"):
            if event.get(key) is not None:
                click.echo(f"{key:16} {event[key]}")
        attempts = bookkeeping(event).get("esbattempts", [])
        if attempts:
            click.echo("")
            click.echo(table(["AT", "OUTCOME", "STATUS", "LATENCY MS", "ERROR"],
                             [(a["at"], a["outcome"], a.get("status", ""),
                               a.get("latency_ms", ""), (a.get("error") or "")[:60])
                              for a in attempts]))
        click.echo("")
        data = event.get("data", event.get("data_base64"))
        click.echo(data if isinstance(data, str) else orjson.dumps(
            data, option=orjson.OPT_INDENT_2).decode())

    @group.command("replay")
    @click.argument("ids", nargs=-1)
    @click.option("--all", "all_", is_flag=True, help="Replay everything in the queue.")
    @click.option("--destination", default=None, help="Only those that failed here.")
    @click.option("--wait", "wait", type=click.FloatRange(0, 300), default=10.0,
                  show_default=True,
                  help="Seconds to follow the replayed envelopes' delivery (0: do not wait).")
    @click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
    @click.pass_obj
    def replay(obj: Any, ids: tuple[str, ...], all_: bool, destination: str | None,
               wait: float, as_json: bool) -> None:
        """Deliver again (dlq: to the same destination; unroutable: through the routes), and
        say what became of each: delivered, queued (not delivered yet), dead-lettered again or
        unroutable again (with the error).

        Exit 1 when nothing was replayed (every one failed again). Progress goes to stderr.
        Naming an ID that is not in the queue replays nothing and fails. An interrupted replay
        loses nothing: run it again for the rest."""
        if not ids and not all_:
            raise click.UsageError("name envelope IDs, or use --all")
        payload = {"ids": list(ids) or None, "all": all_, "destination": destination,
                   "wait": wait}
        result = _stream_replay(obj.client(), name, payload)
        if as_json:
            emit_json(result)
        else:
            for r in result.get("results", []):
                click.echo(f"  {r['id']}: {_outcome(r)}")
            failed = result.get("failed", 0)
            click.echo(f"replayed {result.get('replayed', 0)}"
                       + (f", {failed} failed again" if failed else "")
                       + f"; {result.get('left', 0)} left in {name}")
        if not result.get("replayed"):
            sys.exit(1)

    @group.command("purge")
    @click.option("--yes", is_flag=True, help="Do not ask.")
    @click.pass_obj
    def purge(obj: Any, yes: bool) -> None:
        """Drop everything in the queue."""
        if not yes:
            click.confirm(f"Drop every envelope in {name}?", abort=True)
        body = ask(obj.client(), "POST", f"/admin/{name}/purge")
        click.echo(f"purged {body['purged']}")

    return group


def _outcome(r: dict[str, Any]) -> str:
    """``delivered to erp (200)``, ``dead-lettered again: transformer 'x': ...`` ..."""
    where = ", ".join(r.get("destinations") or [])
    outcome = r.get("outcome")
    if outcome == "delivered":
        status = f" ({r['status']})" if r.get("status") is not None else ""
        return f"delivered to {where}{status}"
    if outcome == "queued":
        return f"queued for {where} (not delivered yet: see esb trace {r['id']})"
    if outcome in ("dead-lettered", "unroutable"):
        return f"{outcome} again: {r.get('error') or ''}"
    return str(outcome)


class _ProgressView:
    """A replay's progress on stderr: a bar on a terminal, else a line per tenth of the
    queue (so logs and pipes see it too)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.err = sys.stderr  # as click.echo(err=True) finds it (a test runner swaps it)
        self.stack = ExitStack()
        self.bar: Any = None  # click's progress bar, once the total is known
        self.shown = -1
        self.next_line = 0

    def update(self, scanned: int, total: int) -> None:
        if self.err.isatty():
            if self.bar is None:
                self.bar = self.stack.enter_context(click.progressbar(
                    length=total, label=f"scanning {self.name}", file=self.err))
            self.bar.update(scanned - self.bar.pos)
        elif scanned >= self.next_line or (scanned == total and self.shown != total):
            click.echo(f"{self.name} replay: scanned {scanned} of {total}", err=True)
            self.shown = scanned
            self.next_line = scanned + max(1, total // 10)

    def close(self) -> None:
        self.stack.close()


def _stream_replay(client: AdminClient, name: str, payload: dict[str, Any]
                   ) -> dict[str, Any]:
    """POST a replay and follow its stream (``{"scanned", "total"}`` lines, then the result
    line); the result. A stream cut short is reported as an interrupted replay."""
    view = _ProgressView(name)
    result: dict[str, Any] = {}
    started = False
    try:
        with httpx.stream("POST", f"{client.url}/admin/{name}/replay", json=payload,
                          headers=client.auth, timeout=None, trust_env=False) as r:
            if r.status_code >= 400:
                r.read()
                raise click.ClickException(refusal("replay", r.status_code, body_of(r)))
            started = True
            for line in r.iter_lines():
                if not line:
                    continue
                msg = orjson.loads(line)
                if "scanned" in msg:
                    view.update(msg["scanned"], msg["total"])
                else:
                    result = msg
    except httpx.HTTPError as exc:
        if not started:
            raise click.ClickException(str(client.unreachable(exc))) from exc
        raise click.ClickException(f"replay interrupted ({exc}); nothing is lost: run it "
                                   "again to replay the rest") from exc
    finally:
        view.close()
    if "error" in result:
        raise click.ClickException(f"replay stopped: {result['error']}")
    if "replayed" not in result:
        raise click.ClickException("replay interrupted: the daemon ended the stream early; "
                                   "nothing is lost: run it again to replay the rest")
    return result


def register(cli: click.Group) -> None:
    cli.add_command(_group("dlq", "The dead-letter queue: list, show, replay, purge."))
    cli.add_command(_group("unroutable", "Envelopes no route matched: list, show, replay, "
                                         "purge."))
