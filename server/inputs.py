"""Input no route can store or echo back, refused once for every route: 400 in the owning platform's envelope.

- A lone surrogate (`"\\ud800"`, or its bytes in the body) anywhere in a JSON body, in a string or
  a key: Python's JSON decoder lets it through, but it is not Unicode text, so it cannot be written
  to SQLite or into a JSON response (it used to give a 500, or a VM that broke `GET /vm` for good).
- A path or query string that is not UTF-8 once percent-decoded: the server would otherwise read
  U+FFFD in place of the bytes sent, and act on a name the client never wrote.
- A query parameter given more than once: no route takes a list, and "the last one wins" would let
  a proxy that checked the first value see a different request than the route.
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote_to_bytes

from envvars.rules import show_key
from envvars_server.errors import Envelope, send_error

# A surrogate escape in JSON text, or a surrogate decoded from the body's bytes (json.loads(bytes)
# decodes with "surrogatepass"). A hit may be a valid pair or an escaped backslash: the body is then
# parsed to find out.
_SUSPECT = re.compile(r"\\u[dD][89a-fA-F]" + "|[\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_PLAIN = re.compile(r"[A-Za-z0-9_]{1,64}")
_BODY_HEADERS = (b"content-length", b"transfer-encoding")


def path_problem(raw_path: bytes) -> str | None:
    """Why the request path is refused, or None."""
    if b"%" not in raw_path and raw_path.isascii():
        return None
    for segment in raw_path.split(b"/"):
        try:
            unquote_to_bytes(segment).decode("utf-8")
        except UnicodeDecodeError:
            return f"path segment {show_key(segment.decode('latin-1'))} is not valid UTF-8 once percent-decoded"
    return None


def query_problem(query_string: bytes) -> str | None:
    """Why the query string is refused (bad UTF-8 or a parameter given twice), or None."""
    seen: dict[str, int] = {}
    for pair in query_string.split(b"&"):
        if not pair:
            continue  # as Starlette's parsing skips `&&`
        raw_name, _, raw_value = pair.replace(b"+", b" ").partition(b"=")
        try:
            name = unquote_to_bytes(raw_name).decode("utf-8")
        except UnicodeDecodeError:
            return f"query parameter {show_key(raw_name.decode('latin-1'))}: its name is not valid UTF-8"
        try:
            unquote_to_bytes(raw_value).decode("utf-8")
        except UnicodeDecodeError:
            return f"query parameter {show_key(name)}: its value is not valid UTF-8 once percent-decoded"
        seen[name] = seen.get(name, 0) + 1
    repeated = next((name for name, count in seen.items() if count > 1), None)
    if repeated is not None:
        return f"query parameter {show_key(repeated)} is given {seen[repeated]} times; it takes one value"
    return None


def _where(path: tuple[str | int, ...]) -> str:
    parts = [str(p) if isinstance(p, int) or _PLAIN.fullmatch(p) else show_key(p) for p in path]
    return ".".join(parts) or "request body"


def _lone(text: str) -> str | None:
    """`U+XXXX` of the first lone surrogate in `text`, or None."""
    found = _SURROGATE.search(text)
    return f"U+{ord(found.group()):04X}" if found else None


def body_problem(body: bytes) -> str | None:
    """Where a JSON body holds a lone surrogate, in a string or a key; None otherwise (or when not JSON)."""
    try:
        text = body.decode(json.detect_encoding(body), "surrogatepass")
    except (UnicodeDecodeError, LookupError):
        return None  # not JSON the route could read either; FastAPI reports it
    if not _SUSPECT.search(text):
        return None
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        return None
    pending: list[tuple[tuple[str | int, ...], Any]] = [((), document)]
    while pending:  # depth-first, in document order; iterative, as the nesting can be deep
        path, node = pending.pop()
        if isinstance(node, str) and (char := _lone(node)):
            return f"{_where(path)}: holds a lone surrogate ({char}), which is not Unicode text"
        if isinstance(node, dict):
            for key in node:
                if char := _lone(key):
                    return f"{_where(path)}: the key {show_key(key)} holds a lone surrogate ({char}), " \
                        "which is not Unicode text"
            pending.extend(((*path, key), value) for key, value in reversed(node.items()))
        elif isinstance(node, list):
            pending.extend(((*path, index), item) for index, item in reversed(list(enumerate(node))))
    return None


class StrictInput:
    """ASGI middleware: refuse the input above with 400 before any route runs.

    It reads the whole body before the route does, so it must only ever see a body the size limit
    has already bounded: install it inside `limits.BodyLimit` (see `app.py`).
    """

    def __init__(self, app: Any, envelopes: Sequence[Envelope]):
        self.app = app
        self.envelopes = envelopes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        query = scope.get("query_string", b"")
        problem = path_problem(scope.get("raw_path") or b"") or (query_problem(query) if query else None)
        if problem:
            # The body is never read, so the connection cannot carry another request.
            await self._refuse(scope, send, problem, close=True)
            return
        if not any(name in _BODY_HEADERS and value != b"0" for name, value in scope["headers"]):
            await self.app(scope, receive, send)  # HTTP/1.1 has no body without these headers
            return
        received: list[dict[str, Any]] = [await receive()]
        while received[-1]["type"] == "http.request" and received[-1].get("more_body"):
            received.append(await receive())
        if received[-1]["type"] == "http.request":
            problem = body_problem(b"".join(message.get("body", b"") for message in received))
            if problem:
                await self._refuse(scope, send, problem)
                return
        pending = deque(received)

        async def replay() -> dict[str, Any]:
            return pending.popleft() if pending else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: dict[str, Any], send: Any, message: str, close: bool = False) -> None:
        headers = [(b"connection", b"close")] if close else []
        await send_error(send, self.envelopes, scope.get("path", ""), 400, message, headers)
