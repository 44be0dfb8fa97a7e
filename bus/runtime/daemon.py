"""``esb run``: wires configuration, bus, routes, adapters and the HTTP server, and drains on
SIGTERM (stop accepting, finish in-flight deliveries, close the bus, exit 0) within one
overall deadline, ``stop_timeout`` (see :meth:`Daemon._drain`)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import socket
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import Any

import httpx
import structlog

from esb.adapters.spec import Inbound, Outbound, OutboundContext
from esb.bus.apidocs.http import InboundDocument, apidocs_routes
from esb.bus.apidocs.inbound import inbound_document
from esb.bus.broker.base import Bus, destination_addresses
from esb.bus.config.loader import Loaded, load_config
from esb.bus.console.app import Console
from esb.bus.console.session import Sessions
from esb.bus.errors import BusError, ConfigError
from esb.bus.plugins import Registry, adapters, describe_installed
from esb.bus.plugins import transformers as transformer_registry
from esb.bus.routing.from_config import config_compiler, load_router
from esb.bus.routing.router import Router
from esb.bus.routing.routeset import read_route_files
from esb.bus.runtime import collector
from esb.bus.runtime.admin import AdminApi, loopback_only
from esb.bus.runtime.admin_token import admin_token, write_admin_url
from esb.bus.runtime.aggregate_spec import AggregateSettings
from esb.bus.runtime.aggregator import Aggregator
from esb.bus.runtime.backend import open_backend
from esb.bus.runtime.calls import PendingCalls
from esb.bus.runtime.deadletters import DeadLetters
from esb.bus.runtime.delivery import DeliveryWorker
from esb.bus.runtime.deploy import RouteDeployer
from esb.bus.runtime.fleet import FleetLimits
from esb.bus.runtime.http import bind_listener, build_app, make_http_client, make_server
from esb.bus.runtime.idempotency import SharedIdempotency
from esb.bus.runtime.ingress import Ingress, RouterHolder, SourceContext
from esb.bus.runtime.logs import SecretRedactor, configure_logging
from esb.bus.runtime.metrics import Metrics
from esb.bus.runtime.ordering import Partitioner
from esb.bus.runtime.readiness import Condition, Readiness
from esb.bus.runtime.reply_cache import ReplyCache, shared_file
from esb.bus.runtime.route_tests import RouteTester
from esb.bus.runtime.singleton import Leases, OneInstance
from esb.bus.runtime.stats import StatsHistory
from esb.bus.runtime.worker_board import WorkerBoard
from esb.bus.runtime.worker_role import WorkerRole, watch_parent
from esb.bus.tasks import cancel_all

log = structlog.get_logger("esb.daemon")

try:
    ESB_VERSION = package_version("esb")
except PackageNotFoundError:  # pragma: no cover - running from a source tree not installed
    ESB_VERSION = "unknown"

#: Shares of ``stop_timeout``: requests in flight get the first part; closing the broker links
#: keeps the last :data:`CLOSE_RESERVE` seconds (each link closes within 2 s, all at once).
HTTP_SHARE = 0.4
CLOSE_RESERVE = 3.0


class Daemon:
    """One daemon process. ``role`` is set when it is one worker process of
    ``esb run --workers N`` (see :mod:`esb.bus.runtime.worker_role`)."""

    def __init__(self, loaded: Loaded, *, instance: str | None = None,
                 registry: Registry | None = None, secrets: list[str] | None = None,
                 role: WorkerRole | None = None) -> None:
        self.loaded = loaded
        #: Shared with the delivery workers: an error a destination echoes a secret into is
        #: cleaned before it reaches a trace or a dead letter (and follows a SIGHUP).
        self.redactor = SecretRedactor(secrets or [])
        self.config = loaded.config
        self.role = role
        self.instance = instance or f"{socket.gethostname()}-{os.getpid()}"
        self.registry = registry or adapters()
        self.metrics = Metrics(role.metrics_dir if role else None)
        self.dedup = SharedIdempotency(self.config.bus.idempotency_window,
                                       self.config.bus.idempotency_max_keys)
        backend = open_backend(self.config, self.instance, snapshot=self._presence_snapshot,
                               learn=self.dedup.learn)
        self.bus: Bus = backend.bus
        self.trace = backend.trace
        self.presence = backend.presence
        self.leases: Leases = backend.leases
        self.dedup.log = backend.idempotency_log
        # The configured files compile before anything starts (a broken set fails fast); the
        # route store then decides which version actually runs.
        self.initial_files = read_route_files(self.config.resolve(self.config.routes))
        self.router = RouterHolder(load_router(loaded))
        self.deployer = RouteDeployer(
            backend.routes, self.router, config_compiler(loaded), self.instance,
            on_install=self._installed, on_change=lambda: self.presence.beat_now())
        # Partitioned queues: an ordered destination's, and an aggregate's (by its correlation
        # key, see AggregateSettings.ordered).
        ordered = {name: d.delivery.ordered for name, d in self.config.destinations.items()
                   if d.delivery.ordered}
        ordered.update((name, settings.ordered)
                       for name, settings in loaded.destination_settings.items()
                       if isinstance(settings, AggregateSettings))
        self.partitions = {name: o.partitions for name, o in ordered.items()}
        partitioners = {name: Partitioner(name, o) for name, o in ordered.items()}
        self.fleet = FleetLimits(self.presence)
        self.ingress = Ingress(self.bus, self.router, self.metrics, self.instance,
                               partitioners, self.trace)
        # The workers of one instance share their cached answers (a file in the supervisor's
        # private directory); a lone process keeps them in memory.
        cache = ReplyCache(shared_file(role.metrics_dir) if role is not None else None)
        self.calls = PendingCalls(self.metrics, self.instance, self.config.bus.max_waiting,
                                  self.trace, cache)
        self.metrics.watch(self.metrics.waiting, lambda: len(self.calls))
        self.ingress.calls = self.calls  # enrichment requests wait among the callers
        self.deadletters = DeadLetters(self.bus, self.ingress, self.config.destinations,
                                       partitioners, self.instance, self.trace)
        self.stats = StatsHistory(self.presence.instances, interval=self.presence.interval)
        self.route_tester = RouteTester(loaded)
        self.inbound_document = InboundDocument(self._describe_inbound,
                                                lambda: self.router.current.version)
        self._http: httpx.AsyncClient | None = None
        self.inbound: dict[str, Inbound] = {}
        self.contexts: dict[str, SourceContext] = {}
        self.outbound: dict[str, Outbound] = {}
        self.workers: list[DeliveryWorker] = []
        self._stop = asyncio.Event()
        self._started = False
        self._side_tasks: list[asyncio.Task[None]] = []
        #: What /readyz answers (see :mod:`esb.bus.runtime.readiness`); with workers, each
        #: posts its own on the board the others read.
        self.board = WorkerBoard(role.metrics_dir, role.index) if role is not None else None
        self.readiness = Readiness(self._accepting_conditions(),
                                   self.board.others if self.board is not None else None)
        self._posting: asyncio.Task[None] | None = None

    def _accepting_conditions(self) -> list[Condition]:
        """What an inbound message needs on its way to a 202, in the order /readyz names the
        first one missing. Ready once everything has started (not merely once the bus
        connected), so a load balancer sends nothing to a half-started instance."""
        conditions: list[Condition] = [
            ("starting", lambda: self._started),
            ("stopping", lambda: not self._stop.is_set()),
            ("bus not connected", lambda: self.bus.connected),
        ]
        idempotency = self.dedup.log
        if idempotency is not None:
            conditions.append(("idempotency log not connected", lambda: idempotency.ready))
        return conditions

    def http_client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = make_http_client(outbound=self.config.http.outbound,
                                          resolve=self.config.resolve)
        return self._http

    def plugins(self) -> dict[str, Any]:
        """Installed adapters and transformers (``GET /admin/plugins``)."""
        return {"adapters": describe_installed(self.registry),
                "transformers": describe_installed(transformer_registry())}

    def _describe_inbound(self, version: int, server: str | None) -> dict[str, Any]:
        running = self.deployer.running
        files = running.files if running is not None else self.initial_files
        return inbound_document(self.loaded, self.registry, files, route_version=version,
                                server=server)

    def _build_adapters(self) -> None:
        cfg = self.config
        for name, settings in self.loaded.source_settings.items():
            spec = self.registry.get(cfg.sources[name].adapter)
            ctx = SourceContext(name=name, config_dir=cfg.base_dir, instance=self.instance,
                                max_body=cfg.http.max_body, ingress=self.ingress,
                                dedup=self.dedup,
                                allowed_hosts=tuple(cfg.http.allowed_hosts),
                                xml_limits=cfg.limits.xml.limits,
                                json_depth=cfg.limits.json_.max_depth,
                                state=self.leases.state(name), calls=self.calls)
            self.contexts[name] = ctx
            side = spec.inbound(settings, ctx)
            if self.source_mode(name) == "one-instance":
                side = OneInstance(side, self.leases.lease(name), name, cfg.bus.lease_retry)
            self.inbound[name] = side
        for name, settings in self.loaded.destination_settings.items():
            spec = self.registry.get(cfg.destinations[name].adapter)
            octx = OutboundContext(name=name, config_dir=cfg.base_dir, http=self.http_client,
                                   allowed_hosts=tuple(cfg.http.allowed_hosts))
            self.outbound[name] = spec.outbound(settings, octx)

    def source_mode(self, name: str) -> str:
        """Where source ``name``'s loop runs: its ``runs:``, else what its adapter declares."""
        source = self.config.sources[name]
        return source.runs or self.registry.get(source.adapter).inbound_mode

    async def run(self) -> int:
        cfg = self.config
        # Bound first: a taken port is one clear error before anything else has started.
        listener = None if self.role else bind_listener(cfg.http.host, cfg.http.port)
        if not self.bus.durable:
            log.warning("EMBEDDED BUS: messages live in this process only and are LOST when it "
                        "stops. Set bus.url (or ESB_BUS_URL) to an amqp:// URL for production.")
        self._build_adapters()
        token = admin_token(self.loaded)
        sessions = Sessions(token, cfg.admin.console.session_ttl)
        admin = AdminApi(self, token, cfg.admin.remote, sessions)
        write_admin_url(self.loaded)
        pages = []
        if cfg.admin.console.enabled:
            pages = Console(token, sessions, lambda request: None if cfg.admin.remote
                            else loopback_only(request)).routes()
        routes = [self.contexts[name].counting_refusals(r)
                  for name, inbound in self.inbound.items() for r in inbound.routes]
        app = build_app(routes, [*admin.routes(), *pages,
                                 *apidocs_routes(self.inbound_document)],
                        not_ready=self.readiness, metrics=self.metrics.render)
        server = make_server(app, cfg.http.host, cfg.http.port,
                             graceful=cfg.stop_timeout * HTTP_SHARE,
                             limits=cfg.http.limits)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload)
        for ob in self.outbound.values():
            await ob.start()
        # A worker process listens on the daemon's address only once it has started (the others
        # serve meanwhile); a lone daemon serves at once, /readyz saying 503.
        serving = None if listener is None else asyncio.create_task(
            server.serve(sockets=[listener]))
        if self.role is not None:
            self._side_tasks.append(asyncio.create_task(watch_parent(self._orphaned)))
        if self.metrics.multiprocess:
            self._side_tasks.append(asyncio.create_task(self.metrics.keep_sampling()))
        self._side_tasks.append(asyncio.create_task(self.stats.run()))
        self._side_tasks.append(asyncio.create_task(collector.pace(), name="esb gc pace"))
        # Until the store's current route version is installed, senders are told to retry
        # (503): nothing is routed by the files this instance happened to start with.
        self.ingress.open = False
        await self._connect_bus()
        if self._stop.is_set():  # stopped while the bus was unreachable: nothing to drain
            return await self._drain(server, serving)
        await self._start_routes()
        # (a stop during start-up ends the retries above: then nothing may be routed at all)
        self.ingress.open = not self._stop.is_set()
        parts = [self.trace, self.presence, self.leases,
                 *([self.dedup.log] if self.dedup.log else [])]
        for part in parts:  # best effort: they reconnect by themselves
            try:
                await part.start()
            except BusError as exc:
                log.warning("trace/presence not connected yet", error=str(exc))
        for name, ob in self.outbound.items():
            if isinstance(ob, Aggregator):
                emitter = SourceContext(name=name, config_dir=cfg.base_dir,
                                        instance=self.instance, max_body=cfg.http.max_body,
                                        ingress=self.ingress, dedup=self.dedup)
                await ob.attach(self.bus, destination_addresses(name, self.partitions[name]),
                                emitter.accept, self.instance)
                continue
            delivery = cfg.destinations[name].delivery
            if self.role is not None:
                delivery = self.role.share(delivery)
            self.workers.append(DeliveryWorker(
                name, ob, self.bus, delivery, self.metrics, self.instance, cfg.bus.prefetch,
                self.trace, redactor=self.redactor, fleet=self.fleet))
        await self.fleet.settle()  # fleet-wide limits: count the others before sending
        self.fleet.start()
        for worker in self.workers:
            await worker.start()
        for ib in self.inbound.values():
            await ib.start()
        self._started = True
        if serving is None:
            assert self.role is not None
            serving = asyncio.create_task(server.serve(sockets=[self.role.listener()]))
            assert self.board is not None
            self._posting = asyncio.create_task(self.board.keep_posting(self.readiness.own))
            self.role.announce_ready()
        log.info("esb running", listen=cfg.http.listen, instance=self.instance,
                 sources=sorted(cfg.sources), destinations=sorted(cfg.destinations),
                 route_version=self.router.current.version,
                 routes=len(self.router.current.routes))
        stop = asyncio.create_task(self._stop.wait())
        await asyncio.wait({serving, stop}, return_when=asyncio.FIRST_COMPLETED)
        return await self._drain(server, serving)

    async def _connect_bus(self) -> None:
        """Connect; when the broker is not there yet, its link keeps trying by itself (one log
        line per attempt, its own) and this waits for it — or for a stop."""
        try:
            await self.bus.start(list(self.config.destinations), self.partitions)
        except ConfigError:
            raise
        except Exception as exc:  # the broker may still be starting
            log.warning("bus not reachable yet; retrying until it is", error=str(exc))
            while not self.bus.connected and not self._stop.is_set():
                await self._pause(0.2)
        self.calls.address = await self.bus.open_replies(self.calls.deliver)
        # 1 or 0, read when scraped: 0 again while the bus is lost
        self.metrics.watch(self.metrics.bus_connected, lambda: 1.0 if self.bus.connected else 0.0)

    async def _pause(self, seconds: float) -> None:
        """Sleep ``seconds``, or less when the daemon is told to stop meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def _start_routes(self) -> None:
        """Start the route store, retrying until it is reachable (or the daemon stops)."""
        delay = 0.5
        while not self._stop.is_set():
            try:
                await self.deployer.start(self.initial_files, str(self.config.routes))
                return
            except ConfigError:
                raise
            except Exception as exc:  # the broker may still be starting: keep trying
                log.warning("route store not reachable yet", error=str(exc), retry_in=delay)
                await self._pause(delay)
                delay = min(delay * 2, 10.0)

    async def _drain(self, server: Any, serving: asyncio.Task[None] | None) -> int:
        """The graceful stop, all of it within ``stop_timeout``:

        1. inbound adapters stop taking input; the HTTP server stops accepting and lets the
           requests in flight finish — for ``HTTP_SHARE`` of the budget. Whatever still
           waits then (a confirm from a silent broker, or the read-back of an idempotency
           key's claim) is answered 503 + Retry-After, and
           the server is closed before it would cancel them (uvicorn's cancel is a 500);
        2. consumers are cancelled; deliveries in flight finish and are acked, until
           ``CLOSE_RESERVE`` seconds before the end (what is not finished then stays
           un-acked: the broker delivers it again);
        3. outbound adapters, trace, presence, route store, idempotency links and the bus
           close, all at once, in what is left (a silent broker's link is aborted)."""
        loop = asyncio.get_running_loop()
        budget = self.config.stop_timeout
        deadline = loop.time() + budget

        def left(reserve: float = 0.0) -> float:
            return max(0.05, deadline - reserve - loop.time())

        log.info("stopping: draining in-flight work", stop_timeout=budget)
        if self._posting is not None:  # this worker stops serving: it has no say any more
            await cancel_all([self._posting])
            self._posting = None
        http_until = loop.time() + budget * HTTP_SHARE
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                asyncio.gather(*(ib.stop() for ib in self.inbound.values()),
                               return_exceptions=True), max(0.05, http_until - loop.time()))
        server.should_exit = True  # stop accepting; in-flight requests finish
        # One second before uvicorn would cancel the requests still in flight, they are
        # failed the clean way: "retry later" for each, from the adapter's own error path.
        answered = max(0.05, http_until - 1.0 - loop.time())
        done = serving is None or bool((await asyncio.wait({serving}, timeout=answered))[0])
        if not done:
            self.ingress.open = False
            reason = "esb is stopping; send it again (to another instance)"
            self.bus.fail_pending(reason)
            if self.dedup.log is not None:  # a keyed request may still wait on its claim
                self.dedup.log.fail_pending(reason)
            log.warning("stop: requests still in flight answered 503")
        if serving is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(serving), left(CLOSE_RESERVE))
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.bus.stop_consuming(), left(CLOSE_RESERVE))
        drained = all(await asyncio.gather(*(w.drain(left(CLOSE_RESERVE))
                                             for w in self.workers)))
        closing = [ob.stop() for ob in self.outbound.values()] + [self.fleet.close()]
        closing += [part.close() for part in (self.leases, self.presence, self.trace,
                                              self.deployer, self.dedup.log)
                    if part is not None]
        closed = True
        try:
            await asyncio.wait_for(asyncio.gather(*closing, return_exceptions=True),
                                   left(1.0))
        except TimeoutError:
            closed = False
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.bus.close(), left())
        if self._http is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._http.aclose(), left())
        await cancel_all(self._side_tasks)
        self.metrics.flush()  # the last updates, into the shared files (multiprocess)
        log.info("stopped", drained=drained, closed=closed,
                 took_s=round(budget - (deadline - loop.time()), 2))
        return 0

    def _orphaned(self) -> None:
        log.warning("supervisor gone: stopping this worker")
        self._stop.set()

    def _reload(self) -> None:
        """SIGHUP: re-read the configuration; apply what can change live (logging), and say
        what needs a restart. Routes change through ``esb routes deploy``, never here: a
        local file edit must not fork one instance from the versioned set."""
        path = self.config.path
        if path is None:
            return
        try:
            fresh = load_config(path, base_dir=self.config.base_dir)
        except ConfigError as exc:
            log.error("SIGHUP: configuration refused; the running one stays",
                      problems=exc.problems)
            return
        new = fresh.config
        secrets = fresh.log_secrets()
        self.redactor.update(secrets)
        configure_logging(new.logging.level, new.logging.format, secrets)
        changed = [key for key in ("bus", "http", "admin", "sources", "destinations",
                                   "transformers")
                   if getattr(new, key) != getattr(self.config, key)]
        log.info("SIGHUP: configuration re-read", logging=new.logging.model_dump(),
                 restart_needed_for=changed or None)

    def _installed(self, router: Router) -> None:
        self.metrics.route_version.set(router.version)
        # A large route set is hundreds of thousands of long-lived objects; left to the
        # cyclic GC they make every full collection scan them (seconds each at 10,000
        # routes). Collect what the previous set left, then freeze what remains.
        gc.unfreeze()
        gc.collect()
        gc.freeze()

    def _presence_snapshot(self) -> dict[str, Any]:
        """What this instance tells the others every few seconds (must be cheap)."""
        g = self.metrics.registry.get_sample_value
        workers = {w.destination: w.status() for w in self.workers}

        def count(name: str, **labels: str) -> int:  # prometheus keeps counters as floats
            return int(g(name, labels) or 0)

        latency = self.metrics.latency_counts()
        return {
            "version": ESB_VERSION,
            "state": self.state,
            "route_version": self.router.current.version,
            "route_refused": self.deployer.refused,
            "bus_connected": self.bus.connected,
            "leases": sorted(n for n, side in self.inbound.items()
                             if isinstance(side, OneInstance) and side.running),
            "destinations": {
                d: {"delivered": count("esb_delivered_total", destination=d),
                    "failed": sum(count("esb_failed_total", destination=d, kind=k)
                                  for k in ("transient", "permanent")),
                    "dead_lettered": count("esb_dead_lettered_total", destination=d),
                    "retried": count("esb_retried_total", destination=d),
                    "in_flight": workers.get(d, {}).get("in_flight", 0),
                    "breaker": self._breaker_state(d),
                    **({"latency": latency[d]} if d in latency else {})}
                for d in self.config.destinations},
        }

    @property
    def state(self) -> str:
        """``starting``, ``running``, ``degraded`` (bus lost) or ``stopping``."""
        if self._stop.is_set():
            return "stopping"
        if not self._started:
            return "starting"
        return "running" if self.bus.connected else "degraded"

    def _breaker_state(self, destination: str) -> str:
        """One answer for the status's top level and for this instance's presence entry:
        the worker's breaker, or — before the worker runs — what the configuration says."""
        for worker in self.workers:
            if worker.destination == destination:
                return str(worker.status()["breaker"])
        return "closed" if self.config.destinations[destination].delivery.breaker else "off"

    async def status(self) -> dict[str, Any]:
        depths: dict[str, int] = {}
        # Not while the bus link is lost: asking a broker it cannot reach costs the caller
        # (``esb status`` in an outage) kombu's connect retries, 6 s, to learn nothing.
        if self.bus.connected:
            with contextlib.suppress(Exception):
                depths = await self.bus.depths()
        router = self.router.current
        workers = {w.destination: w for w in self.workers}
        return {
            "instance": self.instance,
            "bus": {"kind": "rabbitmq" if self.bus.durable else "embedded",
                    "durable": self.bus.durable, "connected": self.bus.connected},
            "routes": {**self.deployer.status(), "version": router.version,
                       "digest": router.digest, "count": len(router.routes)},
            "queues": depths,
            "destinations": {
                name: {"queue": sum(v for k, v in depths.items()
                                    if k == f"dest.{name}" or k.startswith(f"dest.{name}.p"))
                       if depths else None,
                       "adapter": self.config.destinations[name].adapter,
                       **(workers[name].status() if name in workers else {}),
                       **(ob.status() if isinstance(ob := self.outbound.get(name), Aggregator)
                          else {}),
                       "breaker": self._breaker_state(name)}
                for name in self.config.destinations},
            "sources": {name: self._source_status(name)
                        for name in self.config.sources},
            "instances": self.presence.instances(),
        }

    def _source_status(self, name: str) -> dict[str, Any]:
        side = self.inbound.get(name)
        out: dict[str, Any] = {"adapter": self.config.sources[name].adapter,
                               "runs": self.source_mode(name)}
        if isinstance(side, OneInstance):
            out["lease"] = "held" if side.running else "standby"
            side = side.side
        describe = getattr(side, "status", None)
        if callable(describe):  # what a source says of itself (a schedule's next fire time)
            with contextlib.suppress(Exception):
                out.update(describe())
        return out


def run_daemon(loaded: Loaded, secrets: list[str] | None = None,
               role: WorkerRole | None = None) -> int:
    if role is not None:  # every log line of a worker says which one
        structlog.contextvars.bind_contextvars(worker=role.index)
    collector.tune()  # (this process is the daemon, or one of its workers)
    daemon = Daemon(loaded, secrets=secrets, role=role)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency of uvicorn[standard]
        return asyncio.run(daemon.run())
    return uvloop.run(daemon.run())
