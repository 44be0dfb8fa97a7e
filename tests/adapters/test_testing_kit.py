"""The adapter test kit: its contract suites pass for the built-in rest adapter and catch
deliberately broken adapters (a raw driver error leaking out of send, misclassified failures,
an acknowledgement before accept() returned, input consumed although the bus was down, a task
left running after stop); its fixtures work."""

from __future__ import annotations

import asyncio
import time
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from esb.adapters.rest.spec import SPEC as REST
from esb.adapters.spec import AdapterSettings, AdapterSpec, HttpRoute, InboundContext
from esb.adapters.testing import (
    EsbDaemon,
    HttpInboundContract,
    HttpOutboundContract,
    RecordingInboundContext,
    RequestContract,
)
from esb.bus.envelope import Envelope
from esb.bus.errors import BusError, BusUnavailable, PermanentError, TransientError

# Until the kit's pytest11 entry point is installed, load its fixtures explicitly.
if not any(ep.name == "esb" for ep in entry_points(group="pytest11")):
    pytest_plugins = ["esb.adapters.testing.plugin"]


# -- the kit agrees with a built-in adapter -----------------------------------------------------


class TestRestOutboundHonoursTheContract(HttpOutboundContract, RequestContract):
    spec = REST
    settings = {"url": "http://127.0.0.1:9/unused"}


class TestRestInboundHonoursTheContract(HttpInboundContract):
    spec = REST
    settings = {"path": "/in/kit", "type": "kit.sample"}
    expected_type = "kit.sample"
    http_path = "/in/kit"


# -- deliberately broken adapters -----------------------------------------------------------


class UrlSettings(AdapterSettings):
    url: str


class LooseSettings(BaseModel):  # does not forbid unknown keys
    url: str


class BrokenOutbound:
    """POSTs the data; ``flaw`` names what it gets wrong."""

    def __init__(self, settings: UrlSettings, ctx: Any, flaw: str) -> None:
        self.settings, self.ctx, self.flaw = settings, ctx, flaw

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        if self.flaw == "closes-pool":
            await self.ctx.http().aclose()

    async def send(self, envelope: Envelope) -> Any:
        headers = {} if self.flaw == "no-key" else {"Idempotency-Key": envelope.key}
        response = await self.ctx.http().post(self.settings.url, content=envelope.data_bytes(),
                                              headers=headers)
        if self.flaw == "leaks-httpx":
            response.raise_for_status()  # a raw httpx.HTTPStatusError escapes
        elif self.flaw == "all-transient" and response.status_code >= 400:
            raise TransientError(f"HTTP {response.status_code}")
        elif self.flaw == "swallows":
            return
        elif response.status_code >= 500:
            raise TransientError(f"HTTP {response.status_code}")
        elif response.status_code >= 400:
            raise PermanentError(f"HTTP {response.status_code}")
        if self.flaw == "returns-status":  # a SendResult: not a flaw
            return response.status_code
        if self.flaw == "returns-response":
            return response


def outbound_spec(flaw: str, model: type[BaseModel] = UrlSettings) -> AdapterSpec:
    return AdapterSpec(name="broken", summary="a broken outbound adapter",
                       outbound_settings=model,  # type: ignore[arg-type]
                       outbound=lambda s, ctx: BrokenOutbound(s, ctx, flaw))


def outbound_suite(flaw: str, model: type[BaseModel] = UrlSettings) -> HttpOutboundContract:
    class Suite(HttpOutboundContract):
        spec = outbound_spec(flaw, model)
        settings = {"url": "http://127.0.0.1:9/unused"}

    return Suite()


def fails(check: Any, *args: Any, match: str) -> None:
    with pytest.raises((AssertionError, pytest.fail.Exception), match=match):
        check(*args)


def test_a_raw_driver_error_leaking_out_of_send_is_caught(tmp_path: Path) -> None:
    suite = outbound_suite("leaks-httpx")
    fails(suite.test_failure_raises_the_matching_delivery_error, "transient", tmp_path,
          match=r"let a raw httpx\.HTTPStatusError escape")
    fails(suite.test_failure_raises_the_matching_delivery_error, "permanent", tmp_path,
          match=r"raise PermanentError\(\.\.\.\) from exc")


def test_a_permanent_failure_reported_as_transient_is_caught(tmp_path: Path) -> None:
    fails(outbound_suite("all-transient").test_failure_raises_the_matching_delivery_error,
          "permanent", tmp_path, match="a permanent failure raised TransientError")


def test_a_swallowed_failure_is_caught(tmp_path: Path) -> None:
    fails(outbound_suite("swallows").test_failure_raises_the_matching_delivery_error,
          "transient", tmp_path, match="returned although the peer failed")


def test_an_adapter_returning_its_status_passes(tmp_path: Path) -> None:
    outbound_suite("returns-status").test_send_returns_on_acceptance(tmp_path)
    outbound_suite("none").test_send_returns_on_acceptance(tmp_path)


def test_returning_something_that_is_no_send_result_is_caught(tmp_path: Path) -> None:
    fails(outbound_suite("returns-response").test_send_returns_on_acceptance, tmp_path,
          match=r"send\(\) returned <Response \[200 OK\]>: return nothing, the protocol's")


def test_a_missing_idempotency_key_is_caught(tmp_path: Path) -> None:
    fails(outbound_suite("no-key").test_send_carries_the_idempotency_key, tmp_path,
          match=r"idempotency keys \[None\]")


def test_closing_the_shared_pool_on_stop_is_caught(tmp_path: Path) -> None:
    fails(outbound_suite("closes-pool").test_stop_releases_resources, tmp_path,
          match="closed the shared HTTP client")


def test_settings_that_accept_unknown_keys_are_caught(tmp_path: Path) -> None:
    fails(outbound_suite("none", LooseSettings).test_settings_validate_and_forbid_unknown_keys,
          tmp_path, match="must forbid unknown keys")


def test_a_spec_without_the_tested_direction_is_caught() -> None:
    suite = outbound_suite("none")
    suite.spec = AdapterSpec(name="Broken Name", summary="x")  # type: ignore[misc]
    fails(suite.test_spec_is_well_formed, match="adapter name 'Broken Name'")


class BrokenInbound:
    """Takes POSTs at /in/broken; ``flaw`` names what it gets wrong."""

    def __init__(self, ctx: InboundContext, flaw: str) -> None:
        self.ctx, self.flaw = ctx, flaw
        self.routes = [HttpRoute("/in/broken", ("POST",), self.handle)]
        self._background: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        if self.flaw == "leaks-task":
            self._background.add(asyncio.create_task(asyncio.sleep(3600), name="forgotten"))

    async def stop(self) -> None:
        return None  # never cancels what start() began

    async def handle(self, request: Request) -> Response:
        env = Envelope(source=self.ctx.name, type="kit.sample", data=await request.json())
        if self.flaw == "acks-early":  # answers before the bus confirmed
            task = asyncio.create_task(self.ctx.accept(env))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            return Response(status_code=202)
        try:
            await self.ctx.accept(env)
        except BusError:
            if self.flaw == "ignores-bus-errors":
                return Response(status_code=202)
            return Response(status_code=503, headers={"Retry-After": "1"})
        return Response(status_code=202)


class PathSettings(AdapterSettings):
    path: str = "/in/broken"


def inbound_suite(flaw: str) -> HttpInboundContract:
    class Suite(HttpInboundContract):
        spec = AdapterSpec(name="broken", summary="a broken inbound adapter",
                           inbound_settings=PathSettings,
                           inbound=lambda s, ctx: BrokenInbound(ctx, flaw))
        expected_type = "kit.sample"
        http_path = "/in/broken"

    return Suite()


def test_the_broken_inbound_without_flaws_passes(tmp_path: Path) -> None:
    suite = inbound_suite("none")
    suite.test_one_input_becomes_one_envelope(tmp_path / "a")
    suite.test_acknowledges_only_after_accept_returned(tmp_path / "b")
    suite.test_bus_unavailable_leaves_the_input_unconsumed(tmp_path / "c")


def test_acknowledging_before_accept_returned_is_caught(tmp_path: Path) -> None:
    fails(inbound_suite("acks-early").test_acknowledges_only_after_accept_returned, tmp_path,
          match="acknowledged while accept\\(\\) had not returned")


def test_consuming_the_input_while_the_bus_is_down_is_caught(tmp_path: Path) -> None:
    fails(inbound_suite("ignores-bus-errors").test_bus_unavailable_leaves_the_input_unconsumed,
          tmp_path, match="raised BusUnavailable but the peer was told")


def test_a_task_left_running_after_stop_is_caught(tmp_path: Path) -> None:
    fails(inbound_suite("leaks-task").test_stop_is_prompt_and_leaves_no_task, tmp_path,
          match="tasks still running after stop\\(\\): forgotten")


# -- the fixtures ---------------------------------------------------------------------------


async def test_inbound_context_publishes_and_can_fail(esb_inbound_context: RecordingInboundContext,
                                                      esb_bus: Any) -> None:
    env = Envelope(source="s", type="t", data={"a": 1})
    accepted = await esb_inbound_context.accept(env)
    assert accepted.id == env.id and esb_inbound_context.accepted == [env]
    assert (await esb_bus.depths())["dest.kit"] == 1
    esb_inbound_context.down = True
    with pytest.raises(BusUnavailable):
        await esb_inbound_context.accept(env)
    assert esb_inbound_context.attempts == 2


async def test_outbound_context_hands_a_live_shared_client(esb_outbound_context: Any,
                                                           tmp_path: Path) -> None:
    client = esb_outbound_context.http()
    assert isinstance(client, httpx.AsyncClient) and not client.is_closed
    assert esb_outbound_context.http() is client
    assert esb_outbound_context.config_dir == tmp_path


def test_daemon_factory_runs_a_real_daemon(esb_daemon_factory: Any) -> None:
    config = {"sources": {"shop": {"adapter": "rest", "path": "/in/shop"}},
              "destinations": {"out": {"adapter": "file", "directory": "out"}}}
    routes = {"all.yaml": {"routes": [{"name": "all", "to": ["out"],
                                       "match": {"type": ["kit.sample"]}}]}}
    daemon: EsbDaemon = esb_daemon_factory(config, routes).start()
    response = httpx.post(f"{daemon.url}/in/shop/kit.sample", json={"n": 1},
                          headers={"Idempotency-Key": "kit-1"}, timeout=10)
    assert response.status_code == 202, response.text
    out = daemon.root / "out" / "kit-1.json"
    for _ in range(600):  # 30 s or more: a fresh daemon's first delivery on a loaded machine
        if out.exists():
            break
        time.sleep(0.05)
    assert out.read_bytes() == b'{"n":1}', daemon.log()
    assert daemon.stop() == 0


def test_a_daemon_that_does_not_come_up_is_not_left_running(esb_daemon_factory: Any) -> None:
    """``start()`` that gives up waiting stops the process it started: the caller has no
    handle to stop it, and it would outlive the test."""
    config = {"sources": {"shop": {"adapter": "rest", "path": "/in/shop"}},
              "destinations": {"out": {"adapter": "file", "directory": "out"}}}
    daemon: EsbDaemon = esb_daemon_factory(config, {}, name="slow")
    with pytest.raises(RuntimeError, match="not ready within"):
        daemon.start(timeout=0.01)  # (no daemon answers /readyz 10 ms after its start)
    assert daemon.proc is not None and daemon.proc.poll() is not None
