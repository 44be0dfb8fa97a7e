"""The daemon's pacing of the cyclic garbage collector (:mod:`esb.bus.runtime.collector`)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from esb.bus.runtime import collector


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the collector frees it


@pytest.fixture
def by_hand() -> Iterator[None]:
    """Automatic collections off, so the test decides when one runs."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def test_a_tick_frees_cycles_once_enough_objects_came(by_hand: None) -> None:
    first = Node()
    gone = weakref.ref(first)
    del first
    assert collector.collect_if_due(1) is None  # too little came: left for later
    assert gone() is not None
    kept = [Node() for _ in range(collector.DEFAULT_YOUNG)]  # objects came, in use
    assert collector.collect_if_due(2) == 1
    assert gone() is None and len(kept) == collector.DEFAULT_YOUNG


def test_every_so_many_ticks_the_collection_is_full(by_hand: None) -> None:
    _ = [Node() for _ in range(collector.DEFAULT_YOUNG + 1)]
    assert collector.collect_if_due(collector.FULL_EVERY) == 2


def test_tune_raises_only_the_young_threshold() -> None:
    before = gc.get_threshold()
    try:
        collector.tune()
        assert gc.get_threshold() == (collector.YOUNG_THRESHOLD, *before[1:])
    finally:
        gc.set_threshold(*before)
