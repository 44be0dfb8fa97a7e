"""The admin API's ``since`` parameter: one rule for trace queries and dead-letter listings."""

from __future__ import annotations

from datetime import timedelta

import pytest

from esb.bus.runtime.admin_ops import lookback


def test_since_is_a_positive_duration_of_at_most_400_days() -> None:
    assert lookback("90m") == timedelta(minutes=90)
    assert lookback("400d") == timedelta(days=400)
    for bad in ("0s", "401d", "99999999999d"):
        with pytest.raises(ValueError, match=r"more than 0 and at most 400d"):
            lookback(bad)
    with pytest.raises(ValueError, match="not a duration"):
        lookback("soon")
