"""How a daemon process runs CPython's cyclic garbage collector: by time, not by count alone.

Reference counting frees what a message leaves behind, as long as nothing makes a reference
cycle. The cyclic collector is for what does, and CPython starts it by a count: a young
collection at 700 net new container objects. The objects of the messages a worker holds in
flight are more than that, so at the default a collection ran every few messages and walked
all of them: ~4.6 % of a pass-through worker's CPU (docs/performance.md, round eleven).

So the count that starts a young collection is raised (:data:`YOUNG_THRESHOLD`), and
:func:`pace` collects on a clock instead. It makes the generations young and middle every
second once more than CPython's default count of objects has come, and a full collection
every :data:`FULL_EVERY` ticks. Cycles made on some path nobody has found yet (a client that
makes one per request, say) then live about a second, not until 10,000 objects pile up.
The message paths are kept free of cycles anyway (tests hold them to none).
"""

from __future__ import annotations

import asyncio
import gc

#: Net new container objects that start a young collection by count (CPython's default: 700).
YOUNG_THRESHOLD = 10_000
#: The count above which :func:`pace` collects at its next tick (CPython's own threshold).
DEFAULT_YOUNG = 700
#: Seconds between :func:`pace`'s ticks.
TICK = 1.0
#: A full collection every this many ticks (when objects came meanwhile).
FULL_EVERY = 60


def tune() -> None:
    """Raise the count that starts a young collection (process-wide, as logging is)."""
    gc.set_threshold(YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def collect_if_due(tick: int) -> int | None:
    """One tick: the generation collected, or None when too little came to bother."""
    if gc.get_count()[0] <= DEFAULT_YOUNG:
        return None
    generation = 2 if tick % FULL_EVERY == 0 else 1
    gc.collect(generation)
    return generation


async def pace() -> None:
    """Collect on the clock until cancelled."""
    tick = 0
    while True:
        await asyncio.sleep(TICK)
        tick += 1
        collect_if_due(tick)
