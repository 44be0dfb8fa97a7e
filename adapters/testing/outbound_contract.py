"""The outbound half of the adapter contract, as tests a plugin reuses by subclassing.

::

    class TestMyOutbound(OutboundContract):
        spec = SPEC
        settings = {"url": "http://unused.invalid/"}

        @contextlib.asynccontextmanager
        async def accepting_peer(self):
            ...  # start a destination that takes everything
            yield OutboundPeer(settings={"url": url}, delivered=lambda: seen)

        @contextlib.asynccontextmanager
        async def failing_peer(self, kind):
            ...  # "transient": e.g. answers 503; "permanent": e.g. answers 400
            yield OutboundPeer(settings={"url": url})

What the tests prove: ``send`` returns once the peer took the envelope; a side that answers
requests (has ``request``, for request/reply routes; its suite is a :class:`RequestContract`)
returns the peer's answer as a :class:`~esb.bus.reply.Reply` and fails like ``send``; a
transient failure raises :class:`~esb.bus.errors.TransientError` and a permanent one
:class:`~esb.bus.errors.PermanentError`, never a raw driver exception (which the runtime can
only guess at); the envelope's idempotency key reaches the peer; ``start``/``stop`` are
idempotent and ``stop`` leaves no task running and does not close the shared HTTP pool.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import httpx
import pytest

from esb.adapters.spec import Outbound, SendResult
from esb.adapters.testing.context import http_client, outbound_context
from esb.adapters.testing.spec_contract import (
    SpecContract,
    describe_tasks,
    leftover_tasks,
    maybe_await,
)
from esb.bus.envelope import Envelope
from esb.bus.errors import DeliveryError, PermanentError, TransientError
from esb.bus.reply import Reply

FailureKind = Literal["transient", "permanent"]
_EXPECTED: dict[str, type[DeliveryError]] = {"transient": TransientError,
                                             "permanent": PermanentError}


@dataclass
class Delivered:
    """One envelope as the peer received it."""

    #: The idempotency key the peer saw (``None`` when its protocol carries none).
    key: str | None
    body: Any = None


@dataclass
class OutboundPeer:
    """A destination set up by a peer hook, and how to reach and inspect it."""

    #: Settings that point the side at this peer; merged over the class's ``settings``.
    settings: dict[str, Any] = field(default_factory=dict)
    #: What the peer took so far (plain or async callable).
    delivered: Callable[[], Any] = list
    #: The envelope to send to this peer (default: the test's ``sample_envelope()``); a
    #: permanent failure may be in the data (e.g. a record that does not fit the format).
    envelope: Envelope | None = None


class OutboundContract(SpecContract):
    """Contract tests for an outbound side. Subclass as ``Test...`` and fill in the hooks."""

    direction: ClassVar[str] = "outbound"
    #: False when the protocol has no place for an idempotency key (the test is skipped, and
    #: the docs of the adapter should say that retries may duplicate).
    carries_idempotency_key: ClassVar[bool] = True
    #: Seconds ``send`` may take against the test peers (the runtime's delivery timeout).
    send_timeout: ClassVar[float] = 10.0

    # -- hooks --------------------------------------------------------------------------------

    def accepting_peer(self) -> AbstractAsyncContextManager[OutboundPeer]:
        """Hook: an async context manager that runs a destination accepting everything and
        yields its :class:`OutboundPeer` (with ``delivered`` reporting what arrived)."""
        raise NotImplementedError("accepting_peer(): start a peer that accepts everything")

    def failing_peer(self, kind: FailureKind) -> AbstractAsyncContextManager[OutboundPeer | None]:
        """Hook: an async context manager yielding a peer that fails the way ``kind`` says:

        * ``"transient"`` — retrying later can succeed (HTTP 503/429, a timeout, a refused
          connection, a share that is not mounted);
        * ``"permanent"`` — retrying cannot help (HTTP 400/422, a SOAP Client fault, data the
          format cannot hold: set ``OutboundPeer.envelope``).

        Yield ``None`` when the protocol cannot produce that kind (the test is skipped)."""
        raise NotImplementedError("failing_peer(kind): start a peer that fails like `kind`")

    def sample_envelope(self) -> Envelope:
        """Hook: an envelope this side can deliver. Default: a small JSON order."""
        return Envelope(source="esb-test-kit", type="kit.sample",
                        datacontenttype="application/json",
                        data={"id": "A-1", "qty": 2, "note": "contract test"})

    def assert_released(self, side: Outbound) -> None:
        """Hook: after ``stop``, assert adapter-specific resources are released (files
        closed, driver sessions ended ...). Default: nothing beyond the kit's own checks."""

    # -- harness ------------------------------------------------------------------------------

    def _side(self, peer: OutboundPeer, client: httpx.AsyncClient) -> Outbound:
        model = self._model()
        settings = model.model_validate({**self.settings, **peer.settings})
        assert self.spec.outbound is not None
        side = self.spec.outbound(settings, outbound_context(client, self.tmp_path))
        assert isinstance(side, Outbound), \
            f"the outbound factory returned {type(side).__name__}: it needs start, send, stop"
        return side

    def _envelope(self, peer: OutboundPeer, **changes: Any) -> Envelope:
        env = peer.envelope or self.sample_envelope()
        return env.model_copy(update=changes) if changes else env

    async def _send(self, side: Outbound, envelope: Envelope) -> SendResult:
        try:
            return await asyncio.wait_for(side.send(envelope), self.send_timeout)
        except TimeoutError:
            pytest.fail(f"send() did not return within {self.send_timeout:g}s", pytrace=False)

    # -- the tests ----------------------------------------------------------------------------

    def test_send_returns_on_acceptance(self, tmp_path: Path) -> None:
        async def act(side: Outbound, peer: OutboundPeer) -> None:
            result = await self._send(side, self._envelope(peer))
            assert result is None or (isinstance(result, int | str)
                                      and not isinstance(result, bool)), \
                (f"send() returned {result!r}: return nothing, the protocol's status "
                 "code (int) or a short description (str) — a SendResult")
            delivered = list(await maybe_await(peer.delivered()))
            assert len(delivered) == 1, \
                f"the peer took {len(delivered)} deliveries for one send(), expected 1"

        self._against_peer(None, tmp_path, act)

    def test_send_carries_the_idempotency_key(self, tmp_path: Path) -> None:
        if not self.carries_idempotency_key:
            pytest.skip("the protocol carries no idempotency key (carries_idempotency_key)")

        async def act(side: Outbound, peer: OutboundPeer) -> None:
            env = self._envelope(peer, idempotencykey="kit-key-0001")
            await self._send(side, env)
            keys = [d.key for d in await maybe_await(peer.delivered())]
            assert keys == ["kit-key-0001"], \
                (f"the peer saw idempotency keys {keys}; send the envelope's "
                 "`key` so a redelivery after a lost answer is recognised")

        self._against_peer(None, tmp_path, act)

    @pytest.mark.parametrize("kind", ["transient", "permanent"])
    def test_failure_raises_the_matching_delivery_error(self, kind: FailureKind,
                                                        tmp_path: Path) -> None:
        async def act(side: Outbound, peer: OutboundPeer) -> None:
            await self._expect_failure(side, self._envelope(peer), kind)

        self._against_peer(kind, tmp_path, act)

    def _against_peer(self, kind: FailureKind | None, tmp_path: Path,
                      act: Callable[[Outbound, OutboundPeer], Any]) -> None:
        """Start a side against ``failing_peer(kind)`` (``accepting_peer()`` when ``kind`` is
        None), ``await act(side, peer)``, stop it."""

        async def scenario() -> None:
            peers = self.accepting_peer() if kind is None else self.failing_peer(kind)
            async with peers as peer, http_client() as client:
                if peer is None:
                    if kind is None:
                        pytest.fail("accepting_peer() yielded None: it must yield a peer")
                    pytest.skip(f"failing_peer({kind!r}) yields None: cannot be produced")
                side = self._side(peer, client)
                await side.start()
                try:
                    await act(side, peer)
                finally:
                    await side.stop()

        self.run_async(tmp_path, scenario)

    async def _expect_failure(self, side: Outbound, envelope: Envelope, kind: str) -> None:
        expected = _EXPECTED[kind]
        try:
            await self._send(side, envelope)
        except expected:
            return
        except DeliveryError as exc:
            pytest.fail(f"a {kind} failure raised {type(exc).__name__} ({exc}); expected "
                        f"{expected.__name__}", pytrace=False)
        except Exception as exc:
            pytest.fail(f"send() let a raw {type(exc).__module__}.{type(exc).__qualname__} "
                        f"escape ({exc}) for a {kind} failure: translate driver errors at the "
                        f"adapter edge (`raise {expected.__name__}(...) from exc`)",
                        pytrace=False)
        pytest.fail(f"send() returned although the peer failed ({kind}): the runtime would "
                    "ack the envelope and it would be lost", pytrace=False)

    def test_start_and_stop_are_idempotent(self, tmp_path: Path) -> None:
        async def scenario() -> None:
            async with self.accepting_peer() as peer, http_client() as client:
                await self._side(peer, client).stop()  # stop before start: a failed startup
                side = self._side(peer, client)
                await side.start()
                await side.start()
                await self._send(side, self._envelope(peer))
                await side.stop()
                await side.stop()
                delivered = list(await maybe_await(peer.delivered()))
                assert len(delivered) == 1, \
                    f"one send() after start() twice gave {len(delivered)} deliveries"

        self.run_async(tmp_path, scenario)

    def test_stop_releases_resources(self, tmp_path: Path) -> None:
        async def scenario() -> None:
            async with self.accepting_peer() as peer, http_client() as client:
                before = set(asyncio.all_tasks())
                side = self._side(peer, client)
                await side.start()
                await self._send(side, self._envelope(peer))
                await side.stop()
                left = await leftover_tasks(before)
                assert not left, f"tasks still running after stop(): {describe_tasks(left)}"
                assert not client.is_closed, \
                    "stop() closed the shared HTTP client: the pool belongs to the daemon"
                self.assert_released(side)

        self.run_async(tmp_path, scenario)


class RequestContract(OutboundContract):
    """The outbound contract of a side that also answers requests (has ``request``, for
    request/reply routes): everything :class:`OutboundContract` checks, plus that ``request``
    returns the peer's answer as a :class:`~esb.bus.reply.Reply`, carries the idempotency key
    and fails like ``send``. A side serving one-way routes only uses ``OutboundContract``."""

    def _requesting(self, side: Outbound) -> Any:
        request = getattr(side, "request", None)
        if request is None:
            pytest.fail("the suite is a RequestContract but the side has no request(): a "
                        "side that serves one-way routes only uses OutboundContract",
                        pytrace=False)
        return request

    def test_request_returns_the_reply(self, tmp_path: Path) -> None:
        async def act(side: Outbound, peer: OutboundPeer) -> None:
            request = self._requesting(side)
            env = self._envelope(peer, idempotencykey="kit-key-0002")
            reply = await asyncio.wait_for(request(env), self.send_timeout)
            assert isinstance(reply, Reply), \
                f"request() returned {type(reply).__name__}, not a Reply"
            assert isinstance(reply.body, bytes), "Reply.body must be bytes"
            assert reply.status is None or isinstance(reply.status, int)
            delivered = list(await maybe_await(peer.delivered()))
            assert len(delivered) == 1, \
                f"the peer took {len(delivered)} calls for one request(), expected 1"
            if self.carries_idempotency_key:
                assert delivered[0].key == "kit-key-0002", \
                    "request() must carry the envelope's key like send()"
            self.check_reply(reply)

        self._against_peer(None, tmp_path, act)

    def check_reply(self, reply: Reply) -> None:
        """Hook: assert what the accepting peer's answer looks like as a Reply."""

    @pytest.mark.parametrize("kind", ["transient", "permanent"])
    def test_request_failure_raises_the_matching_delivery_error(self, kind: FailureKind,
                                                                tmp_path: Path) -> None:
        async def act(side: Outbound, peer: OutboundPeer) -> None:
            request = self._requesting(side)
            with pytest.raises(_EXPECTED[kind]):
                await asyncio.wait_for(request(self._envelope(peer)), self.send_timeout)

        self._against_peer(kind, tmp_path, act)
