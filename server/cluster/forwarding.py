"""Requests for a workload on another node, answered there: signed on the way out, verified on the way in.

`PeerAuth` (ASGI middleware, outside token auth) keeps every request's body as the routes read it, so that a
request can be sent on whole, and refuses any request carrying a forwarding header that does not verify
(`signing`), before anything runs. `forward` is the handler of `Elsewhere`: it sends the request to the node that
runs the workload, as the user the token named (the token itself stays on this node), and answers what that node
answers. A forwarded request is never forwarded again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import Request
from fastapi.responses import JSONResponse, Response

from envvars_server.auth import VERIFIED_USER
from envvars_server.cluster import signing
from envvars_server.cluster.membership import Elsewhere, NodeConfig
from envvars_server.errors import Envelope, error_body, send_error

FORWARDED_BY = "envvars.forwarded_by"  # scope key: the node that forwarded this request (verified)
_BODY = "envvars.body"  # scope key: the request's body as read so far (`_Body`)
# Not passed on: hop-by-hop headers, those the client library sets itself, and the forwarding header.
_REQUEST_DROP = {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te",
                 "proxy-connection", signing.HEADER}
_RESPONSE_DROP = {"content-length", "transfer-encoding", "connection", "keep-alive", "content-encoding", "date",
                  "server"}
# A VM's command may run 600 s, after the VM's boot: the answer is waited for as long.
TIMEOUT = httpx.Timeout(connect=5.0, read=700.0, write=60.0, pool=60.0)


@dataclass
class _Body:
    chunks: list[bytes] = field(default_factory=list)
    size: int = 0
    done: bool = False


def _token_headers(envelopes: Sequence[Envelope]) -> set[str]:
    return {envelope.token_header.lower() for envelope in envelopes} | {"authorization"}


class PeerAuth:
    """ASGI middleware: keep each request's body; act on a forwarded request only when its signature verifies."""

    def __init__(self, app: Any, node: NodeConfig, envelopes: Sequence[Envelope], max_body_bytes: int):
        self.app = app
        self.node = node
        self.envelopes = envelopes
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        kept = scope[_BODY] = _Body()

        async def keeping() -> dict[str, Any]:
            message: dict[str, Any] = await receive()
            if message["type"] == "http.request":
                if kept.size <= self.max_body_bytes:  # past the limit the body is refused (and drained), never sent on
                    kept.chunks.append(message.get("body", b""))
                    kept.size += len(kept.chunks[-1])
                kept.done = not message.get("more_body", False)
            return message

        header = next((value for name, value in scope["headers"] if name == signing.HEADER.encode()), None)
        if header is None:
            await self.app(scope, keeping, send)
            return
        try:
            forward = signing.verify(self.node.secret, scope["method"], _target(scope), header.decode("latin-1"))
            body = await self._whole_body(keeping)
            if hashlib.sha256(body).hexdigest() != forward.body_sha256:
                raise signing.Refused("the body is not the one signed")
        except signing.Refused as exc:
            await send_error(send, self.envelopes, scope.get("path", ""), 403,
                             f"forwarded request refused: {exc}", [(b"connection", b"close")])
            return
        scope[VERIFIED_USER] = forward.user
        scope[FORWARDED_BY] = forward.node
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if replayed:
                message: dict[str, Any] = await receive()
                return message
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _whole_body(self, receive: Callable[[], Awaitable[dict[str, Any]]]) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                raise signing.Refused("the client went away")
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_body_bytes:
                raise signing.Refused("the body is larger than the server's limit")
            if not message.get("more_body", False):
                return b"".join(chunks)


def _target(scope: MutableMapping[str, Any]) -> str:
    """The request's path and query exactly as sent, which is what a signature covers."""
    raw: bytes = scope.get("raw_path") or scope["path"].encode()
    query: bytes = scope.get("query_string", b"")
    return (raw + (b"?" + query if query else b"")).decode("latin-1")


async def _body_of(request: Request) -> bytes:
    kept: _Body = request.scope[_BODY]
    while not kept.done:  # the route did not read it all (or at all): read the rest, still through `keeping`
        message = await request.receive()
        if message["type"] != "http.request":
            break
    return b"".join(kept.chunks)


def forwarder(node: NodeConfig, envelopes: Sequence[Envelope]) -> Callable[[Request, Exception],
                                                                           Awaitable[Response]]:
    """The handler of `Elsewhere`: the request answered by the node that runs the workload."""
    dropped = _REQUEST_DROP | _token_headers(envelopes)

    def failed(request: Request, message: str) -> Response:
        return JSONResponse(error_body(envelopes, request.url.path, 503, message), status_code=503,
                            headers={"Retry-After": "1"})

    async def forward(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Elsewhere)
        if FORWARDED_BY in request.scope:  # the sender thought the workload was here: never a second hop
            return failed(request, f"the workload is on node {exc.node}, not on this one; try again")
        client: httpx.AsyncClient = request.app.state.peers
        body = await _body_of(request)
        target = _target(request.scope)
        headers = [(name, value) for name, value in request.headers.raw if name.decode("latin-1") not in dropped]
        headers.append((signing.HEADER.encode(), signing.sign(
            node.secret, request.method, target, node.node_id, str(request.state.user_id), body).encode()))
        url = httpx.URL(exc.url).copy_with(raw_path=target.encode("latin-1"))
        try:
            answer = await client.request(request.method, url, headers=headers, content=body)
        except httpx.HTTPError as error:
            return failed(request, f"node {exc.node}, which runs the workload, did not answer "
                                   f"({type(error).__name__}); try again")
        kept = [(name, value) for name, value in answer.headers.raw if name.decode("latin-1").lower()
                not in _RESPONSE_DROP]
        response = Response(content=answer.content, status_code=answer.status_code)
        response.raw_headers = [*kept, (b"content-length", str(len(answer.content)).encode())]
        return response

    return forward
