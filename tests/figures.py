"""The reliability suite's figures (cases tried, faults injected, items lost), shown at the end of the run.

`make soak` sets ENVVARS_SOAK=1, which scales every count from its `make test` value to its soak value.
"""

from __future__ import annotations

import os
from typing import Any

SOAK = os.environ.get("ENVVARS_SOAK", "") not in ("", "0")
_figures: list[str] = []


def scaled(normal: int, soak: int) -> int:
    """`normal` in `make test`, `soak` in `make soak`."""
    return soak if SOAK else normal


def figure(test: str, **counts: Any) -> str:
    """Record one test's figure, e.g. `figure("crash", trials=50, lost=0)`; shown after the run's summary."""
    line = f"{test}: " + ", ".join(f"{name.replace('_', ' ')} {value}" for name, value in counts.items())
    _figures.append(line)
    print(line)  # also in the test's captured output
    return line


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print every figure recorded during the run, whatever the verbosity."""
    if _figures:
        terminalreporter.section(f"reliability figures ({'soak' if SOAK else 'make test'} setting)")
        for line in _figures:
            terminalreporter.write_line(line)
