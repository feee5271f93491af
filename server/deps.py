"""The dependencies routers share: the caller, the store, and the workloads of each platform.

All `async`: FastAPI runs a plain `def` dependency in its threadpool, a thread hop on every request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials

from envvars_server.auth import bearer_scheme
from envvars_server.errors import Envelope
from envvars_server.machines import Machines
from envvars_server.store import Store

if TYPE_CHECKING:
    from envvars_server.workloads import Workloads


async def current_user(
    request: Request, _credentials: HTTPAuthorizationCredentials | None = Depends(bearer_scheme)
) -> str:
    """The id of the user the request's token belongs to (set by `auth.BearerAuth`)."""
    return str(request.state.user_id)


def user_of(envelope: Envelope) -> Callable[..., Awaitable[str]]:
    """`current_user` for a platform's routes, documenting where its envelope takes the token: the bearer
    scheme, or an API key in the platform's own header (its `token_header`), so that the served document
    tells clients (and the fuzzer) the truth."""
    if envelope.token_header == "authorization":
        return current_user
    scheme = APIKeyHeader(name=envelope.token_header, auto_error=False,
                          scheme_name=envelope.token_header.replace("-", "_") + "_auth")

    async def user(request: Request, _key: str | None = Depends(scheme)) -> str:
        """The id of the user the request's token belongs to (set by `auth.BearerAuth`)."""
        return str(request.state.user_id)

    return user


async def store_of(request: Request) -> Store:
    """The server's store."""
    store: Store = request.app.state.store
    return store


async def workloads_of(request: Request) -> dict[str, Workloads]:
    """Every platform's workloads, by platform name (registered by each platform's `run`)."""
    hosts: dict[str, Workloads] = request.app.state.workloads
    return hosts


def machines_of(platform: str) -> Callable[[Request], Awaitable[Machines]]:
    """A dependency giving `platform`'s workloads layer."""

    async def machines(request: Request) -> Machines:
        found: Machines = request.app.state.workloads[platform].machines
        return found

    return machines
