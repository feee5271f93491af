"""Bearer-token authentication: every platform route needs a token, and each token is one user.

Auth runs as ASGI middleware, before the body is read, so a request without a valid token gets
401 even when its body is malformed. Tokens are looked up by their SHA-256 (never stored plain).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from envvars_server.errors import Envelope, owner, send_error, unread_body
from envvars_server.store import Store

UNAUTHORIZED = "missing or invalid API token: send 'Authorization: Bearer <token>'"

bearer_scheme = HTTPBearer(auto_error=False, scheme_name="bearer_auth")


class BearerAuth:
    """ASGI middleware: resolve the bearer token of requests under the platforms' prefixes."""

    def __init__(self, app: Any, store: Store, envelopes: Sequence[Envelope]):
        self.app = app
        self.store = store
        self.envelopes = envelopes

    def _user(self, headers: list[tuple[bytes, bytes]]) -> str | None:
        raw = next((value for name, value in headers if name == b"authorization"), b"")
        scheme, _, token = raw.decode("latin-1").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        return self.store.user_for_token(token)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or owner(self.envelopes, path) is None:
            await self.app(scope, receive, send)
            return
        user = self._user(scope["headers"])
        if user is None:
            await send_error(send, self.envelopes, path, 401, UNAUTHORIZED,
                             [(b"www-authenticate", b"Bearer"), *unread_body(scope)])
            return
        scope.setdefault("state", {})["user_id"] = user
        await self.app(scope, receive, send)


# `async`: FastAPI runs a plain `def` dependency in its threadpool, a thread hop on every request.
async def current_user(
    request: Request, _credentials: HTTPAuthorizationCredentials | None = Depends(bearer_scheme)
) -> str:
    """The id of the user the request's token belongs to (set by `BearerAuth`)."""
    return str(request.state.user_id)
