"""provider/parallel.py: every call runs, at most `limit` at once, and each outcome is kept by item."""

from __future__ import annotations

import threading
import time

import pytest

from envvars_provider.errors import ProviderError
from envvars_provider.parallel import each


def test_at_most_limit_calls_run_at_once_and_every_one_runs() -> None:
    running, most, lock = 0, 0, threading.Lock()

    def call(item: int) -> int:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.05)
        with lock:
            running -= 1
        return item * 2

    outcome = each(range(40), call, limit=8)
    assert outcome.done == {n: n * 2 for n in range(40)}
    assert not outcome.failed
    assert most == 8


def test_failures_are_kept_per_item_and_the_others_still_run() -> None:
    def call(key: str) -> str:
        if key in ("B", "D"):
            raise ProviderError(f"{key} refused")
        return key.lower()

    outcome = each(["A", "B", "C", "D"], call, limit=3)
    assert outcome.done == {"A": "a", "C": "c"}
    assert {key: str(error) for key, error in outcome.failed.items()} == {"B": "B refused", "D": "D refused"}
    assert outcome.first_failure() == ("B", outcome.failed["B"])
    assert each([], call, limit=3).first_failure() is None


def test_a_bug_in_a_call_is_raised_not_collected() -> None:
    def call(item: int) -> int:
        raise KeyError(item)

    with pytest.raises(KeyError):
        each([1, 2], call, limit=2)
