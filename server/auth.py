"""Token authentication: every platform route needs a token, and each token is one user.

Each platform says where its token goes (its envelope's `token_header`): `Authorization: Bearer
<token>` by default, or the bare token in a header of its own such as `X-API-Key`; the same user
tokens work with every platform.
Auth runs as ASGI middleware, before the body is read, so a request without a valid token gets
401 even when its body is malformed. Tokens are looked up by their SHA-256 (never stored plain).
A request another replica forwarded carries no token: its user comes from the signed forwarding
header, verified before this middleware runs (`cluster.forwarding.PeerAuth`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio
from fastapi.security import HTTPBearer

from envvars_server.errors import Envelope, owner, send_error, unread_body
from envvars_server.store import Store


def unauthorized(envelope: Envelope, sent: bool) -> str:
    """Why a request without a known token is refused, and how to send one."""
    how = "'Authorization: Bearer <token>'" if envelope.token_header == "authorization" else \
        f"the token in the '{envelope.token_header}' header"
    return f"{'invalid' if sent else 'missing'} API token: send {how}"

VERIFIED_USER = "envvars.verified_user"  # scope key: the user of a request a cluster peer forwarded, signature verified

bearer_scheme = HTTPBearer(auto_error=False, scheme_name="bearer_auth")


class BearerAuth:
    """ASGI middleware: resolve the bearer token of requests under the platforms' prefixes."""

    def __init__(self, app: Any, store: Store, envelopes: Sequence[Envelope]):
        self.app = app
        self.store = store
        self.envelopes = envelopes

    @staticmethod
    def _token(envelope: Envelope, headers: list[tuple[bytes, bytes]]) -> str:
        """The token the request presents the platform's way, or ''."""
        wanted = envelope.token_header.lower().encode()
        raw = next((value for name, value in headers if name == wanted), b"").decode("latin-1").strip()
        if envelope.token_header != "authorization":
            return raw
        scheme, _, token = raw.partition(" ")
        return token.strip() if scheme.lower() == "bearer" else ""

    async def _user(self, token: str) -> str | None:
        """The token's user: known already, or read off the event loop (a database server may take a while)."""
        return self.store.cached_user(token) or await anyio.to_thread.run_sync(self.store.user_for_token, token)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        envelope = owner(self.envelopes, path) if scope["type"] == "http" else None
        if envelope is None:
            await self.app(scope, receive, send)
            return
        token = self._token(envelope, scope["headers"])
        user = scope.get(VERIFIED_USER) or (await self._user(token) if token else None)
        if user is None:
            code = envelope.invalid_token_code if token else None
            await send_error(send, self.envelopes, path, 401, unauthorized(envelope, bool(token)),
                             [(b"www-authenticate", envelope.challenge.encode()), *unread_body(scope)], code=code)
            return
        scope.setdefault("state", {})["user_id"] = user
        await self.app(scope, receive, send)
