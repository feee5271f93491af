"""The time limit of the operation being run: the engine's `customTimeouts` for a create, update or delete.

The servicer sets it around each call; a resource that waits for its platform (a restart to finish)
asks how long it has left, with its own default when the program set no timeout.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextvars import ContextVar

_ends: ContextVar[float | None] = ContextVar("envvars_deadline", default=None)


@contextlib.contextmanager
def within(seconds: float) -> Iterator[None]:
    """Run the block with `seconds` as its limit (0: the engine gave none)."""
    token = _ends.set(time.monotonic() + seconds if seconds > 0 else None)
    try:
        yield
    finally:
        _ends.reset(token)


def ends(default: float) -> float:
    """The monotonic time the operation must end by: its limit, or `default` seconds from now."""
    given = _ends.get()
    return given if given is not None else time.monotonic() + default
