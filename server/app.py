"""The FastAPI application: the platforms' routers, bearer auth and per-platform error envelopes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from envvars.rules import SetLimits
from envvars_server import at_rest, chain, clock, workloads
from envvars_server.auth import BearerAuth
from envvars_server.cluster import Elsewhere, Membership, NodeConfig
from envvars_server.cluster.forwarding import TIMEOUT, PeerAuth, forwarder
from envvars_server.datadir import secure_data_dir
from envvars_server.errors import install_error_handlers
from envvars_server.faults import FaultInjector
from envvars_server.inputs import StrictInput
from envvars_server.limits import DEFAULT_MAX_BODY_BYTES, BodyLimit
from envvars_server.platform import Runtime
from envvars_server.platforms import PLATFORMS
from envvars_server.store import open_store


def create_app(
    data_dir: Path, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, faults: bool = False,
    set_limits: SetLimits | None = None, database: str | None = None, at_rest_key: Path | None = None,
    node: NodeConfig | None = None,
    **options: Any,
) -> FastAPI:
    """Build the server for one data dir (SQLite file, workloads' disks); `faults` is for tests only.

    `database`, a `postgresql://` URL, puts the store on that PostgreSQL database instead of the SQLite file.
    `at_rest_key` is the file of the key that seals values at rest and apps' keys (default: `at-rest.key` in the
    data dir): every server on one database needs the same. `node` makes the server a replica among others on
    that database (`cluster`).

    `options` reach every platform's `run` (`max_workloads_per_user`, `max_procs`, Vers' `vm_slots`).
    """
    if node is not None and not database:
        raise ValueError("a cluster node needs a database the replicas share (--database postgresql://...)")
    secure_data_dir(data_dir)  # the workloads' disks, whichever the store
    store = open_store(data_dir, database, set_limits)
    cipher = at_rest.checked_cipher(at_rest_key or data_dir / at_rest.KEY_FILE, store)
    ledger = chain.Ledger(store)
    ledger.import_legacy(data_dir)
    server_clock = clock.Clock()
    membership = Membership(store, node)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = Runtime(app, store, data_dir, cipher, options, clock=server_clock,
                          workload_options={platform.name: platform.workload_options for platform in PLATFORMS},
                          membership=membership)
        app.state.workloads = runtime.workloads
        async with AsyncExitStack() as running:
            running.callback(store.close)  # last, once every platform has stopped
            membership.start()  # first: the node is known (and its workloads its own) before any recovers
            running.callback(membership.stop)
            if node is not None:
                app.state.peers = await running.enter_async_context(httpx.AsyncClient(timeout=TIMEOUT))
            for platform in PLATFORMS:
                if platform.run is not None:
                    running.enter_context(platform.run(runtime))
            yield

    app = FastAPI(
        title="envvars reference server",
        description="The documented env-var APIs of " + ", ".join(platform.title for platform in PLATFORMS)
        + " on loopback, and a neutral surface (`/_envvars/v1`) to make the workloads their variables reach.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.store = store
    app.state.clock = server_clock
    app.state.chain = ledger
    envelopes = [platform.envelope for platform in PLATFORMS] + [workloads.ENVELOPE]
    for platform in PLATFORMS:
        for router in platform.routers:
            app.include_router(router)
    app.include_router(workloads.router)
    app.include_router(chain.router)
    if faults:
        app.include_router(clock.router(workloads.PREFIX))
    install_error_handlers(app, envelopes)
    if node is not None:
        app.add_exception_handler(Elsewhere, forwarder(node, envelopes))
    workloads.document_platforms(app, [platform.name for platform in PLATFORMS],
                                 {platform.name: platform.workload_options for platform in PLATFORMS
                                  if platform.workload_options})
    # Outermost last: faults (tests only), auth before any body is read, the body limit, strict input.
    app.add_middleware(StrictInput, envelopes=envelopes)  # reads whole bodies: only inside the body limit
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes, envelopes=envelopes)
    app.add_middleware(BearerAuth, store=store, envelopes=envelopes)
    if node is not None:  # outside token auth: a forwarded request's user comes from its verified signature
        app.add_middleware(PeerAuth, node=node, envelopes=envelopes, max_body_bytes=max_body_bytes)
    if faults:
        app.add_middleware(FaultInjector, envelopes=envelopes)
    return app
