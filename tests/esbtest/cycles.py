"""Counting what a piece of code leaves in reference cycles (garbage only the cyclic collector
frees; the daemon runs it at its own pace, :mod:`esb.bus.runtime.collector`)."""

from __future__ import annotations

import gc
from types import TracebackType


class CyclesLeft:
    """``with CyclesLeft() as cycles: ...`` runs the block with automatic collections off;
    afterwards ``cycles.left`` is how many objects the block left in reference cycles."""

    left = 0

    def __enter__(self) -> CyclesLeft:
        gc.collect()
        gc.disable()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            self.left = gc.collect()
        finally:
            gc.enable()
