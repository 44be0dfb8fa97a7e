"""rest polling inbound against a real HTTP API serving pages (uvicorn in a thread)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import orjson
import pytest
import uvicorn
import yaml
from esbtest.waiting import until
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from esb.adapters.rest.inbound import RestInbound
from esb.adapters.rest.polling import Poller
from esb.adapters.rest.settings import PollSettings, RestInboundSettings
from esb.adapters.rest.spec import SPEC
from esb.adapters.spec import Accepted
from esb.adapters.testing import InboundContract
from esb.adapters.testing.context import RecordingInboundContext
from esb.bus.config.loader import load_config
from esb.bus.envelope import Envelope
from esb.bus.errors import BusUnavailable, ConfigError
from esb.bus.runtime.daemon import Daemon
from esb.bus.runtime.local_leases import LocalLeases
from esb.bus.runtime.singleton import OneInstance


class Api:
    """``GET /items?since=T`` answers items with ``updatedAt >= T`` (inclusive, as many APIs
    do), oldest first, ``limit`` per page, wrapped as ``{"data": {"items": [...]}}``;
    ``GET /pages?page=N`` answers page N (``size`` items) of the list."""

    def __init__(self, limit: int = 3, size: int = 2) -> None:
        self.items: list[dict[str, Any]] = []
        self.limit, self.size = limit, size
        self.requests: list[dict[str, str]] = []
        self.fail: int | None = None
        self.lock = threading.Lock()

    def add(self, id: str, at: int, **extra: Any) -> None:
        with self.lock:
            self.items = [i for i in self.items if i["id"] != id]
            self.items.append({"id": id, "updatedAt": at, **extra})
            self.items.sort(key=lambda i: (i["updatedAt"], i["id"]))

    def app(self) -> Starlette:
        async def items(request: Request) -> Response:
            self.requests.append(dict(request.query_params))
            if self.fail:
                return Response("down", status_code=self.fail)
            since = int(request.query_params.get("since", 0))
            with self.lock:
                page = [i for i in self.items if i["updatedAt"] >= since][:self.limit]
            return JSONResponse({"data": {"items": page}})

        async def pages(request: Request) -> Response:
            self.requests.append(dict(request.query_params))
            n = int(request.query_params["page"])
            with self.lock:
                return JSONResponse(self.items[(n - 1) * self.size:n * self.size])

        return Starlette(routes=[Route("/items", items), Route("/pages", pages)])


@pytest.fixture
def api(serve_app: Callable[[object], str]) -> Iterator[tuple[Api, str]]:
    server = Api()
    yield server, serve_app(server.app())


class ThreadedServer:
    """uvicorn in a daemon thread (the contract tests run their own event loops)."""

    def __init__(self, app: object) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "no server"
            time.sleep(0.01)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(5)


def poll_settings(base: str, **extra: Any) -> dict[str, Any]:
    return {"url": base + "/items", "interval": "50ms", "items": "data.items", "id": "id",
            "cursor": {"param": "since", "from": "updatedAt"}, "type": "item.changed", **extra}


def poller(base: str, ctx: Any, **extra: Any) -> Poller:
    return Poller(PollSettings.model_validate(poll_settings(base, **extra)), ctx)


def state(ctx: Any) -> dict[str, Any]:
    return orjson.loads((ctx.config_dir / ".esb" / "sources" / f"{ctx.name}.json").read_bytes())


async def test_pages_are_followed_and_the_cursor_is_persisted(api: tuple[Api, str],
                                                              inbound_ctx: Any) -> None:
    server, base = api
    for n in range(5):
        server.add(f"i{n}", 100 + n)
    p = poller(base, inbound_ctx)
    assert await p.poll_once() == 5
    assert [e.subject for e in inbound_ctx.accepted] == ["i0", "i1", "i2", "i3", "i4"]
    env = inbound_ctx.accepted[0]
    assert (env.id, env.idempotencykey, env.type, env.source) == (
        "i0@100", "i0@100", "item.changed", "test-source")
    assert env.data == {"id": "i0", "updatedAt": 100}
    assert state(inbound_ctx) == {"cursor": 104, "seen": ["i4@104"]}
    assert [r.get("since") for r in server.requests] == [None, "102", "104"]
    # The API answers the boundary item again: nothing new.
    assert await p.poll_once() == 0
    assert len(inbound_ctx.accepted) == 5


async def test_a_template_puts_the_cursor_inside_a_query(api: tuple[Api, str],
                                                       inbound_ctx: Any) -> None:
    server, base = api
    server.add("i0", 100)
    cursor = {"param": "q", "from": "updatedAt", "initial": 0,
              "template": "SELECT Id FROM Contact WHERE SystemModstamp > {cursor}"}
    p = poller(base, inbound_ctx, cursor=cursor)
    await p.poll_once()  # the fake API ignores q: what matters is what was sent
    assert server.requests[0]["q"] == "SELECT Id FROM Contact WHERE SystemModstamp > 0"
    await p.poll_once()
    assert server.requests[-1]["q"] == "SELECT Id FROM Contact WHERE SystemModstamp > 100"
    with pytest.raises(ValidationError, match="cursor"):
        PollSettings.model_validate(poll_settings(base, cursor={**cursor, "template": "x"}))


async def test_restart_continues_without_duplicates(api: tuple[Api, str],
                                                    inbound_ctx: Any) -> None:
    server, base = api
    server.add("a", 1)
    server.add("b", 2)
    assert await poller(base, inbound_ctx).poll_once() == 2
    # A new instance (the daemon restarted) on the same state folder.
    again = poller(base, inbound_ctx)
    await again.load()
    assert again.state["cursor"] == 2
    assert await again.poll_once() == 0
    server.add("c", 2)  # same timestamp as the watermark: still new
    server.add("a", 3)  # an update of an old item: a new event
    assert await again.poll_once() == 2
    assert [e.id for e in inbound_ctx.accepted] == ["a@1", "b@2", "c@2", "a@3"]
    assert await poller(base, inbound_ctx).poll_once() == 0


class FailingAfter(RecordingInboundContext):
    """Accepts ``budget`` envelopes, then the bus is down."""

    budget: int = 0

    async def accept(self, envelope: Envelope) -> Accepted:
        if self.budget <= 0:
            self.attempts += 1
            raise BusUnavailable("bus down (test)")
        self.budget -= 1
        return await super().accept(envelope)


async def test_failed_accept_keeps_the_cursor(api: tuple[Api, str], tmp_path: Path) -> None:
    server, base = api
    for n in range(3):
        server.add(f"i{n}", 10 + n)
    ctx = FailingAfter(name="poll", config_dir=tmp_path)
    ctx.budget = 1
    p = poller(base, ctx)
    with pytest.raises(BusUnavailable):
        await p.poll_once()
    assert [e.subject for e in ctx.accepted] == ["i0"]
    assert not (tmp_path / ".esb" / "sources" / "poll.json").exists()  # cursor not advanced
    ctx.budget = 100
    assert await p.poll_once() == 2  # i0 is not sent twice by this instance
    assert [e.subject for e in ctx.accepted] == ["i0", "i1", "i2"]
    assert state(ctx)["cursor"] == 12


async def test_page_cursor(api: tuple[Api, str], inbound_ctx: Any) -> None:
    server, base = api
    for n in range(3):
        server.add(f"p{n}", n)
    settings = {"url": base + "/pages", "id": "id",
                "cursor": {"param": "page", "kind": "page", "page_size": 2}}
    p = Poller(PollSettings.model_validate(settings), inbound_ctx)
    assert await p.poll_once() == 3
    assert state(inbound_ctx) == {"cursor": 2, "seen": ["p2"]}  # page 2 is not full yet
    assert await p.poll_once() == 0
    server.add("p3", 3)
    server.add("p4", 4)
    assert await p.poll_once() == 2
    assert [e.id for e in inbound_ctx.accepted] == ["p0", "p1", "p2", "p3", "p4"]
    assert state(inbound_ctx)["cursor"] == 3
    with pytest.raises(ConfigError, match="page_size"):
        Poller(PollSettings.model_validate(
            {**settings, "cursor": {"param": "page", "kind": "page"}}), inbound_ctx)


async def test_polling_only_source_runs_until_stopped(api: tuple[Api, str],
                                                      inbound_ctx: Any) -> None:
    server, base = api
    server.add("x", 1)
    cfg = RestInboundSettings.model_validate({"poll": poll_settings(base)})
    assert cfg.path is None
    side = RestInbound(cfg, inbound_ctx, 1024)
    assert side.routes == []
    server.fail = 500  # a failing API is logged and polled again
    await side.start()
    await asyncio.sleep(0.2)
    assert not inbound_ctx.accepted
    server.fail = None
    assert await until(lambda: inbound_ctx.accepted, timeout=20)
    server.add("y", 2)
    assert await until(lambda: len(inbound_ctx.accepted) == 2, timeout=20), \
        inbound_ctx.accepted
    await asyncio.wait_for(side.stop(), 10)
    assert [e.subject for e in inbound_ctx.accepted] == ["x", "y"]
    count = len(server.requests)
    await asyncio.sleep(0.2)
    assert len(server.requests) == count  # stopped: no more polls


def test_settings_need_a_path_or_poll() -> None:
    with pytest.raises(ValidationError) as info:
        RestInboundSettings.model_validate({})
    assert info.value.errors()[0]["loc"] == ("path",)
    assert info.value.errors()[0]["type"] == "missing"
    both = RestInboundSettings.model_validate({"path": "/in", "poll": {"url": "http://x/"}})
    assert both.path == "/in"
    with pytest.raises(ValidationError, match="from"):
        RestInboundSettings.model_validate(
            {"poll": {"url": "http://x/", "cursor": {"param": "since"}}})


async def test_without_id_or_cursor_items_are_keyed_by_content(api: tuple[Api, str],
                                                               inbound_ctx: Any) -> None:
    server, base = api
    server.add("a", 1)
    p = Poller(PollSettings.model_validate({"url": base + "/items", "items": "data.items"}),
               inbound_ctx)
    assert await p.poll_once() == 1
    assert await p.poll_once() == 0
    server.add("b", 2)
    assert await p.poll_once() == 1
    assert inbound_ctx.accepted[0].type == "test-source.polled"
    assert len(inbound_ctx.accepted[0].id) == 32


# -- the adapter test kit's inbound contract --------------------------------------------------


class TestPollingInboundContract(InboundContract):
    """The peer is the polled API: an input is "acknowledged" once the persisted cursor has
    moved past it (nothing else tells the API anything)."""

    spec = SPEC
    settings: ClassVar[dict[str, Any]] = {"poll": {"url": "http://127.0.0.1:9/items"}}
    expected_type = "item.changed"
    wait = 5.0

    def inbound_settings(self) -> dict[str, object]:
        return {"poll": poll_settings(self.base)}

    @pytest.fixture(autouse=True)
    def _api(self) -> Iterator[None]:
        self.api = Api()
        with ThreadedServer(self.api.app()) as url:
            self.base = url
            yield

    async def offer(self) -> None:
        self.api.add("kit-1", 7)

    async def acknowledged(self) -> bool:
        path = self.tmp_path / ".esb" / "sources" / f"{self.context.name}.json"
        with contextlib.suppress(FileNotFoundError):
            return orjson.loads(path.read_bytes())["cursor"] == 7
        return False

    async def retry(self) -> None:
        pass  # the next tick polls again


async def test_instances_sharing_the_state_poll_one_at_a_time(api: tuple[Api, str],
                                                              inbound_ctx: Any) -> None:
    """Two instances of one polling source (the workers of ``--workers 2``), each under the
    runtime's lease wrapper: only the lease holder polls; when it stops, the other takes over
    from the cursor it left in the shared state."""
    server, base = api
    cfg = RestInboundSettings.model_validate({"poll": poll_settings(base)})
    fleet = inbound_ctx.config_dir / ".esb"
    first, second = (OneInstance(RestInbound(cfg, inbound_ctx, 1024),
                                 LocalLeases(fleet, 0.05).lease("s"), "s", 0.05)
                     for _ in range(2))

    async def until(n: int) -> None:
        for _ in range(1000):  # 20 s or more
            if len(inbound_ctx.accepted) >= n:
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"{len(inbound_ctx.accepted)} of {n} accepted")

    await first.start()
    await asyncio.sleep(0.1)
    await second.start()
    for n in range(5):
        server.add(f"i{n}", 100 + n)
    await until(5)
    await asyncio.sleep(0.3)  # several ticks of both loops
    assert first.running and not second.running
    await first.stop()  # the holder goes away (a dead process releases it the same way)
    server.add("i5", 105)
    await until(6)
    await asyncio.sleep(0.3)
    assert second.running
    await second.stop()
    assert [e.subject for e in inbound_ctx.accepted] == [f"i{n}" for n in range(6)]
    assert state(inbound_ctx)["cursor"] == 105


# -- the outbound allow-list ------------------------------------------------------------------

OAUTH = {"type": "oauth2", "client_id": "esb", "client_secret": "cl1ent-s3cret"}


@pytest.mark.parametrize(("poll", "refused"), [
    ({"url": "https://crm.example.org/api/items"},
     "poll.url: host 'crm.example.org' is not in the outbound allow-list"),
    ({"url": "https://crm.example.com/api/items",
      "auth": {**OAUTH, "token_url": "https://idp.example.net/token"}},
     "poll.auth.token_url: host 'idp.example.net' is not in the outbound allow-list"),
])
def test_allow_list_refuses_the_polled_url_and_its_token_url(
        tmp_path: Path, poll: dict[str, Any], refused: str) -> None:
    settings = RestInboundSettings.model_validate({"poll": poll})
    ctx = RecordingInboundContext(name="crm", config_dir=tmp_path,
                                  allowed_hosts=("*.example.com",))
    with pytest.raises(ConfigError) as info:
        SPEC.inbound(settings, ctx)
    assert info.value.problems == [refused]


def test_allowed_hosts_pass_and_an_empty_allow_list_allows_any(
        tmp_path: Path, inbound_ctx: Any) -> None:
    poll = {"url": "https://crm.example.com/api/items",
            "auth": {**OAUTH, "token_url": "https://idp.example.com/token"}}
    settings = RestInboundSettings.model_validate({"poll": poll})
    ctx = RecordingInboundContext(name="crm", config_dir=tmp_path,
                                  allowed_hosts=("*.example.com",))
    assert SPEC.inbound(settings, ctx).poller is not None
    assert inbound_ctx.allowed_hosts == ()
    anywhere = PollSettings.model_validate({**poll, "url": "https://crm.example.org/items"})
    assert Poller(anywhere, inbound_ctx).settings.url == "https://crm.example.org/items"


def test_the_daemon_hands_sources_its_allow_list(tmp_path: Path) -> None:
    (tmp_path / "routes").mkdir()

    def build(allowed: list[str]) -> Daemon:
        (tmp_path / "esb.yaml").write_text(yaml.safe_dump({
            "bus": {"url": "embedded"}, "routes": "routes/",
            "http": {"allowed_hosts": allowed},
            "sources": {"crm": {"adapter": "rest",
                                "poll": {"url": "http://crm.example.org/items"}}}}))
        daemon = Daemon(load_config(tmp_path / "esb.yaml", base_dir=tmp_path))
        daemon._build_adapters()
        return daemon

    with pytest.raises(ConfigError, match=r"^poll\.url: host 'crm\.example\.org' is not in the "
                                          r"outbound allow-list$"):
        build(["127.0.0.1"])
    wrapped = build(["crm.example.org"]).inbound["crm"]
    assert isinstance(wrapped, OneInstance)  # the poller runs on one instance of the fleet
    inbound = wrapped.side
    assert isinstance(inbound, RestInbound) and inbound.poller is not None
    assert inbound.poller.ctx.allowed_hosts == ("crm.example.org",)
