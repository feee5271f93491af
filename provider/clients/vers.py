"""Client of the Vers orchestrator API: the account's env-var set and root VMs."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import requests

from envvars_provider.clients.http import ApiSession


def _reason(response: requests.Response) -> str:
    """The `error` of Vers' envelope, or the body's start when it has none."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or response.reason
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    return response.text[:200]


class VersClient:
    """`/api/v1/env_vars` and `/api/v1/vm` of one account."""

    def __init__(self, base_url: str, api_key: str | None, auth_hint: str):
        self.api = ApiSession(base_url, api_key, _reason, auth_hint)

    def get_vars(self) -> dict[str, str]:
        """The account's whole set."""
        return dict(self.api.call("GET", "/api/v1/env_vars").json()["vars"])

    def put_vars(self, variables: dict[str, str], replace: bool) -> dict[str, str]:
        """Upsert (or replace-all) in one request; returns the whole set after the write."""
        response = self.api.call("PUT", "/api/v1/env_vars", json={"vars": variables, "replace": replace})
        return dict(response.json()["vars"])

    def delete_var(self, key: str) -> bool:
        """Delete one variable; False when it was already gone."""
        response = self.api.call("DELETE", f"/api/v1/env_vars/{quote(key, safe='')}", expect=(204, 404))
        return response.status_code == 204

    def new_root(self, vm_config: dict[str, Any]) -> str:
        """Create a root VM and wait for it to boot; returns its id."""
        response = self.api.call("POST", "/api/v1/vm/new_root", expect=(200, 201),
                                 params={"wait_boot": "true"}, json={"vm_config": vm_config})
        return str(response.json()["vm_id"])

    def vm_metadata(self, vm_id: str) -> dict[str, Any] | None:
        """A VM's metadata, or None when it no longer exists."""
        response = self.api.call("GET", f"/api/v1/vm/{quote(vm_id, safe='')}/metadata", expect=(200, 404))
        return None if response.status_code == 404 else dict(response.json())

    def delete_vm(self, vm_id: str) -> None:
        """Delete a VM; one already gone is fine."""
        self.api.call("DELETE", f"/api/v1/vm/{quote(vm_id, safe='')}", expect=(200, 404))
