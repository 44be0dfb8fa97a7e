"""Run ``esb run`` as a real subprocess in a project folder of its own: the test kit's
:class:`~esb.adapters.testing.daemon.EsbDaemon` with the suite's admin token and a longer
default drain."""

from __future__ import annotations

from typing import Any

from esb.adapters.testing.daemon import EsbDaemon

ADMIN_TOKEN = "test-admin-token"


class DaemonProcess(EsbDaemon):
    """A daemon in ``root`` (its cwd), with ``config/esb.yaml`` and ``routes/`` written there."""

    def __init__(self, *args: Any, admin_token: str = ADMIN_TOKEN, **kw: Any) -> None:
        super().__init__(*args, admin_token=admin_token, **kw)

    def stop(self, timeout: float = 60) -> int:
        return super().stop(timeout)
