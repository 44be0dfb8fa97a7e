"""The worker side of ``esb run --workers N``: its share of the delivery settings and its
refusal to run without a supervisor."""

from __future__ import annotations

from pathlib import Path

import pytest

from esb.bus.config.model import DeliveryConfig
from esb.bus.runtime.worker_role import METRICS_DIR_ENV, WorkerRole


def role(count: int) -> WorkerRole:
    return WorkerRole(index=1, count=count, listen_fd=3, metrics_dir="/nonexistent")


def test_each_worker_takes_its_share_of_the_rate_limit() -> None:
    delivery = DeliveryConfig.model_validate({"rate_limit": "100/s", "concurrency": 8})
    share = role(4).share(delivery)
    assert share.rate_limit == 25.0
    assert share.concurrency == 8  # bulkheads stay per worker
    assert delivery.rate_limit == 100.0  # the configuration itself is untouched


def test_no_rate_limit_and_one_worker_are_left_as_they_are() -> None:
    unlimited = DeliveryConfig()
    assert role(4).share(unlimited) is unlimited
    limited = DeliveryConfig.model_validate({"rate_limit": "10/s"})
    assert role(1).share(limited) is limited


def test_a_worker_needs_its_supervisors_metrics_directory(monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Path) -> None:
    monkeypatch.delenv(METRICS_DIR_ENV, raising=False)
    with pytest.raises(ValueError, match="--workers"):
        WorkerRole.from_cli(3, 1, 2)
    monkeypatch.setenv(METRICS_DIR_ENV, str(tmp_path))
    assert WorkerRole.from_cli(3, 2, 2) == WorkerRole(2, 2, 3, str(tmp_path))
