"""Many independent requests at once, a few at a time: for APIs that take one variable per request."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from envvars_provider.errors import ProviderError

K = TypeVar("K", bound=Hashable)
R = TypeVar("R")


@dataclass
class Outcome(Generic[K, R]):
    """What each call gave, by item: its result, or the provider error it raised."""

    done: dict[K, R] = field(default_factory=dict)
    failed: dict[K, ProviderError] = field(default_factory=dict)

    def first_failure(self) -> tuple[K, ProviderError] | None:
        """One failure, the same whichever call finished first (the smallest item), or None."""
        if not self.failed:
            return None
        item = min(self.failed, key=str)
        return item, self.failed[item]


def each(items: Iterable[K], call: Callable[[K], R], limit: int) -> Outcome[K, R]:
    """`call(item)` for every item, at most `limit` running at once; every call runs even when others fail.

    Provider errors are collected per item; anything else (a bug) is raised once all calls ended.
    """
    pending = list(items)
    outcome: Outcome[K, R] = Outcome()
    if not pending:
        return outcome
    if len(pending) == 1 or limit <= 1:
        for item in pending:
            try:
                outcome.done[item] = call(item)
            except ProviderError as exc:
                outcome.failed[item] = exc
        return outcome
    with ThreadPoolExecutor(max_workers=min(limit, len(pending)), thread_name_prefix="envvars-request") as pool:
        futures = {item: pool.submit(call, item) for item in pending}
    for item, future in futures.items():
        try:
            outcome.done[item] = future.result()
        except ProviderError as exc:
            outcome.failed[item] = exc
    return outcome
