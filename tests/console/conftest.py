"""Where the console's browser tests put their screenshots (printed at the end of the run)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

SCREENSHOTS = Path(os.environ.get("ESB_SCREENSHOTS")
                   or Path(tempfile.gettempdir()) / "esb-console-screenshots")


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if SCREENSHOTS.is_dir() and any(SCREENSHOTS.iterdir()):
        terminalreporter.write_line(f"console screenshots: {SCREENSHOTS} "
                                    "(set ESB_SCREENSHOTS to choose the folder)")
