"""Vers orchestrator: the account-wide env-var set (`/api/v1/env_vars`) and its error envelope."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr

from envvars.rules import (
    RuleViolation,
    check_key,
    check_vars,
    describe,
    key_json_schema,
    show_key,
    value_json_schema,
)
from envvars.rules.vers import RULES
from envvars_server.deps import current_user, store_of
from envvars_server.errors import ApiError, Envelope
from envvars_server.platforms.vers_machines import translate
from envvars_server.store import Store

PLATFORM = "vers"
PREFIX = "/api/v1"


def render_error(status: int, code: str | None, message: str) -> dict[str, Any]:
    """Vers' documented `ErrorResponse`: `{"error": <reason>, "success": false}`."""
    return {"error": message, "success": False}


ENVELOPE = Envelope(prefix=PREFIX, render=render_error, translate=translate)


class ErrorResponse(BaseModel):
    """Vers' error body."""

    error: str = Field(description="Reason of error")
    success: bool = Field(description="Is always: false")


class SetEnvVarsRequest(BaseModel):
    """Request body for PUT /env_vars: sets (upserts) one or more environment variables.

    Variables are written to `/etc/environment` inside a VM once, at boot, over a vsock
    `WriteFile` request; running VMs are not live-synced.
    """

    model_config = ConfigDict(extra="ignore")

    vars: dict[StrictStr, StrictStr] = Field(
        description=f"Key-value pairs to set. {describe(RULES)}",
        # The rules, documented; the handler checks them so that errors name the key and the rule.
        json_schema_extra={"propertyNames": key_json_schema(RULES), "additionalProperties": value_json_schema(RULES)},
    )
    replace: StrictBool | None = Field(
        default=False,
        description="If true, delete all existing variables before writing the new set (replace-all). "
        "Default: false (upsert).",
    )


class EnvVarsResponse(BaseModel):
    """Response body for GET /env_vars and PUT /env_vars."""

    vars: dict[str, str] = Field(description="All environment variables currently set for the user.")


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Validation error"},
    401: {"model": ErrorResponse, "description": "Unauthorized"},
    413: {"model": ErrorResponse, "description": "Request body larger than the server's limit"},
}

router = APIRouter(prefix=PREFIX, tags=["env_vars"], responses=ERRORS)


@router.get("/env_vars", operation_id="list_env_vars", response_model=EnvVarsResponse)
def list_env_vars(user: str = Depends(current_user), store: Store = Depends(store_of)) -> EnvVarsResponse:
    """All environment variables of the authenticated user."""
    return EnvVarsResponse(vars=store.get_vars(PLATFORM, user))


@router.put("/env_vars", operation_id="set_env_vars", response_model=EnvVarsResponse)
def set_env_vars(
    body: SetEnvVarsRequest, user: str = Depends(current_user), store: Store = Depends(store_of)
) -> EnvVarsResponse:
    """Upsert variables, or with `replace: true` make them exactly the set; all or nothing.

    A change that would leave the set beyond the server's limits (variables, bytes of keys and
    values) is refused with 400.
    """
    try:
        check_vars(RULES, body.vars)
        return EnvVarsResponse(vars=store.put_vars(PLATFORM, user, body.vars, replace=bool(body.replace)))
    except RuleViolation as exc:  # a bad key or value, or a set beyond the server's limits
        raise ApiError(400, exc.message) from None


@router.delete(
    "/env_vars/{key}",
    operation_id="delete_env_var",
    status_code=204,
    response_class=Response,
    responses={404: {"model": ErrorResponse, "description": "No such variable"}},
)
def delete_env_var(
    key: Annotated[str, Path(json_schema_extra=key_json_schema(RULES))],
    user: str = Depends(current_user),
    store: Store = Depends(store_of),
) -> Response:
    """Delete one variable; 404 when the user has no variable of that name."""
    try:
        check_key(RULES, key)
    except RuleViolation as exc:
        raise ApiError(400, exc.message) from None
    if not store.delete_var(PLATFORM, user, key):
        raise ApiError(404, f"env var {show_key(key)} does not exist")
    return Response(status_code=204)
