"""Long operations (VM boots, commits, exec, file transfers) run on their own threads, a few per user.

Each user may have at most `per_user` of them in flight; one more gets 429 with `Retry-After`.
They run on a thread pool of their own (`threads`), never on the one that serves every other
route, so one user's slow commands cannot delay another user's env-var requests.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import TypeVar

import anyio.to_thread
from anyio import CapacityLimiter
from starlette.exceptions import HTTPException

T = TypeVar("T")
DEFAULT_PER_USER = 8
DEFAULT_THREADS = 64
RETRY_AFTER_S = 1


class UserSlots:
    """Bounded per-user concurrency for blocking operations, on a dedicated thread pool."""

    def __init__(self, per_user: int = DEFAULT_PER_USER, threads: int = DEFAULT_THREADS):
        self.per_user = per_user
        self.threads = threads
        self._in_flight: Counter[str] = Counter()  # touched only from the event loop: no lock
        self._limiter: CapacityLimiter | None = None

    async def run(self, user: str, call: Callable[[], T]) -> T:
        """Run `call` on the pool as one of `user`'s slots, or raise 429 if they are all taken."""
        if self._in_flight[user] >= self.per_user:
            raise HTTPException(429, f"too many VM operations in flight for this user (at most {self.per_user}); "
                                     f"retry after {RETRY_AFTER_S} s", headers={"Retry-After": str(RETRY_AFTER_S)})
        if self._limiter is None:
            self._limiter = CapacityLimiter(self.threads)
        self._in_flight[user] += 1
        try:
            return await anyio.to_thread.run_sync(call, limiter=self._limiter)
        finally:
            self._in_flight[user] -= 1
            if not self._in_flight[user]:
                del self._in_flight[user]
