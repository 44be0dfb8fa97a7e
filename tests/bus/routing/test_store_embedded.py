"""FileRouteStore: numbered, durable, torn-line tolerant, in-process watchers."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from esb.bus.routing.routeset import digest_files
from esb.bus.routing.store import RouteStore, RouteVersion, UnknownVersion
from esb.bus.routing.store_embedded import FileRouteStore

FILES = {"a.yaml": "routes: []\n"}


async def test_append_numbers_versions_from_one(tmp_path: Path) -> None:
    store = FileRouteStore(tmp_path)
    assert isinstance(store, RouteStore)
    await store.start()
    assert await store.latest() is None
    assert await store.history() == []
    v1 = await store.append(FILES, "alice", note="first")
    v2 = await store.append({"b.yaml": "routes: []\n"}, "bob", rollback_of=None)
    assert (v1.version, v2.version) == (1, 2)
    assert v1.digest == digest_files(FILES)
    assert v1.files == FILES and v1.deployed_by == "alice" and v1.note == "first"
    assert v1.deployed_at.tzinfo is not None
    assert await store.latest() == v2
    assert await store.get(1) == v1
    assert [v.version for v in await store.history()] == [1, 2]
    with pytest.raises(UnknownVersion, match=r"no route version 7 \(versions are 1\.\.2\)"):
        await store.get(7)
    with pytest.raises(KeyError):
        await store.get(0)
    await store.close()


async def test_history_survives_a_restart(tmp_path: Path) -> None:
    first = FileRouteStore(tmp_path)
    await first.start()
    await first.append(FILES, "alice")
    rb = await first.append(FILES, "bob", note="again", rollback_of=1)
    await first.close()
    again = FileRouteStore(tmp_path)
    await again.start()
    assert await again.latest() == rb
    assert rb.rollback_of == 1
    lines = (tmp_path / "routes" / "history.jsonl").read_text().splitlines()
    assert [json.loads(line)["version"] for line in lines] == [1, 2]
    await again.close()


async def test_a_torn_last_line_is_ignored_then_cut_off(tmp_path: Path) -> None:
    store = FileRouteStore(tmp_path)
    await store.start()
    await store.append(FILES, "alice")
    await store.close()
    path = tmp_path / "routes" / "history.jsonl"
    with path.open("ab") as f:  # a crash in the middle of writing version 2
        f.write(b'{"version": 2, "digest": "abc", "files": {"a.ya')
    reopened = FileRouteStore(tmp_path)
    await reopened.start()
    assert [v.version for v in await reopened.history()] == [1]
    v2 = await reopened.append({"c.yaml": "routes: []\n"}, "carol")
    assert v2.version == 2
    await reopened.close()
    last = FileRouteStore(tmp_path)
    await last.start()
    assert [(v.version, v.deployed_by) for v in await last.history()] == [(1, "alice"),
                                                                          (2, "carol")]
    assert path.read_bytes().endswith(b"\n")
    await last.close()


async def test_concurrent_appends_get_distinct_versions(tmp_path: Path) -> None:
    a, b = FileRouteStore(tmp_path), FileRouteStore(tmp_path)
    await a.start()
    await b.start()
    made = await asyncio.gather(*((a if i % 2 else b).append({"x.yaml": f"# {i}\n"}, "x")
                                  for i in range(12)))
    assert sorted(v.version for v in made) == list(range(1, 13))
    assert [v.version for v in await a.history()] == list(range(1, 13))
    assert await a.history() == await b.history()
    await a.close()
    await b.close()


async def test_watchers_hear_every_later_append_in_order(tmp_path: Path) -> None:
    a, b = FileRouteStore(tmp_path), FileRouteStore(tmp_path)
    await a.start()
    await a.append(FILES, "before")  # before b started: history, not news
    await b.start()
    heard_a: list[int] = []
    heard_b: list[int] = []

    async def on_a(v: RouteVersion) -> None:
        heard_a.append(v.version)

    async def on_b(v: RouteVersion) -> None:
        await asyncio.sleep(0)  # a slow watcher still sees versions one at a time, in order
        heard_b.append(v.version)

    async def broken(v: RouteVersion) -> None:
        raise RuntimeError("a failing watcher does not stop the others")

    a.watch(on_a)
    b.watch(broken)
    b.watch(on_b)
    for i in range(3):
        await (a if i % 2 else b).append({"x.yaml": f"# {i}\n"}, "x")
    for _ in range(50):
        if len(heard_a) == 3 and len(heard_b) == 3:
            break
        await asyncio.sleep(0.01)
    assert heard_a == [2, 3, 4]
    assert heard_b == [2, 3, 4]
    assert (await b.get(1)).deployed_by == "before"
    await a.close()
    await b.close()
