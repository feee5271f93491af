"""Client of Vertra's app environments API: `/v1/apps/{id}/environments` (upsert) and `/v1/apps/{id}/envs`."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests

from envvars_provider.clients.http import ApiSession, json_object
from envvars_provider.errors import PlatformError

REFUSALS = (400, 404, 409, 413, 422)  # answered in Vertra's envelope, told apart by its code


def _code(response: requests.Response) -> str | None:
    code = json_object(response).get("code")
    return code if isinstance(code, str) else None


def _reason(response: requests.Response) -> str:
    """`CODE: message` of Vertra's envelope `{"status": "error", "code", "message"}`, or the body's start."""
    message, code = json_object(response).get("message"), _code(response)
    if not isinstance(message, str):
        return code or response.text[:200] or response.reason
    return f"{code}: {message}" if code else message


class AppNotFound(PlatformError):
    """The app does not exist, or belongs to another user (`APP_NOT_FOUND`)."""


class LimitExceeded(PlatformError):
    """The write would leave the app with more variables than Vertra allows (`ENV_LIMIT_EXCEEDED`)."""


class NothingMatched(PlatformError):
    """A delete by keys matched no variable of the app (`ENVIRONMENTS_NOT_FOUND`)."""


ERRORS: dict[str, type[PlatformError]] = {
    "APP_NOT_FOUND": AppNotFound, "ENV_LIMIT_EXCEEDED": LimitExceeded, "ENVIRONMENTS_NOT_FOUND": NothingMatched,
}


@dataclass(frozen=True)
class Variable:
    """One variable of an app as Vertra lists it."""

    key: str
    value: str
    note: str | None

    @classmethod
    def of(cls, body: dict[str, Any]) -> Variable:
        """A variable from its JSON object."""
        note = body.get("note")
        return cls(key=str(body["key"]), value=str(body["value"]), note=note if isinstance(note, str) else None)


class VertraClient:
    """The environment variables of the user's apps, and their restart."""

    def __init__(self, base_url: str, token: str | None, auth_hint: str):
        # The routes carry their version; a base URL given with it means the same API.
        self.api = ApiSession(base_url.rstrip("/").removesuffix("/v1"), token, _reason, auth_hint)

    @staticmethod
    def _path(app_id: str, route: str) -> str:
        return f"/v1/apps/{quote(app_id, safe='')}/{route}"

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        """The `response` of a successful answer; a refusal raises its code's error class, or `PlatformError`."""
        response = self.api.call(method, path, expect=(200, 201, *REFUSALS), **kwargs)
        if response.status_code in REFUSALS:
            error = ERRORS.get(_code(response) or "", PlatformError)
            raise error(method, path, response.status_code, _reason(response))
        return json_object(response).get("response")

    @staticmethod
    def _listed(answer: Any) -> dict[str, Variable]:
        return {variable.key: variable for variable in map(Variable.of, answer if isinstance(answer, list) else [])}

    def variables(self, app_id: str) -> dict[str, Variable] | None:
        """Every variable of the app by key, or None when the app is gone."""
        try:
            return self._listed(self._call("GET", self._path(app_id, "envs")))
        except AppNotFound:
            return None

    def upsert(self, app_id: str, entries: list[dict[str, Any]]) -> dict[str, Variable]:
        """Create or edit these variables (`{key, value, note}` each) in one request, other keys kept; every
        variable of the app after the write."""
        return self._listed(self._call("PUT", self._path(app_id, "environments"), json={"environments": entries}))

    def remove(self, app_id: str, keys: list[str]) -> None:
        """Delete these variables in one request; keys already gone are fine."""
        with contextlib.suppress(NothingMatched):
            self._call("DELETE", self._path(app_id, "envs"), json={"keys": keys})

    def restart(self, app_id: str) -> None:
        """Restart the app so it runs with its stored variables."""
        self._call("POST", self._path(app_id, "restart"))
