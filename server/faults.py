"""Fault injection, for tests only: `envvars-server serve --faults` (off by default).

With the switch, `POST /_faults` arms a plan and `GET /_faults` reports what was injected. A plan
is a list of faults, each applied to every `every`-th request that matches it, `count` times:

    {"faults": [{"kind": "status", "status": 500, "count": 3},
                {"kind": "status", "status": 429, "retry_after": 1, "count": 2, "every": 4},
                {"kind": "reset", "methods": ["PUT"], "count": 1},
                {"kind": "stall", "seconds": 5, "path_prefix": "/api/v1/env_vars", "count": 1},
                {"kind": "late", "seconds": 5, "methods": ["POST"], "count": 1}]}

`status` answers with that status in the platform's envelope (and `Retry-After` when given) without
running the request; `reset` closes the connection without an answer, before running the request;
`stall` waits `seconds` and then runs the request (a client that timed out meanwhile may retry it);
`late` runs the request at once and holds its answer `seconds` (a client that timed out never
learns the outcome of a request that was applied).
Only requests under a platform's prefix are affected. Without `--faults` none of this exists.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from envvars_server.errors import Envelope, owner, send_error, unread_body

FAULTS_PATH = "/_faults"
KINDS = ("status", "reset", "stall", "late")


@dataclass
class Fault:
    """One armed fault and how often it has matched and fired."""

    kind: str
    count: int = 1
    every: int = 1
    status: int = 500
    retry_after: float | None = None
    seconds: float = 0.0
    methods: tuple[str, ...] = ()
    path_prefix: str = ""
    seen: int = 0

    def matches(self, method: str, path: str) -> bool:
        return (not self.methods or method in self.methods) and path.startswith(self.path_prefix)

    def label(self) -> str:
        return str(self.status) if self.kind == "status" else self.kind


def parse_plan(body: Any) -> list[Fault]:
    """The faults of a `POST /_faults` body; ValueError names what is wrong."""
    if not isinstance(body, dict) or not isinstance(body.get("faults"), list):
        raise ValueError('the body must be {"faults": [...]}')
    plan = []
    for item in body["faults"]:
        if not isinstance(item, dict) or item.get("kind") not in KINDS:
            raise ValueError(f"each fault needs a kind among {KINDS}")
        fault = Fault(
            kind=item["kind"], count=int(item.get("count", 1)), every=max(1, int(item.get("every", 1))),
            status=int(item.get("status", 500)), seconds=float(item.get("seconds", 0.0)),
            retry_after=None if item.get("retry_after") is None else float(item["retry_after"]),
            methods=tuple(str(m).upper() for m in item.get("methods", ())),
            path_prefix=str(item.get("path_prefix", "")),
        )
        if fault.kind == "status" and not 400 <= fault.status <= 599:
            raise ValueError("a status fault needs a 4xx or 5xx status")
        plan.append(fault)
    return plan


class FaultInjector:
    """ASGI middleware: the `/_faults` admin route and the faults it arms."""

    def __init__(self, app: Any, envelopes: Sequence[Envelope]):
        self.app = app
        self.envelopes = envelopes
        self.plan: list[Fault] = []
        self.injected: Counter[str] = Counter()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method = scope.get("path", ""), scope["method"]
        if path == FAULTS_PATH:
            await self._admin(method, receive, send)
            return
        fault = self._due(method, path) if owner(self.envelopes, path) else None
        if fault is None:
            await self.app(scope, receive, send)
            return
        self.injected[fault.label()] += 1
        if fault.kind == "status":
            message = f"injected fault: {fault.status} (envvars-server serve --faults)"
            headers = [] if fault.retry_after is None else [(b"retry-after", str(int(fault.retry_after)).encode())]
            await send_error(send, self.envelopes, path, fault.status, message, [*headers, *unread_body(scope)])
        elif fault.kind == "reset":
            # A header value the HTTP layer refuses to serialise: the server then drops the
            # connection with nothing written, which the client sees as a reset.
            await send({"type": "http.response.start", "status": 500, "headers": [(b"x-fault", b"reset\r\n")]})
        elif fault.kind == "stall":
            await asyncio.sleep(fault.seconds)
            await self.app(scope, receive, send)
        else:
            await self._late(fault.seconds, scope, receive, send)

    async def _late(self, seconds: float, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Run the request, then send its answer no sooner than `seconds` after it arrived."""
        held: list[dict[str, Any]] = []

        async def hold(message: dict[str, Any]) -> None:
            held.append(message)

        started = asyncio.get_running_loop().time()
        await self.app(scope, receive, hold)
        await asyncio.sleep(max(0.0, started + seconds - asyncio.get_running_loop().time()))
        for message in held:
            await send(message)

    def _due(self, method: str, path: str) -> Fault | None:
        for fault in self.plan:
            if fault.count > 0 and fault.matches(method, path):
                fault.seen += 1
                if fault.seen % fault.every == 0:
                    fault.count -= 1
                    return fault
        return None

    async def _admin(self, method: str, receive: Any, send: Any) -> None:
        answer: dict[str, Any] | None
        status, answer = 200, None
        if method == "POST":
            raw = b""
            while True:
                message = await receive()
                raw += message.get("body", b"")
                if not message.get("more_body"):
                    break
            try:
                self.plan = parse_plan(json.loads(raw or b"null"))
            except (ValueError, TypeError) as exc:
                status, answer = 400, {"error": str(exc)}
        elif method == "DELETE":
            self.plan = []
        elif method != "GET":
            status, answer = 405, {"error": "use GET, POST or DELETE"}
        if answer is None:
            answer = {"injected": dict(self.injected), "armed": [f.count for f in self.plan]}
        body = json.dumps(answer).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})
