"""How hard the suite's searching tests search: the examples a property test (Hypothesis)
tries and how long a fuzz run lasts.

Every run of the suite searches at the default strength, sized so the run stays quick while
still finding what each test is after; ``pytest --long`` searches at full strength (more
examples, longer fuzz runs), as before a release or after changing what a test covers.
``tests/conftest.py`` sets :data:`LONG` from the option before any test module is imported.
"""

from __future__ import annotations

#: True under ``--long``.
LONG = False


def examples(default: int, long: int) -> int:
    """A property test's ``max_examples``: `default` in every run, `long` under ``--long``."""
    return long if LONG else default


def seconds(default: float, long: float) -> float:
    """A search's duration in seconds: `default` in every run, `long` under ``--long``."""
    return long if LONG else default
