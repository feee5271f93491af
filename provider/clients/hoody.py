"""Client of Hoody's container env API: `/api/v1/containers/{id}/env` and the container's restart."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import requests

from envvars.rules.hoody import RULES
from envvars_provider.clients.http import ApiSession, json_object
from envvars_provider.errors import PlatformError, ProviderError

NOT_FOUND = "CONTAINER_NOT_FOUND"  # the container does not exist, or is another user's
MAX_PER_REQUEST = (RULES.per_request or (1, 200))[1]  # "between 1 and 200 properties" per PATCH


def _reason(response: requests.Response) -> str:
    """`code: message` of Hoody's envelope, or the body's start when it has none."""
    body = json_object(response)
    message, code = body.get("message"), body.get("code")
    if not isinstance(message, str):
        return response.text[:200] or response.reason
    return f"{code}: {message}" if isinstance(code, str) else message


class ContainerNotFound(PlatformError):
    """The container does not exist, or belongs to another user."""


class PartialWrite(ProviderError):
    """A merge failed after some of its requests succeeded: `written` holds the keys stored."""

    def __init__(self, cause: ProviderError, written: list[str]):
        super().__init__(str(cause))
        self.written = written


class HoodyClient:
    """The env map of the user's containers, and their restart."""

    def __init__(self, base_url: str, token: str | None, auth_hint: str):
        self.api = ApiSession(base_url, token, _reason, auth_hint)

    @staticmethod
    def _path(container_id: str, *rest: str) -> str:
        return "/".join(["/api/v1/containers", quote(container_id, safe=""), *(quote(p, safe="") for p in rest)])

    def _data(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """The `data` of a successful answer; `ContainerNotFound` for Hoody's 404 of a container."""
        response = self.api.call(method, path, expect=(200, 404), **kwargs)
        if response.status_code == 404:
            error = ContainerNotFound if json_object(response).get("code") == NOT_FOUND else PlatformError
            raise error(method, path, 404, _reason(response))
        return dict(json_object(response).get("data") or {})

    def get_vars(self, container_id: str) -> dict[str, str] | None:
        """The container's whole map, or None when the container is gone."""
        try:
            return dict(self._data("GET", self._path(container_id, "env"))["environment_vars"])
        except ContainerNotFound:
            return None

    def merge(self, container_id: str, variables: dict[str, str]) -> tuple[dict[str, str], bool]:
        """Upsert `variables` (other keys untouched), at most `MAX_PER_REQUEST` keys a request; the
        container's map and `synced` from the last answer. A chunk failing after another was stored
        raises `PartialWrite`."""
        keys = sorted(variables)
        data: dict[str, Any] = {}
        for start in range(0, len(keys), MAX_PER_REQUEST):
            chunk = {key: variables[key] for key in keys[start:start + MAX_PER_REQUEST]}
            try:
                data = self._data("PATCH", self._path(container_id, "env"), json=chunk)
            except ProviderError as exc:
                if start == 0:
                    raise
                raise PartialWrite(exc, keys[:start]) from None
        return dict(data.get("environment_vars") or {}), bool(data.get("synced"))

    def delete_var(self, container_id: str, key: str) -> bool:
        """Delete one variable (one already gone is fine); `synced` of the answer."""
        return bool(self._data("DELETE", self._path(container_id, "env", key)).get("synced"))

    def restart(self, container_id: str) -> bool:
        """Restart the container so it boots with its stored map; `synced` of the answer."""
        return bool(self._data("POST", self._path(container_id, "restart")).get("synced"))

