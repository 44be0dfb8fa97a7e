"""Response caching for request/reply routes and enrichers (``cache:``).

A cached answer is the one the caller got — after the reply leg (or the enricher's ``reply``
steps) — stored only when it was a success, and served for ``ttl`` seconds to every request of
the same route, route-set version and envelope type whose ``key`` fields have the same values.
A hit answers without publishing anything: the destination is not asked, so an answer may be up
to ``ttl`` old (and a deploy starts afresh: the version is part of the key).

Each route's cache is bounded twice, by ``max_entries`` and by ``max_bytes`` (the answers'
payload sizes); the least recently used entries go first, and an answer larger than a quarter
of ``max_bytes`` is not cached at all.

The answers live in one SQLite database. With ``esb run --workers N`` it is a file in the
supervisor's private directory (:func:`shared_file`), so the workers of one instance share
their answers; a lone process keeps it in memory. Lookups run on the event loop: a read is
tens of microseconds and never waits for a writer (WAL), and a write waits at most
:data:`BUSY_MS` for another worker's — a store that is busy or broken is a miss (or an answer
not kept), never a failed request.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import structlog

from esb.bus.envelope import Envelope
from esb.bus.payload import MISSING, field
from esb.bus.routing.model import CacheSpec

log = structlog.get_logger("esb.reply_cache")

#: An answer larger than this share of ``max_bytes`` is not cached (it would evict the rest).
LARGEST_SHARE = 4
#: How long a write waits for another worker's (milliseconds) before it gives up.
BUSY_MS = 10
#: How long opening the database (creating its table) may wait for another worker's.
OPEN_BUSY_MS = 1000
#: What a broken or busy store raises: its folder cannot be made, the database is locked,
#: corrupt or full, a kept answer no longer reads as an envelope.
STORE_ERRORS = (sqlite3.Error, OSError, ValueError)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    route   TEXT NOT NULL,     -- route name and a digest of its cache spec
    key     BLOB NOT NULL,
    answer  BLOB NOT NULL,     -- the envelope as JSON
    size    INTEGER NOT NULL,
    expires REAL NOT NULL,
    used    INTEGER NOT NULL,  -- recency: larger is more recently used
    PRIMARY KEY (route, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS answers_used ON answers (used);
CREATE INDEX IF NOT EXISTS answers_route_used ON answers (route, used);
CREATE INDEX IF NOT EXISTS answers_expires ON answers (expires);
-- Each route's entries and bytes, kept by the database so a bound is checked without a scan.
CREATE TABLE IF NOT EXISTS totals (
    route   TEXT PRIMARY KEY,
    entries INTEGER NOT NULL,
    bytes   INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS answer_kept AFTER INSERT ON answers BEGIN
    INSERT INTO totals VALUES (new.route, 1, new.size) ON CONFLICT (route)
        DO UPDATE SET entries = entries + 1, bytes = bytes + new.size;
END;
CREATE TRIGGER IF NOT EXISTS answer_dropped AFTER DELETE ON answers BEGIN
    UPDATE totals SET entries = entries - 1, bytes = bytes - old.size WHERE route = old.route;
END;
"""


def shared_file(directory: str | Path) -> Path:
    """The database the workers sharing the supervisor's private ``directory`` use (in a
    folder of its own: prometheus_client reads every ``*.db`` at the directory's top)."""
    return Path(directory) / "reply-cache" / "answers.sqlite"


class AnswerStore:
    """The database of answers at ``path`` (``None``: in this process's memory), opened on
    first use. A failure raises one of :data:`STORE_ERRORS`; the store opens again on the
    next use after a failed open."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._complained = False

    def db(self) -> sqlite3.Connection:
        if self._db is None:
            if self.path is None:
                target = ":memory:"
            else:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
                target = str(self.path)
            # Used from one thread at a time (the event loop's), not always the opener's.
            db = sqlite3.connect(target, timeout=OPEN_BUSY_MS / 1000, isolation_level=None,
                                 check_same_thread=False)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=OFF")  # a cache: a lost write is a miss
                db.executescript(_SCHEMA)
                db.execute(f"PRAGMA busy_timeout={BUSY_MS}")
            except BaseException:
                db.close()
                raise
            self._db = db
        return self._db

    def failed(self, what: str, exc: Exception) -> None:
        """A failed use: a busy store is expected under load (not logged); anything else is
        logged once per process."""
        if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
            return
        if not self._complained:
            self._complained = True
            log.warning("the response cache is not working: answering without it",
                        what=what, path=str(self.path or ":memory:"), error=str(exc))


class RouteCache:
    """One route's answers in ``store``: a TTL'd LRU bounded by entries and bytes."""

    def __init__(self, spec: CacheSpec, clock: Callable[[], float] = time.time,
                 store: AnswerStore | None = None, name: str = "") -> None:
        self.spec = spec
        self.clock = clock
        self.store = store if store is not None else AnswerStore()
        # A changed spec (another ttl or key) must not see the answers kept under the old one.
        digest = hashlib.sha256(spec.model_dump_json().encode()).hexdigest()[:16]
        self.route = f"{name}\0{digest}"

    def _totals(self, db: sqlite3.Connection) -> tuple[int, int]:
        """This route's (entries, bytes)."""
        row = db.execute("SELECT entries, bytes FROM totals WHERE route = ?",
                         (self.route,)).fetchone()
        return (0, 0) if row is None else (int(row[0]), int(row[1]))

    def __len__(self) -> int:
        return self._totals(self.store.db())[0]

    @property
    def bytes(self) -> int:
        return self._totals(self.store.db())[1]

    def get(self, key: bytes) -> Envelope | None:
        """The answer kept for ``key``, or None (also when the store fails)."""
        try:
            db = self.store.db()
            row = db.execute("SELECT answer, expires FROM answers WHERE route = ? AND key = ?",
                             (self.route, key)).fetchone()
            if row is None:
                return None
            if row[1] <= self.clock():
                db.execute("DELETE FROM answers WHERE route = ? AND key = ? AND expires <= ?",
                           (self.route, key, self.clock()))
                return None
            answer = Envelope.from_json(row[0])
        except STORE_ERRORS as exc:
            self.store.failed("lookup", exc)
            return None
        try:
            db.execute("UPDATE answers SET used = (SELECT coalesce(max(used), 0) + 1 "
                       "FROM answers) WHERE route = ? AND key = ?", (self.route, key))
        except STORE_ERRORS as exc:  # the answer stands; only its recency is not noted
            self.store.failed("recency", exc)
        return answer

    def put(self, key: bytes, answer: Envelope) -> bool:
        """Keep ``answer`` (False when it is too large to, or the store failed)."""
        size = len(answer.data_bytes()) + len(key)
        if size * LARGEST_SHARE > self.spec.max_bytes:
            return False
        now = self.clock()
        try:
            db = self.store.db()
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute("DELETE FROM answers WHERE expires <= ?", (now,))
                # Not INSERT OR REPLACE: a replaced row would not fire answer_dropped.
                db.execute("DELETE FROM answers WHERE route = ? AND key = ?", (self.route, key))
                db.execute("INSERT INTO answers VALUES (?, ?, ?, ?, ?, "
                           "(SELECT coalesce(max(used), 0) + 1 FROM answers))",
                           (self.route, key, answer.to_json(), size, now + self.spec.ttl))
                self._evict(db)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        except STORE_ERRORS as exc:
            self.store.failed("store", exc)
            return False
        return True

    def _evict(self, db: sqlite3.Connection) -> None:
        """Drop this route's least recently used answers until both bounds hold."""
        count, total = self._totals(db)
        if count <= self.spec.max_entries and total <= self.spec.max_bytes:
            return
        doomed: list[tuple[str, bytes]] = []
        for key, size in db.execute("SELECT key, size FROM answers WHERE route = ? "
                                    "ORDER BY used", (self.route,)):
            if count <= self.spec.max_entries and total <= self.spec.max_bytes:
                break
            doomed.append((self.route, key))
            count, total = count - 1, total - size
        db.executemany("DELETE FROM answers WHERE route = ? AND key = ?", doomed)


class ReplyCache:
    """Every route's cache, by route name (a new spec starts it afresh), in the database at
    ``path`` (:func:`shared_file` for a worker; ``None``: this process's memory)."""

    def __init__(self, path: str | Path | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.store = AnswerStore(path)
        self._routes: dict[str, RouteCache] = {}

    def route(self, name: str, spec: CacheSpec) -> RouteCache:
        cache = self._routes.get(name)
        if cache is None or cache.spec != spec:
            cache = self._routes[name] = RouteCache(spec, self.clock, self.store, name)
        return cache

    @staticmethod
    def key(spec: CacheSpec, asked: Envelope, version: int | None) -> bytes:
        """The cache key of a request made under route-set ``version``: the version, the
        type and ``key`` fields of ``asked``."""
        values = [None if (v := field(asked, path)) is MISSING else v for path in spec.key]
        return orjson.dumps([version, asked.type, values],
                            option=orjson.OPT_SORT_KEYS, default=str)
