"""The ``tests:`` cases of a route set, run inside the daemon for ``POST /admin/routes/test``
(the console's "run tests" button): compiled against the daemon's own configuration, exactly
as ``esb routes test PATH`` does offline; nothing is published."""

from __future__ import annotations

import asyncio
from typing import Any

from esb.bus.config.loader import Loaded
from esb.bus.routing.from_config import router_for
from esb.bus.routing.routeset import parse_route_files
from esb.bus.routing.trial import run_cases


class RouteTester:
    """Runs route files' test cases against ``loaded``'s sources, destinations and named
    transformers. ``message_file:`` paths resolve against the configured routes folder."""

    def __init__(self, loaded: Loaded) -> None:
        self.loaded = loaded

    def run_now(self, files: dict[str, str]) -> dict[str, Any]:
        """Raises :class:`~esb.bus.errors.ConfigError` when the files do not compile."""
        cfg = self.loaded.config
        folder = cfg.resolve(cfg.routes)
        base = folder if folder.is_dir() else folder.parent
        rs = parse_route_files(files, limits=cfg.limits.yaml.limits)
        router = router_for(cfg, rs)
        results = run_cases(router, rs, base=base, sources=cfg.sources)
        failed = sum(1 for r in results if not r.passed)
        return {"cases": [r.to_dict() for r in results], "passed": len(results) - failed,
                "failed": failed}

    async def run(self, files: dict[str, str]) -> dict[str, Any]:
        """:meth:`run_now` off the event loop (compiling stylesheets takes a while)."""
        return await asyncio.to_thread(self.run_now, files)
