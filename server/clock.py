"""The server's clock for expiries, which tests (a server started with `--faults`) may move forward."""

from __future__ import annotations

import threading
import time

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field


class Clock:
    """Wall-clock time plus whatever tests advanced it by."""

    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        """Seconds since the epoch, as the server sees them."""
        with self._lock:
            return time.time() + self._offset

    def advance(self, seconds: float) -> float:
        """Move the clock forward by `seconds`; the new time."""
        with self._lock:
            self._offset += seconds
        return self.now()


class Advance(BaseModel):
    """How far to move the server's clock."""

    seconds: float = Field(gt=0, le=10 * 365 * 86400)


class Moved(BaseModel):
    """The server's time after the move (seconds since the epoch)."""

    now: float


def router(prefix: str) -> APIRouter:
    """TEST ONLY (`--faults`): `POST <prefix>/clock` moves the server's clock forward (expiries come sooner)."""
    routes = APIRouter(prefix=prefix, tags=["test-only"])

    @routes.post("/clock", operation_id="advance_clock", response_model=Moved)
    def advance(body: Advance, request: Request) -> Moved:
        """TEST ONLY: move the server's clock forward by `seconds`."""
        return Moved(now=request.app.state.clock.advance(body.seconds))

    return routes
