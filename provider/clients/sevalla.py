"""Client of Sevalla's application env-var API: `/v3/applications/{id}/env-vars`, one object per variable."""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests

from envvars_provider.clients.http import ApiSession, answer_lost, json_object
from envvars_provider.errors import PlatformError, ProviderError

PARALLEL = 8  # requests in flight at once when many variables change: the API takes one variable a request
PAGE_SIZE = 100  # the most the list route returns a page
APP_NOT_FOUND = "application-not-found"
KEY_EXISTS = 409
# The page's pattern for every id: a uuid of versions 1-8 with the RFC 4122 variant, or the nil or max uuid.
ID_PATTERN = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[1-8][0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}|"
                        r"00000000-0000-0000-0000-000000000000|ffffffff-ffff-ffff-ffff-ffffffffffff")


def _reason(response: requests.Response) -> str:
    """`code: message` of Sevalla's envelope `{"message", "status", "data": {"code", ...}}`, or the body's start."""
    body = json_object(response)
    message, data = body.get("message"), body.get("data")
    if not isinstance(message, str):
        return response.text[:200] or response.reason
    code = data.get("code") if isinstance(data, dict) else None
    return f"{code}: {message}" if isinstance(code, str) else message


def _code(response: requests.Response) -> str | None:
    data = json_object(response).get("data")
    code = data.get("code") if isinstance(data, dict) else None
    return code if isinstance(code, str) else None


class ApplicationNotFound(PlatformError):
    """The application does not exist, or belongs to another user."""


class VariableNotFound(PlatformError):
    """The application has no variable of that id."""


class KeyExists(PlatformError):
    """The application already has a variable of that key."""


@dataclass(frozen=True)
class Variable:
    """One variable as Sevalla shows it; flags Sevalla leaves null are true, their default."""

    id: str
    key: str
    value: str
    is_runtime: bool
    is_buildtime: bool
    created_at: str
    updated_at: str

    @classmethod
    def of(cls, body: dict[str, Any]) -> Variable:
        """A variable from its JSON object."""
        return cls(id=str(body["id"]), key=str(body["key"]), value=str(body["value"]),
                   is_runtime=body.get("is_runtime") is not False, is_buildtime=body.get("is_buildtime") is not False,
                   created_at=str(body.get("created_at") or ""), updated_at=str(body.get("updated_at") or ""))

    def differs(self, value: str, is_runtime: bool, is_buildtime: bool) -> dict[str, Any]:
        """The fields a partial update must send to make this variable hold `value` and the flags."""
        wanted = {"value": value, "is_runtime": is_runtime, "is_buildtime": is_buildtime}
        return {name: field for name, field in wanted.items() if getattr(self, name) != field}


class SevallaClient:
    """The env vars of the user's applications."""

    def __init__(self, base_url: str, api_key: str | None, auth_hint: str):
        # The routes carry their version; a base URL given with it (as the docs show it) means the same API.
        self.api = ApiSession(base_url.rstrip("/").removesuffix("/v3"), api_key, _reason, auth_hint)

    @staticmethod
    def _path(app_id: str, *rest: str) -> str:
        return "/".join(["/v3/applications", quote(app_id, safe=""), "env-vars", *(quote(p, safe="") for p in rest)])

    def _call(self, method: str, path: str, expect: tuple[int, ...], **kwargs: Any) -> requests.Response:
        """A request whose 404 and 409 become `ApplicationNotFound`, `VariableNotFound` or `KeyExists`."""
        response = self.api.call(method, path, expect=(*expect, 404, 409), **kwargs)
        if response.status_code == 404:
            by_id = path.count("/") > 4  # /v3/applications/{id}/env-vars/{env_var_id}
            error = VariableNotFound if by_id and _code(response) != APP_NOT_FOUND else ApplicationNotFound
            raise error(method, path, 404, _reason(response))
        if response.status_code == 409:
            raise KeyExists(method, path, 409, _reason(response))
        return response

    def list(self, app_id: str) -> list[Variable] | None:
        """Every variable of the application (all pages), or None when the application is gone."""
        found: dict[str, Variable] = {}
        offset = 0
        while True:
            try:
                response = self._call("GET", self._path(app_id), (200,),
                                      params={"limit": PAGE_SIZE, "offset": offset})
            except ApplicationNotFound:
                return None
            body = response.json()
            page = body if isinstance(body, list) else body.get("data") or []
            for item in page:
                variable = Variable.of(item)
                found[variable.id] = variable
            total = body.get("total") if isinstance(body, dict) else None
            offset += len(page)
            if isinstance(body, list) or not page or len(page) < PAGE_SIZE or \
                    (isinstance(total, int) and offset >= total):
                return list(found.values())

    def create(self, app_id: str, key: str, value: str, is_runtime: bool, is_buildtime: bool) -> Variable:
        """A new variable; `KeyExists` when the key is taken. A POST whose answer is lost is never sent again:
        the variable it may have made is looked up by key."""
        body = {"key": key, "value": value, "is_runtime": is_runtime, "is_buildtime": is_buildtime}
        try:
            return Variable.of(self._call("POST", self._path(app_id), (200, 201), json=body).json())
        except ProviderError as lost:
            if not answer_lost(lost):
                raise
            try:
                made = self.find(app_id, key)
            except ProviderError:
                made = None
            if made is None:
                raise
            fields = made.differs(value, is_runtime, is_buildtime)  # it held the key before: make it ours
            return self.update(app_id, made.id, **fields) if fields else made

    def find(self, app_id: str, key: str) -> Variable | None:
        """The application's variable of `key`, or None."""
        return next((variable for variable in self.list(app_id) or [] if variable.key == key), None)

    def update(self, app_id: str, var_id: str, **fields: Any) -> Variable:
        """Change the given fields of a variable (the others are kept); `VariableNotFound` when it is gone."""
        return Variable.of(self._call("PUT", self._path(app_id, var_id), (200,), json=fields).json())

    def delete(self, app_id: str, var_id: str) -> None:
        """Delete a variable; one already gone, or whose application is gone, is fine."""
        with contextlib.suppress(VariableNotFound, ApplicationNotFound):
            self._call("DELETE", self._path(app_id, var_id), (200, 204))

    def put(self, app_id: str, key: str, value: str, is_runtime: bool, is_buildtime: bool) -> Variable:
        """Create the variable of `key`, or take over the one the application already has (one more list and
        PUT), as the other platforms' upserts do."""
        try:
            return self.create(app_id, key, value, is_runtime, is_buildtime)
        except KeyExists:
            existing = self.find(app_id, key)
            if existing is None:  # deleted in between: create it after all
                return self.create(app_id, key, value, is_runtime, is_buildtime)
        fields = existing.differs(value, is_runtime, is_buildtime)
        return self.update(app_id, existing.id, **fields) if fields else existing
