"""Readiness: what ``/readyz`` answers. A 200 means this daemon accepts messages now: a load
balancer sends it traffic on that word, so every part an inbound message needs on its way to
a 202 must be up, not only the bus link:

* the daemon has started (the deployed route set installed, every part started) and is not
  stopping;
* the bus: its link connected and not suspect, its confirm channel open;
* the idempotency log (on RabbitMQ): a keyed message is claimed there before it is published,
  over a link of its own, which a lost broker drops and rebuilds on its own schedule;
* with ``esb run --workers N``, every worker serving the daemon's address (see
  :class:`~esb.bus.runtime.worker_board.WorkerBoard`): ``/readyz`` is answered by whichever
  worker the connection reaches, and the next request may land on another.

A check answers the reason it is not ready (for the 503's body and the operator), or ``None``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

#: One condition: a name for the reason, and whether it holds now.
Condition = tuple[str, Callable[[], bool]]


@dataclass(frozen=True)
class Readiness:
    """``conditions`` in order, the first that fails being the reason; ``others`` (when set)
    adds what the other workers of this daemon reported."""

    conditions: Sequence[Condition]
    others: Callable[[], str | None] | None = None

    def own(self) -> str | None:
        """Why this process does not accept messages now, or ``None`` when it does."""
        return next((reason for reason, holds in self.conditions if not holds()), None)

    def __call__(self) -> str | None:
        """Why the daemon (this process and, with workers, every other) does not accept
        messages now, or ``None`` when it does."""
        reason = self.own()
        if reason is None and self.others is not None:
            reason = self.others()
        return reason
