"""Errors every platform router raises, rendered in the envelope of the platform that owns the path."""

from __future__ import annotations

from collections.abc import Callable, Sequence
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


def install_error_handlers(app: FastAPI, envelopes: Sequence[Envelope]) -> None:
    """Render every error, including FastAPI's own 404/405/422, in the owning platform's envelope."""

    def render(request: Request, status: int, message: str) -> Response:
        return JSONResponse(error_body(envelopes, request.url.path, status, message), status_code=status)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        return render(request, exc.status, exc.message)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        return render(request, 400, describe_validation_error(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return render(request, exc.status_code, str(exc.detail))
