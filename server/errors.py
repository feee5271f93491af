"""Errors every platform router raises, rendered in the envelope of the platform that owns the path."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException


class ApiError(Exception):
    """An error response: HTTP status and a message for the platform's envelope."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Envelope:
    """Where a platform's API lives and how it shapes an error body."""

    prefix: str
    render: Callable[[int, str], dict[str, Any]]


def default_render(status: int, message: str) -> dict[str, Any]:
    """The error body outside every platform's prefix."""
    return {"error": message}


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


def error_body(envelopes: Sequence[Envelope], path: str, status: int, message: str) -> dict[str, Any]:
    """The error body for `path`, in the envelope of the platform whose prefix it falls under."""
    owner = next((e for e in envelopes if path.startswith(e.prefix)), None)
    return (owner.render if owner else default_render)(status, message)


async def send_error(send: Any, envelopes: Sequence[Envelope], path: str, status: int, message: str,
                     headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    """Answer an ASGI request from a middleware with an error in the envelope of the platform owning `path`."""
    body = json.dumps(error_body(envelopes, path, status, message)).encode()
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

    def render(request: Request, status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
        body = error_body(envelopes, request.url.path, status, message)
        return JSONResponse(body, status_code=status, headers=headers)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        return render(request, exc.status, exc.message)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        errors = exc.errors()
        content_type = request.headers.get("content-type", "")
        media_type = content_type.partition(";")[0].strip().lower()
        sent_body = request.headers.get("content-length", "0") != "0" or "transfer-encoding" in request.headers
        if sent_body and errors and errors[0].get("loc", ("",))[0] == "body" and media_type != "application/json":
            message = f"request body must be JSON sent with Content-Type: application/json, not {content_type!r}"
            return render(request, 400, message)
        return render(request, 400, describe_validation_error(errors))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        headers = dict(exc.headers or {})
        if exc.status_code == 400 and isinstance(exc.__cause__, RecursionError | UnicodeDecodeError):
            # FastAPI's own "There was an error parsing the body", made specific.
            reason = "nested too deeply" if isinstance(exc.__cause__, RecursionError) else "not valid UTF-8"
            return render(request, 400, f"request body is not valid JSON: {reason}")
        if exc.status_code == 405:
            # RFC 9110: a 405 lists every method the path allows (Starlette names only one route's).
            headers["Allow"] = allowed_methods(request)
        return render(request, exc.status_code, str(exc.detail), headers)

    document_validation_errors_as_400(app)


def document_validation_errors_as_400(app: FastAPI) -> None:
    """Drop the 422 FastAPI documents for every route: validation errors are 400s in the envelope.

    Each router documents its 400 with the platform's error model, so the served document lists only
    what the server really returns.
    """
    build = app.openapi

    def openapi() -> dict[str, Any]:
        document = build()  # generated once and cached by FastAPI; stripping it again is a no-op
        for operations in document.get("paths", {}).values():
            for operation in operations.values():
                operation.get("responses", {}).pop("422", None)
        schemas = document.get("components", {}).get("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        return document

    app.openapi = openapi  # type: ignore[method-assign]
