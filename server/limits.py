"""A limit on request bodies: larger ones get 413 in the owning platform's envelope, before they are parsed.

No platform accepts a body anywhere near the default (a whole Vers set is at most a few MiB of
keys and values only in theory; real sets are kilobytes), and parsing an unbounded body is the
cheapest way to exhaust the server's memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio
from starlette.exceptions import HTTPException as StarletteHTTPException

from envvars_server.errors import Envelope, send_error

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
# What is left of a refused body is read and dropped before the 413 (at most this much, for at most this long):
# a peer still sending it when the connection closes may get a reset in place of the answer, and a proxy
# (HAProxy) then drops the answer.
DRAIN_BYTES = 16 * 1024 * 1024
DRAIN_S = 5.0


class BodyTooLarge(StarletteHTTPException):
    """Raised from `receive` once a body without Content-Length passes the limit; rendered as 413."""

    def __init__(self, max_bytes: int):
        super().__init__(413, f"request body too large: the limit is {max_bytes} bytes")


class BodyLimit:
    """ASGI middleware: refuse bodies over `max_bytes`, by Content-Length or by counting a chunked body."""

    def __init__(self, app: Any, max_bytes: int, envelopes: Sequence[Envelope]):
        self.app = app
        self.max_bytes = max_bytes
        self.envelopes = envelopes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = next((value for name, value in scope["headers"] if name == b"content-length"), None)
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await drain(receive)
            await self._refuse(scope, send)
            return
        received = 0
        started = False

        async def counting_receive() -> dict[str, Any]:
            nonlocal received
            message: dict[str, Any] = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                if message.get("more_body", False):
                    await drain(receive)
                raise BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:  # normally rendered by the app's handler; here when raised outside a route
            if started:
                raise
            await self._refuse(scope, send)

    async def _refuse(self, scope: dict[str, Any], send: Any) -> None:
        message = str(BodyTooLarge(self.max_bytes).detail)
        # Past what `drain` reads the body is never read, so the connection cannot carry another request.
        await send_error(send, self.envelopes, scope.get("path", ""), 413, message, [(b"connection", b"close")])


async def drain(receive: Any) -> None:
    """Read and drop the rest of a request's body, within `DRAIN_BYTES` and `DRAIN_S`."""
    drained = 0
    with anyio.move_on_after(DRAIN_S):
        while drained <= DRAIN_BYTES:
            message: dict[str, Any] = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                return
            drained += len(message.get("body", b""))
