"""Errors every platform router raises, rendered in the envelope of the platform that owns the path."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException


class ApiError(Exception):
    """An error response: HTTP status, a message, the platform's error code where it has codes, and fields the
    platform adds to this error's body (`extra`, such as the details a client needs to go on)."""

    def __init__(self, status: int, message: str, code: str | None = None, extra: Mapping[str, Any] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.extra = dict(extra or {})


class DomainError(Exception):
    """A failure of shared machinery (workloads, stores) that each platform maps to its own status and code."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def translator(failures: Mapping[type[DomainError], tuple[int, str]],
               fallback: tuple[int, str]) -> Callable[[DomainError], ApiError]:
    """A platform's `Envelope.translate` from its (status, code) per kind of domain error, `fallback` for the rest."""

    def translate(error: DomainError) -> ApiError:
        status, code = failures.get(type(error), fallback)
        return ApiError(status, error.message, code)

    return translate


Render = Callable[[int, "str | None", str], dict[str, Any]]
"""A platform's error body from (status, code, message)."""


@dataclass(frozen=True)
class Envelope:
    """Where a platform's API lives and how it answers errors there.

    `codes` gives the code of an error raised without one (auth's 401, the body limit's 413...),
    by status; `validation_status` is what a request the route's models refuse gets (400 or 422);
    `token_header` is where its token is presented (`Authorization: Bearer <token>`, or the token
    alone in a header such as `X-API-Key`), and `invalid_token_code` the code of a token that is
    sent but unknown (`codes[401]` is that of a missing one); `translate` maps the shared
    machinery's `DomainError`s to the platform's answers. With `validation_errors` a request the
    route's models refuse (or a route raising `RequestValidationError`) is answered FastAPI's own way,
    `{"detail": [{"loc", "msg", "type"}, ...]}` (`HTTPValidationError`), inputs left out.
    """

    prefix: str
    render: Render
    codes: Mapping[int, str] = field(default_factory=dict)
    validation_status: int = 400
    token_header: str = "authorization"
    invalid_token_code: str | None = None
    translate: Callable[[DomainError], ApiError] | None = None
    validation_errors: bool = False

    def owns(self, path: str) -> bool:
        """Whether `path` is under this prefix (a whole segment: `/api/v1` owns `/api/v1/x`, not `/api/v10`)."""
        return path == self.prefix or path.startswith(self.prefix.rstrip("/") + "/")

    @property
    def challenge(self) -> str:
        """The `WWW-Authenticate` of its 401: `Bearer`, or the header its token goes in."""
        return "Bearer" if self.token_header == "authorization" else self.token_header

    def body(self, status: int, message: str, code: str | None = None) -> dict[str, Any]:
        """The error body, with the status's default code when none is given."""
        return self.render(status, code or self.codes.get(status), message)


def default_render(status: int, code: str | None, message: str) -> dict[str, Any]:
    """The error body outside every platform's prefix."""
    return {"error": message}


def owner(envelopes: Sequence[Envelope], path: str) -> Envelope | None:
    """The platform whose prefix `path` falls under; the longest prefix wins (a platform owning
    `/api/v1/containers` keeps it from another owning `/api/v1`)."""
    owners = [envelope for envelope in envelopes if envelope.owns(path)]
    return max(owners, key=lambda envelope: len(envelope.prefix), default=None)


def describe_validation_error(errors: Sequence[Any]) -> str:
    """One line naming where the request is wrong and why; input values are never echoed."""
    first = errors[0]
    if first.get("type") == "json_invalid":
        return f"request body is not valid JSON: {first.get('ctx', {}).get('error', 'parse error')}"
    where = [str(part) for part in first.get("loc", ()) if part != "body"]
    location = ".".join(where) if where else "request body"
    if first.get("type") == "missing" and not where:
        return "request body is required"
    return f"{location}: {first.get('msg', 'invalid')}"


def validation_detail(errors: Sequence[Any]) -> dict[str, Any]:
    """FastAPI's `HTTPValidationError` body for `errors`, without the inputs (never echo a value); a body
    that is not JSON says why in its `msg` (FastAPI keeps the reason in `ctx`, left out here with the inputs)."""
    def message(error: Any) -> str:
        reason = error.get("ctx", {}).get("error") if error.get("type") == "json_invalid" else None
        return f"{error.get('msg', 'invalid')}: {reason}" if reason else str(error.get("msg", "invalid"))

    return {"detail": [{"loc": list(error.get("loc", ())), "msg": message(error),
                        "type": str(error.get("type", "value_error"))} for error in errors]}


def error_body(envelopes: Sequence[Envelope], path: str, status: int, message: str,
               code: str | None = None) -> dict[str, Any]:
    """The error body for `path`, in the envelope of the platform that owns it."""
    found = owner(envelopes, path)
    return found.body(status, message, code) if found else default_render(status, code, message)


def unread_body(scope: Mapping[str, Any]) -> list[tuple[bytes, bytes]]:
    """`Connection: close` for a request refused before its declared body was read: the unread bytes
    would otherwise be parsed as the connection's next request (a plain-text 400, outside every envelope)."""
    headers = dict(scope.get("headers") or [])
    declared = headers.get(b"content-length", b"0").strip() not in (b"0", b"") or b"transfer-encoding" in headers
    return [(b"connection", b"close")] if declared else []


async def send_error(send: Any, envelopes: Sequence[Envelope], path: str, status: int, message: str,
                     headers: Sequence[tuple[bytes, bytes]] = (), code: str | None = None) -> None:
    """Answer an ASGI request from a middleware with an error in the envelope of the platform owning `path`."""
    body = json.dumps(error_body(envelopes, path, status, message, code)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), *headers]})
    await send({"type": "http.response.body", "body": body})


def allowed_methods(request: Request) -> str:
    """The methods the served OpenAPI document lists for the request's path, for a 405's `Allow`."""
    methods: set[str] = set()
    for template, operations in request.app.openapi().get("paths", {}).items():
        parts = re.split(r"(\{[^/{}]+\})", template)
        pattern = "".join("[^/]+" if part.startswith("{") else re.escape(part) for part in parts)
        if re.fullmatch(pattern, request.url.path):
            methods |= {method.upper() for method in operations}
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods))


def install_error_handlers(app: FastAPI, envelopes: Sequence[Envelope]) -> None:
    """Render every error, including FastAPI's own 404/405/422, in the owning platform's envelope."""

    def render(request: Request, status: int, message: str, headers: Mapping[str, str] | None = None,
               code: str | None = None) -> Response:
        body = error_body(envelopes, request.url.path, status, message, code)
        return JSONResponse(body, status_code=status, headers=headers)

    def validation_status(request: Request) -> int:
        found = owner(envelopes, request.url.path)
        return found.validation_status if found else 400

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        if not exc.extra:
            return render(request, exc.status, exc.message, code=exc.code)
        body = error_body(envelopes, request.url.path, exc.status, exc.message, exc.code) | exc.extra
        return JSONResponse(body, status_code=exc.status)

    @app.exception_handler(DomainError)
    async def domain_error(request: Request, exc: DomainError) -> Response:
        found = owner(envelopes, request.url.path)
        error = found.translate(exc) if found and found.translate else ApiError(500, exc.message)
        return render(request, error.status, error.message, code=error.code)

    def refused(request: Request, errors: Sequence[Any], message: str | None = None) -> Response:
        """A request refused as invalid: FastAPI's `HTTPValidationError` where the owning envelope answers
        that way, else `message` (or what `errors` say) in the envelope, with its validation status."""
        found = owner(envelopes, request.url.path)
        if found is not None and found.validation_errors:
            return JSONResponse(validation_detail(errors), status_code=found.validation_status)
        return render(request, validation_status(request), message or describe_validation_error(errors))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        errors = exc.errors()
        content_type = request.headers.get("content-type", "")
        media_type = content_type.partition(";")[0].strip().lower()
        sent_body = request.headers.get("content-length", "0") != "0" or "transfer-encoding" in request.headers
        if sent_body and errors and errors[0].get("loc", ("",))[0] == "body" and media_type != "application/json":
            message = f"request body must be JSON sent with Content-Type: application/json, not {content_type!r}"
            return refused(request, errors, message)
        return refused(request, errors)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        headers = dict(exc.headers or {})
        if exc.status_code == 400 and isinstance(exc.__cause__, RecursionError | UnicodeDecodeError):
            # FastAPI's own "There was an error parsing the body", made specific and refused like any body
            # that is not JSON (FastAPI's `json_invalid`): the owning envelope's validation status and shape.
            reason = "nested too deeply" if isinstance(exc.__cause__, RecursionError) else "not valid UTF-8"
            return refused(request, [{"type": "json_invalid", "loc": ("body",), "msg": "JSON decode error",
                                      "ctx": {"error": reason}}])
        if exc.status_code == 405:
            # RFC 9110: a 405 lists every method the path allows (Starlette names only one route's).
            headers["Allow"] = allowed_methods(request)
        if exc.status_code in (404, 405):  # routing refused it: no route read its body
            headers |= {name.decode(): value.decode() for name, value in unread_body(request.scope)}
        return render(request, exc.status_code, str(exc.detail), headers)

    document_validation_status(app, envelopes)


def document_validation_status(app: FastAPI, envelopes: Sequence[Envelope]) -> None:
    """Keep the 422 FastAPI documents only where the owning platform answers validation errors with it.

    Elsewhere validation errors are 400s in the envelope, which each router documents with the
    platform's error model, so the served document lists only what the server really returns.
    """
    build = app.openapi

    def openapi() -> dict[str, Any]:
        document = build()  # generated once and cached by FastAPI; stripping it again is a no-op
        kept = False
        for path, operations in document.get("paths", {}).items():
            found = owner(envelopes, path)
            for operation in operations.values():
                if found is not None and found.validation_status == 422:
                    kept = kept or "422" in operation.get("responses", {})
                else:
                    operation.get("responses", {}).pop("422", None)
        if not kept:
            schemas = document.get("components", {}).get("schemas", {})
            for name in ("HTTPValidationError", "ValidationError"):
                schemas.pop(name, None)
        return document

    app.openapi = openapi  # type: ignore[method-assign]
