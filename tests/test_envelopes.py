"""Which platform owns a path, and so whose envelope, codes and validation status an error gets."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI
from pydantic import BaseModel

from envvars_server.errors import Envelope, error_body, install_error_handlers, owner


def coded(status: int, code: str | None, message: str) -> dict[str, Any]:
    return {"statusCode": status, "code": code, "message": message}


def plain(status: int, code: str | None, message: str) -> dict[str, Any]:
    return {"error": message, "success": False}


ROOT = Envelope("/api/v1", plain)
NESTED = Envelope("/api/v1/containers", coded, codes={401: "MISSING_TOKEN"})
STRICT = Envelope("/api/v2", plain, validation_status=422)
ENVELOPES = [ROOT, NESTED, STRICT]


def test_the_longest_prefix_owns_a_path_whatever_the_order() -> None:
    for envelopes in (ENVELOPES, list(reversed(ENVELOPES))):
        assert owner(envelopes, "/api/v1/containers/c1/env") is NESTED
        assert owner(envelopes, "/api/v1/containers") is NESTED
        assert owner(envelopes, "/api/v1/env_vars") is ROOT
        assert owner(envelopes, "/api/v1/containersX") is ROOT  # a whole segment, not a string prefix
        assert owner(envelopes, "/api/v10/x") is None
        assert owner(envelopes, "/_envvars/v1/workloads") is None


def test_an_error_gets_the_owners_envelope_and_default_code() -> None:
    assert error_body(ENVELOPES, "/api/v1/containers/c1/env", 401, "no token") == {
        "statusCode": 401, "code": "MISSING_TOKEN", "message": "no token"}
    assert error_body(ENVELOPES, "/api/v1/containers/c1/env", 404, "gone", "CONTAINER_NOT_FOUND") == {
        "statusCode": 404, "code": "CONTAINER_NOT_FOUND", "message": "gone"}
    assert error_body(ENVELOPES, "/api/v1/env_vars", 401, "no token") == {"error": "no token", "success": False}
    assert error_body(ENVELOPES, "/elsewhere", 404, "nothing") == {"error": "nothing"}


class Body(BaseModel):
    name: str


def test_the_document_keeps_422_only_where_the_platform_answers_it() -> None:
    app = FastAPI()
    for prefix in ("/api/v1", "/api/v2"):
        router = APIRouter(prefix=prefix)

        @router.post("/things")
        def make(body: Body) -> dict[str, str]:
            return {"name": body.name}

        app.include_router(router)
    install_error_handlers(app, ENVELOPES)
    paths = app.openapi()["paths"]
    assert "422" not in paths["/api/v1/things"]["post"]["responses"]
    assert "422" in paths["/api/v2/things"]["post"]["responses"]
    assert "HTTPValidationError" in app.openapi()["components"]["schemas"]
