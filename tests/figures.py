"""The reliability suite's figures (cases tried, faults injected, items lost), shown at the end of the run.

A figure rides on its test's report (`user_properties`), so it reaches the summary from any worker
when `make test` spreads the modules over the cores. `make soak` sets ENVVARS_SOAK=1, which scales
every count from its `make test` value to its soak value.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

SOAK = os.environ.get("ENVVARS_SOAK", "") not in ("", "0")
_KEY = "envvars-figure"
_current: list[pytest.Item] = []  # the test running in this process
_figures: list[str] = []  # every figure reported to this process


def scaled(normal: int, soak: int) -> int:
    """`normal` in `make test`, `soak` in `make soak`."""
    return soak if SOAK else normal


def figure(test: str, **counts: Any) -> str:
    """Record one test's figure, e.g. `figure("crash", trials=50, lost=0)`; shown after the run's summary."""
    line = f"{test}: " + ", ".join(f"{name.replace('_', ' ')} {value}" for name, value in counts.items())
    _current[-1].user_properties.append((_KEY, line))
    print(line)  # also in the test's captured output
    return line


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    """Know which test a figure belongs to."""
    _current.append(item)
    try:
        return (yield)
    finally:
        _current.pop()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Collect a test's figures once its teardown is over (a module's tally is taken in its last teardown),
    whichever process ran it."""
    if report.when == "teardown":
        _figures.extend(value for key, value in report.user_properties if key == _KEY)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print every figure recorded during the run, whatever the verbosity."""
    if _figures:
        terminalreporter.section(f"reliability figures ({'soak' if SOAK else 'make test'} setting)")
        for line in _figures:
            terminalreporter.write_line(line)
