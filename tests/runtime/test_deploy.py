"""RouteDeployer on the embedded store, and its admin endpoints: a refused deploy leaves the
running version, rollback deploys older files as a new version, a restarted instance runs the
latest stored version, and every instance on a store follows it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
import yaml
from esbtest.waiting import until
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from esb.bus.envelope import Envelope
from esb.bus.errors import ConfigError
from esb.bus.problem import problem
from esb.bus.routing.router import Router, compile_routes
from esb.bus.routing.routeset import parse_route_files
from esb.bus.routing.store import UnknownVersion
from esb.bus.routing.store_embedded import FileRouteStore
from esb.bus.runtime.admin_routes import route_admin_routes
from esb.bus.runtime.deploy import RollbackError, RouteDeployer
from esb.bus.runtime.ingress import RouterHolder

SOURCES = {"shop"}
DESTINATIONS = {"erp", "audit"}


def route_file(*routes: tuple[str, str, str]) -> str:
    """(name, type, destination) triples as a route file."""
    return yaml.safe_dump({"routes": [{"name": n, "from": ["shop"], "match": {"type": [t]},
                                       "to": [d]} for n, t, d in routes]}, sort_keys=False)


V1 = {"orders.yaml": route_file(("orders-to-erp", "order.created", "erp"))}
V2 = {"orders.yaml": route_file(("orders-to-audit", "order.created", "audit")),
      "more.yaml": route_file(("refunds", "refund.created", "erp"))}
BROKEN = {"orders.yaml": route_file(("a", "order.created", "nowhere"),
                                    ("b", "order.created", "erp"))
          .replace("- shop", "- shoop", 1).replace("- order.created", "- {nope: 1}", 1)}


def compiler(destinations: set[str], base: Path) -> Callable[[dict[str, str], int], Router]:
    def compile_files(files: dict[str, str], version: int) -> Router:
        return compile_routes(parse_route_files(files), sources=SOURCES,
                              destinations=destinations, base_dir=base, version=version)

    return compile_files


def placeholder(base: Path) -> RouterHolder:
    """What the daemon starts with: its route files, compiled as version 0."""
    return RouterHolder(compiler(DESTINATIONS, base)(V1, 0))


Make = Callable[..., Awaitable[RouteDeployer]]


@pytest.fixture
async def make(tmp_path: Path) -> AsyncIterator[Make]:
    made: list[RouteDeployer] = []

    async def _make(initial: dict[str, str] = V1, destinations: set[str] = DESTINATIONS,
                    instance: str = "i1") -> RouteDeployer:
        d = RouteDeployer(FileRouteStore(tmp_path / "state"), placeholder(tmp_path),
                          compiler(destinations, tmp_path), instance)
        await d.start(initial)
        made.append(d)
        return d

    yield _make
    for d in made:
        await d.close()


def routed(holder: RouterHolder, etype: str = "order.created") -> list[str]:
    env = Envelope(source="shop", type=etype, esbendpoint="shop")
    return [f"{r.name}>{leg.destination}" for r in holder.current.match(env) for leg in r.legs]


async def test_an_empty_store_is_seeded_with_the_initial_files(make: Make) -> None:
    d = await make()
    history = await d.store.history()
    assert [(v.version, v.deployed_by) for v in history] == [(1, "initial")]
    assert d.holder.current.version == 1
    assert d.status()["version"] == 1 and d.status()["deployed_by"] == "initial"
    assert routed(d.holder) == ["orders-to-erp>erp"]


async def test_deploy_switches_and_a_refused_deploy_changes_nothing(make: Make) -> None:
    d = await make()
    v2 = await d.deploy(V2, by="alice", note="audit instead")
    assert v2.version == 2 and d.holder.current.version == 2
    assert routed(d.holder) == ["orders-to-audit>audit"]
    running = d.holder.current
    with pytest.raises(ConfigError) as err:
        await d.deploy(BROKEN, by="mallory")
    problems = err.value.problems
    assert any("orders.yaml:" in p and "unknown destination 'nowhere'" in p for p in problems)
    assert any("unknown source 'shoop'" in p for p in problems), problems
    assert any("unknown operator 'nope'" in p for p in problems), problems
    assert d.holder.current is running  # the running set stays, untouched
    assert [v.version for v in await d.store.history()] == [1, 2]  # nothing stored


async def test_rollback_appends_the_older_files_as_a_new_version(make: Make) -> None:
    d = await make()
    with pytest.raises(RollbackError, match="only version"):
        await d.rollback(None, by="bob")
    await d.deploy(V2, by="alice")
    v3 = await d.rollback(None, by="bob")
    assert (v3.version, v3.rollback_of, v3.files) == (3, 1, V1)
    assert d.holder.current.version == 3 and routed(d.holder) == ["orders-to-erp>erp"]
    v4 = await d.rollback(2, by="bob")
    assert (v4.version, v4.rollback_of) == (4, 2)
    assert routed(d.holder) == ["orders-to-audit>audit"]
    with pytest.raises(UnknownVersion):
        await d.rollback(9, by="bob")
    with pytest.raises(RollbackError, match="already the latest"):
        await d.rollback(4, by="bob")


async def test_a_restarted_instance_runs_the_latest_version_not_its_files(
        make: Make) -> None:
    first = await make()
    await first.deploy(V2, by="alice")
    await first.close()
    again = await make(initial=V1)  # started with the old files
    assert again.holder.current.version == 2
    assert routed(again.holder) == ["orders-to-audit>audit"]
    assert [v.version for v in await again.store.history()] == [1, 2]


async def test_other_instances_follow_and_skip_what_they_cannot_compile(make: Make) -> None:
    a = await make(instance="a")
    b = await make(instance="b")
    narrow = await make(instance="narrow", destinations={"erp"})  # has no 'audit'
    await a.deploy(V2, by="alice")
    assert await b.wait_running(2)
    assert routed(b.holder) == ["orders-to-audit>audit"]
    assert await until(lambda: narrow.refused is not None)  # it heard version 2 too
    assert narrow.holder.current.version == 1  # logged and skipped: the running set stays
    assert narrow.refused is not None and narrow.refused["version"] == 2  # and said
    assert any("audit" in p for p in narrow.refused["problems"])
    await a.rollback(1, by="alice")
    assert await narrow.wait_running(3)
    assert routed(narrow.holder) == ["orders-to-erp>erp"]
    assert narrow.refused is None  # running the latest again


async def test_a_restart_falls_back_to_the_newest_version_that_compiles(make: Make) -> None:
    a = await make(instance="a")
    await a.deploy(V2, by="alice")
    narrow = await make(instance="narrow", destinations={"erp"})
    assert narrow.holder.current.version == 1
    assert narrow.refused is not None and narrow.refused["version"] == 2


# -- admin endpoints -----------------------------------------------------------------------------

def guard(endpoint: Callable[[Request], Awaitable[Response]]
          ) -> Callable[[Request], Awaitable[Response]]:
    async def guarded(request: Request) -> Response:
        if request.headers.get("authorization") != "Bearer t":
            return problem(401, "Unauthorized")
        return await endpoint(request)

    return guarded


@pytest.fixture
async def admin(make: Make) -> AsyncIterator[httpx.AsyncClient]:
    d = await make()
    app = Starlette(routes=route_admin_routes(d, guard))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t",
                                 headers={"Authorization": "Bearer t"}) as client:
        yield client


async def test_admin_deploy_history_diff_rollback(admin: httpx.AsyncClient) -> None:
    r = await admin.post("/admin/routes/deploy", json={"files": V2, "by": "alice", "note": "n"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["version"], body["running"], body["note"]) == (2, True, "n")
    assert body["files"] == ["more.yaml", "orders.yaml"]

    r = await admin.get("/admin/routes/versions")
    listing = r.json()
    assert listing["running"] == 2
    assert [v["version"] for v in listing["versions"]] == [1, 2]
    assert all(isinstance(v["files"], list) for v in listing["versions"])  # names, no texts

    r = await admin.get("/admin/routes/versions/1")
    assert r.status_code == 200 and r.json()["files"] == V1
    r = await admin.get("/admin/routes/versions/5")
    assert r.status_code == 404 and "no route version 5" in r.json()["detail"]

    r = await admin.get("/admin/routes/diff", params={"a": 1, "b": 2})
    files = {f["name"]: f for f in r.json()["files"]}
    assert files["more.yaml"]["status"] == "added"
    assert files["orders.yaml"]["status"] == "modified"
    assert "-  - erp" in files["orders.yaml"]["diff"] or "-  to:" in files["orders.yaml"]["diff"]
    assert "+  - audit" in files["orders.yaml"]["diff"]
    assert (await admin.get("/admin/routes/diff?a=1")).status_code == 400

    r = await admin.post("/admin/routes/rollback", json={"version": None, "by": "bob"})
    assert r.status_code == 201 and (r.json()["version"], r.json()["rollback_of"]) == (3, 1)
    r = await admin.post("/admin/routes/rollback", json={"version": 3, "by": "bob"})
    assert r.status_code == 409
    r = await admin.post("/admin/routes/rollback", json={"version": 42, "by": "bob"})
    assert r.status_code == 404


async def test_admin_refused_deploy_is_422_with_every_problem(
        admin: httpx.AsyncClient) -> None:
    r = await admin.post("/admin/routes/deploy", json={"files": BROKEN, "by": "mallory"})
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    errors = r.json()["errors"]
    assert len(errors) >= 3 and all(e.startswith("orders.yaml:") for e in errors)
    assert (await admin.get("/admin/routes/versions")).json()["running"] == 1
    for bad in (b"{nope", b"[1]"):
        assert (await admin.post("/admin/routes/deploy", content=bad)).status_code == 400
    r = await admin.post("/admin/routes/deploy", json={"files": {"../x.yaml": "routes: []"}})
    assert r.status_code == 400
    r = await admin.post("/admin/routes/deploy", json={"files": {}})
    assert r.status_code == 400
    r = await admin.get("/admin/routes/versions", headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401
